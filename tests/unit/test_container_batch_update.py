"""The container server's ``UPDATE`` verb: many object rows from an object server in one
msgpack request and one transaction, on real SQLite files through webob requests."""

import json
import os
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from webob import Request

from common.db import db_file_path
from common.hashing import HashSecrets, hash_path
from container_server.broker import ContainerBroker
from container_server.server import (
    MAX_UPDATE_BODY,
    MAX_UPDATE_ROWS,
    ContainerApp,
)

SECRETS = HashSecrets("pre", "suf")


@pytest.fixture
def devices(tmp_path):
    (tmp_path / "sda").mkdir()
    return str(tmp_path)


@pytest.fixture
def app(devices):
    return ContainerApp({"devices": devices}, hash_secrets=SECRETS)


def call(app, method, path, headers=None, body=None, content_length=None):
    req = Request.blank(path, method=method, headers=headers or {})
    if body is not None:
        req.body = body
    if content_length is not None:
        req.environ["CONTENT_LENGTH"] = str(content_length)
    return req.get_response(app)


def update(app, items, path="/sda/1/a/c", raw=None):
    body = raw if raw is not None else msgpack.packb(items)
    return call(app, "UPDATE", path, {"Content-Type": "application/x-msgpack"}, body)


def put_row(name, ts, size=3, ctype="text/plain", etag="abc", index=None):
    headers = {"X-Timestamp": ts, "X-Size": str(size), "X-Content-Type": ctype, "X-Etag": etag}
    if index is not None:
        headers["X-Backend-Storage-Policy-Index"] = str(index)
    return {"op": "PUT", "name": name, "headers": headers}


def delete_row(name, ts):
    return {"op": "DELETE", "name": name, "headers": {"X-Timestamp": ts}}


def put_container(app, account="a", container="c", ts="1"):
    resp = call(app, "PUT", f"/sda/1/{account}/{container}", {"X-Timestamp": ts})
    assert resp.status_int == 201


def listing(app, path="/sda/1/a/c"):
    resp = call(app, "GET", path + "?format=json")
    return json.loads(resp.body) if resp.status_int == 200 else []


def db_path(devices, account="a", container="c"):
    name_hash = hash_path(account, container, secrets=SECRETS)
    return db_file_path(os.path.join(devices, "sda"), "containers", 1, name_hash)


def rows_of(devices, account="a", container="c"):
    """The object rows on disk, without ROWIDs."""
    with ContainerBroker(db_path(devices, account, container)) as broker:
        rows = broker.get_items_since(-1, 1000)
    return sorted(tuple(v for k, v in row.items() if k != "ROWID") for row in rows)


def wal_commits(db_file):
    """How many transactions the database's WAL holds: frames whose header says
    "commit" (a non-zero database size), among those carrying the WAL's current salt."""
    try:
        with open(db_file + "-wal", "rb") as fp:
            data = fp.read()
    except FileNotFoundError:
        return 0
    page_size = struct.unpack(">I", data[8:12])[0]
    salt = data[16:24]
    commits = 0
    for offset in range(32, len(data) - 24, 24 + page_size):
        size_after = struct.unpack(">I", data[offset + 4 : offset + 8])[0]
        if data[offset + 8 : offset + 16] != salt:
            break  # left over from before the WAL was restarted
        if size_after:
            commits += 1
    return commits


# -- what an UPDATE does -------------------------------------------------------------------


def test_update_merges_every_row(app):
    put_container(app)
    assert call(app, "PUT", "/sda/1/a/c/gone", {"X-Timestamp": "2", "X-Size": "1",
                "X-Content-Type": "t", "X-Etag": "e"}).status_int == 201  # fmt: skip
    rows = [
        put_row("b", "3", size=5, etag="e-b"),
        put_row("é😀", "3", size=7, ctype="text/한"),
        delete_row("gone", "4"),
        put_row("a", "3", size=1),
    ]
    resp = update(app, rows)
    assert resp.status_int == 204
    entries = listing(app)
    assert [e["name"] for e in entries] == ["a", "b", "é😀"]
    assert entries[1]["hash"] == "e-b" and entries[1]["bytes"] == 5
    assert entries[2]["content_type"] == "text/한"
    head = call(app, "HEAD", "/sda/1/a/c")
    assert head.headers["X-Container-Object-Count"] == "3"
    assert head.headers["X-Container-Bytes-Used"] == "13"


