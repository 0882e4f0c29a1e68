"""The container server's HTTP API, driven through webob requests on real SQLite files."""

import json
import os
from urllib.parse import quote
from xml.etree import ElementTree

import pytest
from webob import Request

from common.db import POOL, db_file_path
from common.hashing import HashSecrets, hash_path
from container_server.broker import ContainerBroker
from container_server.server import ContainerApp

SECRETS = HashSecrets("pre", "suf")


@pytest.fixture
def devices(tmp_path):
    (tmp_path / "sda").mkdir()
    return str(tmp_path)


@pytest.fixture
def app(devices):
    return ContainerApp({"devices": devices}, hash_secrets=SECRETS)


def call(app, method, path, headers=None, **kw):
    path = quote(path, safe="/?=&%")
    return Request.blank(path, method=method, headers=headers or {}, **kw).get_response(app)


def put_container(app, ts="1", path="/sda/1/a/c", **headers):
    return call(app, "PUT", path, {"X-Timestamp": ts, **headers})


def put_object(app, name, ts="2", size=3, ctype="text/plain", etag="abc", container="c", **extra):
    headers = {"X-Timestamp": ts, "X-Size": str(size), "X-Content-Type": ctype, "X-Etag": etag}
    headers.update(extra)
    # As a server hands header values to the app: the UTF-8 bytes sent, read as latin-1.
    headers = {key: value.encode().decode("latin-1") for key, value in headers.items()}
    return call(app, "PUT", f"/sda/1/a/{container}/{name}", headers)


def db_path(devices, account="a", container="c", part=1):
    return db_file_path(
        os.path.join(devices, "sda"),
        "containers",
        part,
        hash_path(account, container, secrets=SECRETS),
    )


# -- container PUT ------------------------------------------------------------------------


def test_put_creates_then_accepts(app, devices):
    assert put_container(app, "1").status_int == 201
    assert os.path.isfile(db_path(devices))
    assert put_container(app, "2").status_int == 202
    resp = call(app, "HEAD", "/sda/1/a/c")
    assert resp.status_int == 204
    assert resp.headers["X-Put-Timestamp"] == "0000000002.00000"
    assert resp.headers["X-Backend-Put-Timestamp"] == "0000000002.00000"
    assert resp.headers["X-Container-Object-Count"] == "0"
    assert resp.headers["X-Backend-Storage-Policy-Index"] == "0"


def test_storage_policy_is_fixed_at_creation(app):
    hdr = "X-Backend-Storage-Policy-Index"
    assert put_container(app, "1", **{hdr: "2"}).status_int == 201
    assert put_container(app, "2", **{hdr: "2"}).status_int == 202
    assert put_container(app, "3").status_int == 202  # no index: no conflict
    resp = put_container(app, "4", **{hdr: "1"})
    assert resp.status_int == 409
    assert resp.headers[hdr] == "2"
    assert call(app, "HEAD", "/sda/1/a/c").headers[hdr] == "2"
    assert put_container(app, "5", **{hdr: "x"}).status_int == 400


def test_deleted_container_can_be_created_again_with_a_new_policy(app):
    hdr = "X-Backend-Storage-Policy-Index"
    put_container(app, "1", **{hdr: "1"})
    assert call(app, "DELETE", "/sda/1/a/c", {"X-Timestamp": "2"}).status_int == 204
    assert put_container(app, "1.5", **{hdr: "2"}).status_int == 409  # older than the delete
    assert put_container(app, "3", **{hdr: "2"}).status_int == 201
    resp = call(app, "HEAD", "/sda/1/a/c")
    assert resp.status_int == 204 and resp.headers[hdr] == "2"


def test_put_requires_a_good_timestamp(app):
    assert call(app, "PUT", "/sda/1/a/c").status_int == 400
    assert put_container(app, "yesterday").status_int == 400
    assert call(app, "PUT", "/sda/1/a/c/o", {"X-Size": "1"}).status_int == 400


