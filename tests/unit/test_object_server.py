"""The object server app in-process (real WSGI via webob), on real files in tmp_path."""

import errno
import hashlib
import io
import os
import time
from email.utils import formatdate

import msgpack
import pytest
from helpers import Clock
from webob import Request

from common.hashing import HashSecrets, hash_path
from common.timestamp import Timestamp
from object_server.server import ObjectApp

SECRETS = HashSecrets("p", "s")


def quoted(etag):
    return f'"{etag}"'


PATH = "/sda1/0/a/c/o"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def devices(tmp_path):
    root = tmp_path / "node"
    (root / "sda1").mkdir(parents=True)
    return root


@pytest.fixture
def app(devices):
    return ObjectApp({"devices": str(devices), "disk_chunk_size": "1024"}, hash_secrets=SECRETS)


def call(app, method, path=PATH, headers=None, body=None, environ=None):
    req = Request.blank(path, environ={"REQUEST_METHOD": method, **(environ or {})})
    for key, value in (headers or {}).items():
        req.headers[key] = value
    if body is not None:
        req.body = body
    return req.get_response(app)


def put(app, clock, body=b"hello world", path=PATH, headers=None):
    hdrs = {"X-Timestamp": clock(), "Content-Type": "text/plain"}
    hdrs.update(headers or {})
    return call(app, "PUT", path, hdrs, body)


def disk_files(devices):
    found = []
    for root, _dirs, files in os.walk(devices):
        for name in files:
            if name.endswith((".data", ".ts", ".meta")):
                found.append(os.path.join(root, name))
    return sorted(found)


def tmp_files(devices):
    tmp = devices / "sda1" / "tmp"
    return os.listdir(tmp) if tmp.exists() else []


# -- PUT --------------------------------------------------------------------------------


def test_put_stores_and_returns_etag(app, clock, devices):
    resp = put(app, clock, b"hello world")
    assert resp.status_int == 201
    assert resp.headers["ETag"] == quoted(hashlib.md5(b"hello world").hexdigest())
    [path] = disk_files(devices)
    obj_hash = hash_path("a", "c", "o", secrets=SECRETS)
    assert path.startswith(str(devices / "sda1" / "objects" / "0" / obj_hash[-3:] / obj_hash))
    assert tmp_files(devices) == []


def test_put_then_get_and_head(app, clock):
    ts = clock()
    resp = call(
        app,
        "PUT",
        headers={
            "X-Timestamp": ts,
            "Content-Type": "text/x-test",
            "X-Object-Meta-Color": "파랑".encode().decode("latin-1"),  # WSGI form
            "Content-Encoding": "gzip",
            "X-Object-Sysmeta-Slo": "yes",
            "X-Random-Header": "dropped",
        },
        body=b"0123456789" * 300,
    )
    assert resp.status_int == 201
    for method in ("GET", "HEAD"):
        resp = call(app, method)
        assert resp.status_int == 200
        assert resp.headers["Content-Type"] == "text/x-test"
        assert resp.headers["Content-Length"] == "3000"
        assert resp.headers["ETag"] == quoted(hashlib.md5(b"0123456789" * 300).hexdigest())
        assert resp.headers["X-Timestamp"] == ts
        assert resp.headers["X-Backend-Timestamp"] == ts
        assert resp.headers["Last-Modified"] == formatdate(
            -(-Timestamp(ts).ticks // 100000), usegmt=True
        )
        meta = resp.headers["X-Object-Meta-Color"].encode("latin-1").decode("utf-8")
        assert meta == "파랑"
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["X-Object-Sysmeta-Slo"] == "yes"
        assert "X-Random-Header" not in resp.headers
        assert resp.body == (b"0123456789" * 300 if method == "GET" else b"")


def test_get_streams_in_disk_chunks(app, clock):
    body = os.urandom(10 * 1024 + 7)
    put(app, clock, body)
    environ = Request.blank(PATH).environ
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status

    app_iter = app(environ, start_response)
    assert not isinstance(app_iter, list | bytes)
    chunks = list(app_iter)
    app_iter.close()
    assert seen["status"].startswith("200")
    assert b"".join(chunks) == body
    assert len(chunks) == 11 and max(map(len, chunks)) == 1024


def test_put_chunked(app, clock):
    body = b"x" * 200000
    environ = {"wsgi.input": io.BytesIO(body)}
    headers = {"X-Timestamp": clock(), "Transfer-Encoding": "chunked"}
    resp = call(app, "PUT", headers=headers, environ=environ)
    assert resp.status_int == 201
    resp = call(app, "GET")
    assert resp.body == body
    assert resp.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "environ, headers, status",
    [
        ({}, {}, 411),
        ({"CONTENT_LENGTH": "abc"}, {}, 400),
        ({"CONTENT_LENGTH": "-1"}, {}, 400),
        ({"CONTENT_LENGTH": "1.5"}, {}, 400),
        ({"CONTENT_LENGTH": str(5 * 1024**3 + 1)}, {}, 413),
        ({}, {"Transfer-Encoding": "gzip"}, 501),
        ({}, {"Transfer-Encoding": "gzip, chunked"}, 501),
    ],
)
def test_put_length_errors(app, clock, devices, environ, headers, status):
    hdrs = {"X-Timestamp": clock(), **headers}
    resp = call(app, "PUT", headers=hdrs, environ=environ)
    assert resp.status_int == status
    assert disk_files(devices) == [] and tmp_files(devices) == []