def test_update_rows_are_one_transaction(app, devices):
    put_container(app)
    before = wal_commits(db_path(devices))
    assert update(app, [put_row(f"o{i}", "2") for i in range(20)]).status_int == 204
    assert wal_commits(db_path(devices)) == before + 1
    assert len(listing(app)) == 20


def test_newest_row_wins_within_and_across_batches(app):
    put_container(app)
    assert update(app, [put_row("o", "3", size=3), put_row("o", "2", size=2)]).status_int == 204
    assert update(app, [put_row("o", "2.5", size=9)]).status_int == 204  # older: ignored
    [entry] = listing(app)
    assert entry["bytes"] == 3
    assert update(app, [delete_row("o", "4"), put_row("p", "4")]).status_int == 204
    assert [e["name"] for e in listing(app)] == ["p"]


def test_a_batch_row_is_stored_as_its_single_update_would_be(app, devices):
    put_container(app, container="single")
    put_container(app, container="batch")
    headers = {"X-Timestamp": "2", "X-Size": "4", "X-Content-Type": "text/x; q=한",
               "X-Etag": "abcd", "X-Backend-Storage-Policy-Index": "1"}  # fmt: skip
    wire = {k: v.encode().decode("latin-1") for k, v in headers.items()}  # as a server reads
    assert call(app, "PUT", "/sda/1/a/single/o", wire).status_int == 201
    assert call(app, "DELETE", "/sda/1/a/single/d", {"X-Timestamp": "3"}).status_int == 204
    row = {"op": "PUT", "name": "o", "headers": {k.lower(): v for k, v in headers.items()}}
    assert update(app, [row, delete_row("d", "3")], "/sda/1/a/batch").status_int == 204
    assert rows_of(devices, container="single") == rows_of(devices, container="batch")


def test_update_without_a_database_is_404_unless_auto_created(app, devices):
    assert update(app, [put_row("o", "2")]).status_int == 404
    assert not os.path.exists(db_path(devices))

    rows = [put_row("o", "5", index=2), delete_row("p", "6")]
    assert update(app, rows, "/sda/1/.queue/c").status_int == 204
    head = call(app, "HEAD", "/sda/1/.queue/c")
    assert head.status_int == 204
    # Created as the first row alone would have created it: its timestamp and policy.
    assert head.headers["X-Backend-Put-Timestamp"] == "0000000005.00000"
    assert head.headers["X-Backend-Storage-Policy-Index"] == "2"
    assert [e["name"] for e in listing(app, "/sda/1/.queue/c")] == ["o"]


def test_single_row_routes_still_work(app):
    put_container(app)
    headers = {"X-Timestamp": "2", "X-Size": "1", "X-Content-Type": "t", "X-Etag": "e"}
    assert call(app, "PUT", "/sda/1/a/c/o", headers).status_int == 201
    assert call(app, "DELETE", "/sda/1/a/c/o", {"X-Timestamp": "3"}).status_int == 204
    assert listing(app) == []


# -- bad requests --------------------------------------------------------------------------