def test_names_over_limits_are_400(app):
    assert put_container(app, path="/sda/1/a/" + "c" * 257).status_int == 400
    assert put_container(app, path="/sda/1/" + "a" * 257 + "/c").status_int == 400
    put_container(app)
    assert put_object(app, "o" * 1025).status_int == 400
    assert put_object(app, "o" * 1024).status_int == 201


def test_unknown_device_is_507_and_bad_partition_400(app):
    assert put_container(app, path="/sdx/1/a/c").status_int == 507
    assert call(app, "HEAD", "/sdx/1/a/c").status_int == 507
    assert put_container(app, path="/sda/x1/a/c").status_int == 400
    assert call(app, "GET", "/sda/1/a").status_int == 400  # no container in the path


def test_mount_check_wants_a_mount_point(devices):
    app = ContainerApp({"devices": devices, "mount_check": "true"}, hash_secrets=SECRETS)
    assert put_container(app).status_int == 507


def test_unknown_method_is_405(app):
    assert call(app, "COPY", "/sda/1/a/c").status_int == 405


# -- metadata -----------------------------------------------------------------------------


def test_metadata_and_acls_are_kept(app):
    put_container(
        app,
        "1",
        **{
            "X-Container-Meta-Color": "blue",
            "X-Container-Read": ".r:*",
            "X-Container-Write": "test:tester",
            "X-Container-Sysmeta-Versions": "v",
            "X-Object-Meta-Ignored": "x",
        },
    )
    headers = call(app, "HEAD", "/sda/1/a/c").headers
    assert headers["X-Container-Meta-Color"] == "blue"
    assert headers["X-Container-Read"] == ".r:*"
    assert headers["X-Container-Write"] == "test:tester"
    assert headers["X-Container-Sysmeta-Versions"] == "v"
    assert "X-Object-Meta-Ignored" not in headers


def test_post_updates_metadata_newest_wins(app):
    put_container(app, "1", **{"X-Container-Meta-Color": "blue"})
    resp = call(app, "POST", "/sda/1/a/c", {"X-Timestamp": "3", "X-Container-Meta-Color": "red"})
    assert resp.status_int == 204
    call(
        app,
        "POST",
        "/sda/1/a/c",
        {"X-Timestamp": "2", "X-Container-Meta-Color": "green", "X-Container-Meta-Size": "L"},
    )
    headers = call(app, "HEAD", "/sda/1/a/c").headers
    assert headers["X-Container-Meta-Color"] == "red"  # the older POST lost on this key
    assert headers["X-Container-Meta-Size"] == "L"  # and won on a new one
    call(app, "POST", "/sda/1/a/c", {"X-Timestamp": "4", "X-Remove-Container-Meta-Size": "x"})
    call(app, "POST", "/sda/1/a/c", {"X-Timestamp": "5", "X-Container-Meta-Color": ""})
    headers = call(app, "HEAD", "/sda/1/a/c").headers
    assert "X-Container-Meta-Size" not in headers and "X-Container-Meta-Color" not in headers


def test_metadata_over_limits_is_400(app):
    too_long = {"X-Container-Meta-" + "k" * 129: "v"}
    assert put_container(app, "1", **too_long).status_int == 400
    assert put_container(app, "1").status_int == 201
    big_value = {"X-Timestamp": "2", "X-Container-Meta-K": "v" * 257}
    assert call(app, "POST", "/sda/1/a/c", big_value).status_int == 400
    many = {f"X-Container-Meta-K{i}": "v" for i in range(91)}
    assert call(app, "POST", "/sda/1/a/c", {"X-Timestamp": "2", **many}).status_int == 400
    assert call(app, "POST", "/sda/1/a/c").status_int == 400  # no timestamp


def test_post_to_missing_container_is_404(app):
    assert call(app, "POST", "/sda/1/a/c", {"X-Timestamp": "1"}).status_int == 404


# -- object rows --------------------------------------------------------------------------