def test_put_short_body_is_499_and_stores_nothing(app, clock, devices):
    environ = {"wsgi.input": io.BytesIO(b"12345"), "CONTENT_LENGTH": "10"}
    resp = call(app, "PUT", headers={"X-Timestamp": clock()}, environ=environ)
    assert resp.status_int == 499
    assert disk_files(devices) == [] and tmp_files(devices) == []


class BrokenInput:
    def __init__(self, exc):
        self.exc = exc
        self.calls = 0

    def read(self, size=-1):
        self.calls += 1
        if self.calls > 1:
            raise self.exc
        return b"a" * min(size, 10)


@pytest.mark.parametrize(
    "exc, status", [(OSError("reset"), 499), (ValueError("bad chunk"), 499), (TimeoutError(), 408)]
)
def test_put_client_failure_mid_body(app, clock, devices, exc, status):
    environ = {"wsgi.input": BrokenInput(exc), "CONTENT_LENGTH": "100"}
    resp = call(app, "PUT", headers={"X-Timestamp": clock()}, environ=environ)
    assert resp.status_int == status
    assert disk_files(devices) == [] and tmp_files(devices) == []


def test_put_etag_checked(app, clock, devices):
    resp = put(app, clock, b"abc", headers={"ETag": "0" * 32})
    assert resp.status_int == 422
    assert disk_files(devices) == [] and tmp_files(devices) == []
    resp = put(app, clock, b"abc", headers={"ETag": quoted(hashlib.md5(b"abc").hexdigest())})
    assert resp.status_int == 201


def test_put_older_or_equal_timestamp_conflicts(app, clock):
    ts = clock()
    assert call(app, "PUT", headers={"X-Timestamp": ts}, body=b"new").status_int == 201
    for stamp in (ts, Timestamp(float(Timestamp(ts).timestamp) - 10).internal):
        resp = call(app, "PUT", headers={"X-Timestamp": stamp}, body=b"old")
        assert resp.status_int == 409
        assert resp.headers["X-Backend-Timestamp"] == ts
    assert call(app, "GET").body == b"new"


def test_put_if_none_match(app, clock):
    assert put(app, clock, headers={"If-None-Match": "*"}).status_int == 201
    resp = put(app, clock, b"again", headers={"If-None-Match": "*"})
    assert resp.status_int == 412
    assert put(app, clock, headers={"If-None-Match": '"abc"'}).status_int == 400
    assert call(app, "GET").body == b"hello world"


@pytest.mark.parametrize("stamp", [None, "", "yesterday", "-1", "1e400", "12345678901.5"])
def test_put_bad_timestamp(app, devices, stamp):
    headers = {} if stamp is None else {"X-Timestamp": stamp}
    assert call(app, "PUT", headers=headers, body=b"x").status_int == 400
    assert disk_files(devices) == []