GOOD = put_row("ok", "2")
BAD_BODIES = {
    "not msgpack": b"\xc1",
    "truncated": msgpack.packb([GOOD])[:-3],
    "trailing bytes": msgpack.packb([GOOD]) + b"\x00",
    "a map": msgpack.packb({"rows": [GOOD]}),
    "no rows": msgpack.packb([]),
    "too many rows": msgpack.packb([GOOD] * (MAX_UPDATE_ROWS + 1)),
    "a row not a map": msgpack.packb([GOOD, ["PUT", "o"]]),
    "unknown op": msgpack.packb([GOOD, {**GOOD, "op": "POST"}]),
    "unhashable op": msgpack.packb([{**GOOD, "op": ["PUT"]}]),
    "no name": msgpack.packb([{"op": "PUT", "headers": GOOD["headers"]}]),
    "empty name": msgpack.packb([{**GOOD, "name": ""}]),
    "name with NUL": msgpack.packb([{**GOOD, "name": "a\x00b"}]),
    "name too long": msgpack.packb([{**GOOD, "name": "x" * 1025}]),
    "headers not a map": msgpack.packb([{**GOOD, "headers": "X-Size: 1"}]),
    "bytes header name": msgpack.packb([{**GOOD, "headers": {b"X-Size": "1"}}]),
    "int header value": msgpack.packb([{**GOOD, "headers": {**GOOD["headers"], "X-Size": 3}}]),
    "huge header value": msgpack.packb([put_row("o", "2", ctype="t" * 9000)]),
    "no timestamp": msgpack.packb([{"op": "DELETE", "name": "o", "headers": {}}]),
    "bad timestamp": msgpack.packb([delete_row("o", "yesterday")]),
    "bad size": msgpack.packb([put_row("o", "2", size="-1")]),
    "size past 2**63": msgpack.packb([put_row("o", "2", size=str(2**63))]),
    "size of 5000 digits": msgpack.packb([put_row("o", "2", size="9" * 5000)]),
    "policy index of 5000 digits": msgpack.packb([put_row("o", "2", index="1" * 5000)]),
    "no etag": msgpack.packb(
        [{**GOOD, "headers": {"X-Timestamp": "2", "X-Size": "1", "X-Content-Type": "t"}}]
    ),  # fmt: skip
    "bad policy index": msgpack.packb([put_row("o", "2", index="x")]),
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_update_bodies_are_400_and_write_nothing(app, devices, body):
    put_container(app)
    before = rows_of(devices)
    resp = update(app, None, raw=body)
    assert resp.status_int == 400, resp.body
    assert b"UPDATE" in resp.body and b"Traceback" not in resp.body
    assert rows_of(devices) == before == []


def test_bad_row_messages_name_the_row(app):
    put_container(app)
    resp = update(app, [GOOD, put_row("o", "2", size="x")])
    assert resp.status_int == 400
    assert b"UPDATE row 1: missing or bad X-Size" in resp.body


def test_update_needs_msgpack_a_length_and_a_container_path(app):
    put_container(app)
    body = msgpack.packb([GOOD])
    resp = call(app, "UPDATE", "/sda/1/a/c", {"Content-Type": "application/json"}, body)
    assert resp.status_int == 400
    resp = call(app, "UPDATE", "/sda/1/a/c", {"Content-Type": "application/x-msgpack"}, body,
                content_length=MAX_UPDATE_BODY + 1)  # fmt: skip
    assert resp.status_int == 400 and b"larger than" in resp.body
    assert update(app, [GOOD], "/sda/1/a/c/o").status_int == 400
    req = Request.blank("/sda/1/a/c", method="UPDATE")
    req.headers["Content-Type"] = "application/x-msgpack"
    req.environ.pop("CONTENT_LENGTH", None)
    assert req.get_response(app).status_int == 411
    assert listing(app) == []


# Anything msgpack can carry; and rows that are mostly right, so that most examples get
# past the outer checks and reach the row's.
ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
NUMBERS = st.sampled_from(["2", "3.5", "0", "", " 7 ", "x", "-1", "1e3", "9" * 30])
VALUES = NUMBERS | NUMBERS | st.text(max_size=8) | ANY
ROW_HEADER_MAPS = st.fixed_dictionaries(
    {"X-Timestamp": VALUES, "X-Size": VALUES, "X-Content-Type": VALUES, "X-Etag": VALUES},
    optional={"X-Backend-Storage-Policy-Index": VALUES, "x-size": VALUES, "X-Other": VALUES},
)
ROWS = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["PUT", "DELETE"]) | st.sampled_from(["POST", "put"]) | ANY,
        "name": st.text(max_size=10) | st.text(max_size=10) | ANY,
        "headers": ROW_HEADER_MAPS | ROW_HEADER_MAPS | ANY,
    }
)
BODIES = st.lists(ROWS, min_size=1, max_size=4) | st.lists(ROWS | ANY, max_size=4) | ANY


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "sda").mkdir()
    app = ContainerApp({"devices": str(root)}, hash_secrets=SECRETS)
    put_container(app)
    return app


@given(items=BODIES)
@settings(max_examples=300, deadline=None)
def test_any_update_body_gets_an_answer_not_a_crash(shared_app, items):
    resp = update(shared_app, items)
    assert resp.status_int in (204, 400), resp.body