def test_object_rows_change_the_totals(app):
    put_container(app)
    assert put_object(app, "o1", size=10).status_int == 201
    assert put_object(app, "o2", size=5).status_int == 201
    assert put_object(app, "o1", ts="3", size=20).status_int == 201  # newer replaces
    assert put_object(app, "o1", ts="2.5", size=99).status_int == 201  # older is ignored
    headers = call(app, "HEAD", "/sda/1/a/c").headers
    assert headers["X-Container-Object-Count"] == "2"
    assert headers["X-Container-Bytes-Used"] == "25"
    resp = call(app, "DELETE", "/sda/1/a/c/o2", {"X-Timestamp": "4"})
    assert resp.status_int == 204
    headers = call(app, "HEAD", "/sda/1/a/c").headers
    assert (headers["X-Container-Object-Count"], headers["X-Container-Bytes-Used"]) == ("1", "20")
    assert call(app, "GET", "/sda/1/a/c").body == b"o1\n"


def test_object_row_needs_an_existing_container(app):
    assert put_object(app, "o").status_int == 404
    assert call(app, "DELETE", "/sda/1/a/c/o", {"X-Timestamp": "2"}).status_int == 404


def test_object_row_needs_its_headers(app):
    put_container(app)
    headers = {"X-Timestamp": "2", "X-Content-Type": "t", "X-Etag": "e"}
    assert call(app, "PUT", "/sda/1/a/c/o", headers).status_int == 400
    assert call(app, "PUT", "/sda/1/a/c/o", {**headers, "X-Size": "-1"}).status_int == 400
    superscript_two = "\u00b2"  # isdigit() but not a number int() reads
    assert (
        call(app, "PUT", "/sda/1/a/c/o", {**headers, "X-Size": superscript_two}).status_int == 400
    )
    assert call(app, "PUT", "/sda/1/a/c/o", {"X-Timestamp": "2", "X-Size": "1"}).status_int == 400


def test_auto_create_accounts_get_containers_from_object_rows(app):
    assert put_object(app, "o", container="c", **{}).status_int == 404
    resp = call(
        app,
        "PUT",
        "/sda/1/.expiring_objects/1700000000/o",
        {"X-Timestamp": "2", "X-Size": "0", "X-Content-Type": "t", "X-Etag": "e"},
    )
    assert resp.status_int == 201
    assert call(app, "GET", "/sda/1/.expiring_objects/1700000000").body == b"o\n"


# -- DELETE -------------------------------------------------------------------------------


def test_delete_container(app):
    assert call(app, "DELETE", "/sda/1/a/c", {"X-Timestamp": "2"}).status_int == 404
    put_container(app, "1")
    put_object(app, "o")
    assert call(app, "DELETE", "/sda/1/a/c", {"X-Timestamp": "3"}).status_int == 409
    call(app, "DELETE", "/sda/1/a/c/o", {"X-Timestamp": "3"})
    assert call(app, "DELETE", "/sda/1/a/c").status_int == 400  # no timestamp
    assert call(app, "DELETE", "/sda/1/a/c", {"X-Timestamp": "4"}).status_int == 204
    for method in ("HEAD", "GET"):
        resp = call(app, method, "/sda/1/a/c")
        assert resp.status_int == 404
        assert resp.headers["X-Backend-Delete-Timestamp"] == "0000000004.00000"
    assert call(app, "DELETE", "/sda/1/a/c", {"X-Timestamp": "5"}).status_int == 404
    assert call(app, "POST", "/sda/1/a/c", {"X-Timestamp": "6"}).status_int == 404


def test_delete_older_than_the_put_is_409(app):
    put_container(app, "5")
    assert call(app, "DELETE", "/sda/1/a/c", {"X-Timestamp": "4"}).status_int == 409
    assert call(app, "HEAD", "/sda/1/a/c").status_int == 204


# -- GET listings -------------------------------------------------------------------------


@pytest.fixture
def filled(app):
    put_container(app)
    for name in ("a", "b/1", "b/2", "c", "é😀"):
        put_object(app, name, size=len(name), ctype="text/plain", etag="etag-" + name)
    return app


def test_plain_listing_and_empty_204(app):
    put_container(app)
    resp = call(app, "GET", "/sda/1/a/c")
    assert resp.status_int == 204 and resp.body == b""
    resp = call(app, "GET", "/sda/1/a/c?format=json")
    assert resp.status_int == 200 and json.loads(resp.body) == []
    assert resp.headers["X-Container-Object-Count"] == "0"