@pytest.mark.parametrize(
    "path",
    [
        "/sda1/0/" + "a" * 257 + "/c/o",
        "/sda1/0/a/" + "c" * 257 + "/o",
        "/sda1/0/a/c/" + "o" * 1025,
        "/sda1/0/a/c/o%00x",
        "/sda1/0/a/c/%ff%fe",
        "/../0/a/c/o",
        "/sda1/x/a/c/o",
        "/sda1/-1/a/c/o",
        "/sda1/0/a/c",
        "/sda1/0/a/c/",
        "/sda1/0/a//o",
    ],
)
@pytest.mark.parametrize("method", ["PUT", "GET", "HEAD", "POST", "DELETE"])
def test_bad_paths_are_400_and_touch_nothing(app, clock, devices, path, method):
    resp = call(app, method, path, {"X-Timestamp": clock()}, b"x" if method == "PUT" else None)
    assert resp.status_int == 400
    assert disk_files(devices) == [] and tmp_files(devices) == []


def test_longest_names_are_fine(app, clock):
    path = "/sda1/0/" + "a" * 256 + "/" + "c" * 256 + "/" + "o/" * 512
    assert put(app, clock, path=path).status_int == 201
    assert call(app, "GET", path).body == b"hello world"


@pytest.mark.parametrize(
    "headers",
    [
        {f"X-Object-Meta-K{i}": "v" for i in range(91)},
        {"X-Object-Meta-" + "n" * 129: "v"},
        {"X-Object-Meta-K": "v" * 257},
        {f"X-Object-Meta-K{i:02d}": "v" * 250 for i in range(17)},
        {"X-Object-Meta-": "v"},
        {"X-Object-Meta-K": "\xff\xfe"},  # not UTF-8 once back to bytes
        {"X-Delete-At": "soon"},
        {"X-Delete-At": "1.5"},
        {"X-Delete-At": "100"},
    ],
)
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_bad_metadata_is_400(app, clock, devices, headers, method):
    if method == "POST":
        put(app, clock)
    before = disk_files(devices)
    resp = call(app, method, headers={"X-Timestamp": clock(), **headers}, body=b"x")
    assert resp.status_int == 400
    assert disk_files(devices) == before and tmp_files(devices) == []


def test_maximum_metadata_round_trips(app, clock):
    meta = {f"X-Object-Meta-K{i:02d}": "v" * 42 for i in range(90)}  # 90 x 45 = 4050 bytes
    assert put(app, clock, headers=meta).status_int == 201
    resp = call(app, "GET")
    assert {k: resp.headers[k] for k in meta} == meta
    assert resp.body == b"hello world"


def test_unknown_device_is_507(app, clock, devices):
    assert put(app, clock, path="/sdz9/0/a/c/o").status_int == 507
    assert call(app, "GET", "/sdz9/0/a/c/o").status_int == 507


def test_mount_check_requires_a_mount_point(devices, clock):
    checked = ObjectApp({"devices": str(devices), "mount_check": "true"}, hash_secrets=SECRETS)
    assert put(checked, clock).status_int == 507
    assert disk_files(devices) == []


def test_disk_full_is_507_and_leaves_nothing(app, clock, devices, monkeypatch):
    real_write = os.write
    tmp = str(devices / "sda1" / "tmp")

    def full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(tmp):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    assert put(app, clock, b"x" * 5000).status_int == 507
    monkeypatch.undo()
    assert disk_files(devices) == [] and tmp_files(devices) == []


# -- GET / HEAD -------------------------------------------------------------------------


def test_get_missing_is_404(app):
    resp = call(app, "GET")
    assert resp.status_int == 404
    assert "X-Backend-Timestamp" not in resp.headers
    assert call(app, "HEAD").status_int == 404


def test_get_expired_is_404(app, clock, devices):
    put(app, clock)
    df = app.diskfiles.get_diskfile(str(devices / "sda1"), 0, "a", "c", "o")
    past = str(int(time.time()) - 5)
    df.write_metadata({"name": "/a/c/o", "X-Timestamp": clock(), "X-Delete-At": past})
    assert call(app, "GET").status_int == 404
    assert call(app, "HEAD").status_int == 404


def test_delete_at_in_the_future_is_served(app, clock):
    future = str(int(time.time()) + 3600)
    assert put(app, clock, headers={"X-Delete-At": future}).status_int == 201
    resp = call(app, "GET")
    assert resp.status_int == 200 and resp.headers["X-Delete-At"] == future


BODY = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def stored(app, clock):
    assert put(app, clock, BODY).status_int == 201
    return hashlib.md5(BODY).hexdigest()


@pytest.mark.parametrize(
    "spec, start, stop",
    [("bytes=0-9", 0, 10), ("bytes=10-", 10, 10240), ("bytes=-5", 10235, 10240),
     ("bytes=10000-99999", 10000, 10240), ("bytes=-99999", 0, 10240)],
)  # fmt: skip
def test_single_range(app, stored, spec, start, stop):
    resp = call(app, "GET", headers={"Range": spec})
    assert resp.status_int == 206
    assert resp.body == BODY[start:stop]
    assert resp.headers["Content-Range"] == f"bytes {start}-{stop - 1}/10240"
    assert resp.headers["Content-Length"] == str(stop - start)


def test_multi_range_is_multipart(app, stored):
    resp = call(app, "GET", headers={"Range": "bytes=0-1,100-2047,-3"})
    assert resp.status_int == 206
    ctype = resp.headers["Content-Type"]
    assert ctype.startswith("multipart/byteranges;boundary=")
    boundary = ctype.split("=", 1)[1]
    assert int(resp.headers["Content-Length"]) == len(resp.body)
    parts = resp.body.split(b"--" + boundary.encode())
    assert parts[0] == b"" and parts[-1] == b"--"
    got = []
    for part in parts[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if line)
        assert headers["Content-Type"] == "text/plain"
        got.append((headers["Content-Range"], data[:-2]))
    assert got == [
        ("bytes 0-1/10240", BODY[0:2]),
        ("bytes 100-2047/10240", BODY[100:2048]),
        ("bytes 10237-10239/10240", BODY[-3:]),
    ]


def test_multi_range_streams_in_disk_chunks(app, stored):
    environ = Request.blank(PATH, headers={"Range": "bytes=0-4999,6000-9999"}).environ
    app_iter = app(environ, lambda *a: None)
    chunks = list(app_iter)
    app_iter.close()
    assert max(map(len, chunks)) <= 1024 and len(chunks) > 8


def test_unsatisfiable_range_is_416(app, stored):
    for spec in ("bytes=10240-", "bytes=-0", "bytes=20000-30000,10240-"):
        resp = call(app, "GET", headers={"Range": spec})
        assert resp.status_int == 416
        assert resp.headers["Content-Range"] == "bytes */10240"


def test_any_range_of_an_empty_object_is_416(app, clock):
    put(app, clock, b"")
    for spec in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        resp = call(app, "GET", headers={"Range": spec})
        assert resp.status_int == 416 and resp.headers["Content-Range"] == "bytes */0"
    assert call(app, "GET").status_int == 200


@pytest.mark.parametrize("spec", ["bytes=5-1", "bytes=x-y", "items=0-1", "bytes=", "bytes=--1"])
def test_malformed_range_is_ignored(app, stored, spec):
    resp = call(app, "GET", headers={"Range": spec})
    assert resp.status_int == 200 and resp.body == BODY


def test_if_range(app, stored):
    resp = call(app, "GET", headers={"Range": "bytes=0-0", "If-Range": quoted(stored)})
    assert resp.status_int == 206
    resp = call(app, "GET", headers={"Range": "bytes=0-0", "If-Range": '"other"'})
    assert resp.status_int == 200 and resp.body == BODY


def test_conditionals(app, stored):
    etag = quoted(stored)
    future = formatdate(time.time() + 86400, usegmt=True)
    past = formatdate(time.time() - 86400, usegmt=True)
    cases = [
        ({"If-Match": etag}, 200),
        ({"If-Match": '"nope", ' + etag}, 200),
        ({"If-Match": "*"}, 200),
        ({"If-Match": '"nope"'}, 412),
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"nope"'}, 200),
        ({"If-Modified-Since": future}, 304),
        ({"If-Modified-Since": past}, 200),
        ({"If-Modified-Since": "garbage"}, 200),
        ({"If-Unmodified-Since": past}, 412),
        ({"If-Unmodified-Since": future}, 200),
        ({"If-None-Match": '"nope"', "If-Modified-Since": future}, 200),
        ({"If-Match": '"nope"', "Range": "bytes=0-1"}, 412),
    ]
    for method in ("GET", "HEAD"):
        for headers, status in cases:
            resp = call(app, method, headers=headers)
            assert resp.status_int == status, (method, headers)
            if status == 304:
                assert resp.body == b"" and resp.headers["ETag"] == etag