def test_listing_formats(filled):
    resp = call(filled, "GET", "/sda/1/a/c")
    assert resp.status_int == 200
    assert resp.content_type == "text/plain"
    assert resp.body.decode() == "a\nb/1\nb/2\nc\né😀\n"
    resp = call(filled, "GET", "/sda/1/a/c?format=json&delimiter=/")
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    listing = json.loads(resp.body)
    assert listing[1] == {"subdir": "b/"}
    assert listing[0]["name"] == "a" and listing[0]["hash"] == "etag-a"
    assert listing[0]["bytes"] == 1 and listing[0]["content_type"] == "text/plain"
    assert listing[0]["last_modified"] == "1970-01-01T00:00:02.000000"
    resp = call(filled, "GET", "/sda/1/a/c", {"Accept": "application/xml"})
    root = ElementTree.fromstring(resp.body)
    assert root.get("name") == "c" and len(root.findall("object")) == 5
    resp = call(filled, "GET", "/sda/1/a/c", {"Accept": "image/png"})
    assert resp.status_int == 406


def test_listing_parameters(filled):
    def names(query):
        resp = call(filled, "GET", "/sda/1/a/c?" + query)
        return resp.body.decode().split("\n")[:-1]

    assert names("prefix=b/") == ["b/1", "b/2"]
    assert names("delimiter=/") == ["a", "b/", "c", "é😀"]
    assert names("marker=b/1&limit=2") == ["b/2", "c"]
    assert names("end_marker=b/2") == ["a", "b/1"]
    assert names("reverse=true&limit=2") == ["é😀", "c"]
    assert names("reverse=true&marker=c&delimiter=/") == ["b/", "a"]
    assert names("prefix=%C3%A9") == ["é😀"]
    assert call(filled, "GET", "/sda/1/a/c?limit=10001").status_int == 412
    assert call(filled, "GET", "/sda/1/a/c?limit=ten").status_int == 400
    assert call(filled, "GET", "/sda/1/a/c?marker=%FF").status_int == 400


def test_listing_of_missing_container_is_404(app):
    assert call(app, "GET", "/sda/1/a/c").status_int == 404
    assert call(app, "HEAD", "/sda/1/a/c").status_int == 404


def test_corrupt_database_is_500_not_a_traceback(app, devices, caplog):
    put_container(app)
    POOL.clear()
    with open(db_path(devices), "r+b") as fp:
        fp.write(b"garbage!" * 512)
    resp = call(app, "HEAD", "/sda/1/a/c")
    assert resp.status_int == 500
    assert b"corrupt" in resp.body or resp.body == b""
    assert "corrupt database" in caplog.text
    assert "Traceback" not in caplog.text


def test_broker_rows_match_what_the_server_was_told(app, devices):
    put_container(app, **{"X-Backend-Storage-Policy-Index": "1"})
    put_object(
        app, "o", size=7, ctype="image/png", etag="e1", **{"X-Backend-Storage-Policy-Index": "1"}
    )
    rows = ContainerBroker(db_path(devices)).get_items_since(-1, 10)
    assert [
        (r["name"], r["size"], r["content_type"], r["etag"], r["storage_policy_index"])
        for r in rows
    ] == [("o", 7, "image/png", "e1", 1)]


def test_new_container_without_explicit_policy_takes_the_named_default(tmp_path):
    from webob import Request

    from common.hashing import HashSecrets
    from container_server.server import ContainerApp

    (tmp_path / "sda").mkdir()
    app = ContainerApp({"devices": str(tmp_path)}, hash_secrets=HashSecrets("p", "s"))
    headers = {"X-Timestamp": "1.00000", "X-Backend-Storage-Policy-Default": "2"}
    resp = Request.blank("/sda/0/a/c", method="PUT", headers=headers).get_response(app)
    assert resp.status_int == 201
    resp = Request.blank("/sda/0/a/c", method="HEAD").get_response(app)
    assert resp.headers["X-Backend-Storage-Policy-Index"] == "2"