def test_if_match_on_missing_object_is_412(app):
    assert call(app, "GET", headers={"If-Match": "*"}).status_int == 412


# -- POST -------------------------------------------------------------------------------


def test_post_replaces_user_metadata(app, clock, devices):
    put(app, clock, headers={"X-Object-Meta-Old": "1", "X-Object-Sysmeta-S": "kept"})
    ts = clock()
    resp = call(app, "POST", headers={"X-Timestamp": ts, "X-Object-Meta-New": "2"})
    assert resp.status_int == 202
    assert any(p.endswith(ts + ".meta") for p in disk_files(devices))
    resp = call(app, "GET")
    assert resp.headers["X-Object-Meta-New"] == "2"
    assert "X-Object-Meta-Old" not in resp.headers
    assert resp.headers["X-Object-Sysmeta-S"] == "kept"
    assert resp.headers["X-Timestamp"] == ts
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.body == b"hello world"


def test_post_missing_or_deleted_is_404(app, clock, devices):
    assert call(app, "POST", headers={"X-Timestamp": clock()}).status_int == 404
    assert disk_files(devices) == []
    put(app, clock)
    ts = clock()
    call(app, "DELETE", headers={"X-Timestamp": ts})
    resp = call(app, "POST", headers={"X-Timestamp": clock()})
    assert resp.status_int == 404 and resp.headers["X-Backend-Timestamp"] == ts


def test_post_older_is_409(app, clock):
    old = clock()
    put(app, clock)
    resp = call(app, "POST", headers={"X-Timestamp": old, "X-Object-Meta-X": "1"})
    assert resp.status_int == 409
    assert "X-Object-Meta-X" not in call(app, "HEAD").headers


# -- DELETE -----------------------------------------------------------------------------


def test_delete_existing_then_404_with_tombstone_timestamp(app, clock, devices):
    put(app, clock)
    ts = clock()
    assert call(app, "DELETE", headers={"X-Timestamp": ts}).status_int == 204
    assert [os.path.basename(p) for p in disk_files(devices)] == [ts + ".ts"]
    resp = call(app, "GET")
    assert resp.status_int == 404 and resp.headers["X-Backend-Timestamp"] == ts


def test_delete_missing_is_404_but_leaves_a_tombstone(app, clock, devices):
    ts = clock()
    resp = call(app, "DELETE", headers={"X-Timestamp": ts})
    assert resp.status_int == 404
    assert [os.path.basename(p) for p in disk_files(devices)] == [ts + ".ts"]
    # An older PUT arriving late does not resurrect the object.
    old = Timestamp(Timestamp(ts).timestamp - 5).internal
    assert call(app, "PUT", headers={"X-Timestamp": old}, body=b"x").status_int == 409


def test_delete_older_is_409(app, clock):
    old = clock()
    put(app, clock)
    resp = call(app, "DELETE", headers={"X-Timestamp": old})
    assert resp.status_int == 409
    assert call(app, "GET").status_int == 200


def test_delete_bad_timestamp_is_400(app, devices):
    assert call(app, "DELETE", headers={"X-Timestamp": "nope"}).status_int == 400
    assert disk_files(devices) == []


def test_x_if_delete_at(app, clock):
    future = str(int(time.time()) + 3600)
    put(app, clock, headers={"X-Delete-At": future})
    resp = call(app, "DELETE", headers={"X-Timestamp": clock(), "X-If-Delete-At": "123"})
    assert resp.status_int == 412
    assert (
        call(app, "DELETE", headers={"X-Timestamp": clock(), "X-If-Delete-At": "x"}).status_int
        == 400
    )
    resp = call(app, "DELETE", headers={"X-Timestamp": clock(), "X-If-Delete-At": future})
    assert resp.status_int == 204
    resp = call(app, "DELETE", headers={"X-Timestamp": clock(), "X-If-Delete-At": future})
    assert resp.status_int == 404


# -- REPLICATE and the rest ---------------------------------------------------------------


def test_replicate_returns_suffix_hashes(app, clock, devices):
    put(app, clock)
    resp = call(app, "REPLICATE", "/sda1/0")
    assert resp.status_int == 200
    assert resp.headers["Content-Type"] == "application/x-msgpack"
    hashes = msgpack.unpackb(resp.body)
    suffix = hash_path("a", "c", "o", secrets=SECRETS)[-3:]
    assert list(hashes) == [suffix] and len(hashes[suffix]) == 32
    call(app, "DELETE", headers={"X-Timestamp": clock()})
    again = msgpack.unpackb(call(app, "REPLICATE", f"/sda1/0/{suffix}-abc").body)
    assert again[suffix] != hashes[suffix]
    assert msgpack.unpackb(call(app, "REPLICATE", "/sda1/7").body) == {}


@pytest.mark.parametrize("path", ["/sda1/0/xyz", "/sda1/0/abc-", "/sda1/0/ABC", "/sda1/q"])
def test_replicate_bad_input(app, path):
    assert call(app, "REPLICATE", path).status_int == 400


def test_replicate_unknown_device(app):
    assert call(app, "REPLICATE", "/nope/0").status_int == 507


def test_policy_index_picks_the_directory(app, clock, devices):
    assert put(app, clock, headers={"X-Backend-Storage-Policy-Index": "2"}).status_int == 201
    assert all("/objects-2/" in p for p in disk_files(devices))
    assert call(app, "GET").status_int == 404
    resp = call(app, "GET", headers={"X-Backend-Storage-Policy-Index": "2"})
    assert resp.body == b"hello world"
    assert put(app, clock, headers={"X-Backend-Storage-Policy-Index": "-1"}).status_int == 400


def test_unknown_method_is_405(app):
    assert call(app, "COPY").status_int == 405


def test_unknown_policy_is_503_when_policies_are_known(devices, clock):
    from common.policies import ReplicationPolicy, StoragePolicies

    policies = StoragePolicies(
        [ReplicationPolicy(0, "gold", is_default=True), ReplicationPolicy(1, "silver")]
    )
    app = ObjectApp({"devices": str(devices)}, hash_secrets=SECRETS, policies=policies)
    assert put(app, clock, headers={"X-Backend-Storage-Policy-Index": "1"}).status_int == 201
    assert put(app, clock, headers={"X-Backend-Storage-Policy-Index": "2"}).status_int == 503
    assert (
        call(app, "REPLICATE", "/sda1/0", {"X-Backend-Storage-Policy-Index": "2"}).status_int == 503
    )
    assert all("/objects-1/" in p for p in disk_files(devices))


HUGE = "9" * 5000  # past Python's int-parsing limit: must be a 400, not a traceback


@pytest.mark.parametrize(
    "path, headers, environ",
    [
        (f"/sda1/{HUGE}/a/c/o", {}, {}),
        (PATH, {"X-Timestamp": HUGE}, {}),
        (PATH, {"X-Backend-Storage-Policy-Index": HUGE}, {}),
        (PATH, {"X-Delete-At": HUGE}, {}),
        (PATH, {}, {"CONTENT_LENGTH": HUGE}),
        (PATH, {"X-Container-Host": f"127.0.0.1:{HUGE}", "X-Container-Device": "d",
                "X-Container-Partition": "1"}, {}),
        (PATH, {"X-Container-Host": "127.0.0.1:1", "X-Container-Device": "d",
                "X-Container-Partition": HUGE}, {}),
    ],
)  # fmt: skip
def test_absurd_numbers_are_400(app, clock, devices, path, headers, environ):
    hdrs = {"X-Timestamp": clock(), **headers}
    resp = call(app, "PUT", path, hdrs, None if environ else b"x", environ)
    assert resp.status_int == 400
    assert disk_files(devices) == [] and tmp_files(devices) == []


def test_absurd_numbers_on_delete_and_replicate(app, clock):
    resp = call(app, "DELETE", headers={"X-Timestamp": clock(), "X-If-Delete-At": HUGE})
    assert resp.status_int == 400
    assert call(app, "REPLICATE", f"/sda1/{HUGE}").status_int == 400
    put(app, clock)
    for date in ("Mon, 01 Jan 99999 00:00:00 GMT", "Mon, 01 Jan 2024 99:99:99 GMT", HUGE):
        resp = call(app, "GET", headers={"If-Modified-Since": date, "If-Unmodified-Since": date})
        assert resp.status_int == 200
