"""The account server's HTTP API and its broker, on real SQLite files."""

import json
from xml.etree import ElementTree

import pytest
from webob import Request

from account_server.broker import AccountBroker
from account_server.server import AccountApp
from common.db import db_file_path
from common.hashing import HashSecrets
from common.listing import ListingParams

SECRETS = HashSecrets("pre", "suf")


@pytest.fixture
def app(tmp_path):
    (tmp_path / "sda").mkdir()
    return AccountApp({"devices": str(tmp_path)}, hash_secrets=SECRETS)


def call(app, method, path, headers=None):
    return Request.blank(path, method=method, headers=headers or {}).get_response(app)


def report(app, container, put="1", delete="0", count=0, used=0, account="a", **extra):
    headers = {
        "X-Put-Timestamp": put,
        "X-Delete-Timestamp": delete,
        "X-Object-Count": str(count),
        "X-Bytes-Used": str(used),
        "X-Timestamp": "1",
        **extra,
    }
    return call(app, "PUT", f"/sda/0/{account}/{container}", headers)


def listing(app, query=""):
    resp = call(app, "GET", "/sda/0/a?format=json" + query)
    assert resp.status_int == 200, resp.status
    return json.loads(resp.body)


@pytest.fixture
def account(app):
    assert call(app, "PUT", "/sda/0/a", {"X-Timestamp": "1"}).status_int == 201
    return app


def test_put_creates_then_accepts(app):
    assert call(app, "PUT", "/sda/0/a", {"X-Timestamp": "1"}).status_int == 201
    assert call(app, "PUT", "/sda/0/a", {"X-Timestamp": "2"}).status_int == 202
    assert call(app, "PUT", "/sda/0/a").status_int == 400
    resp = call(app, "HEAD", "/sda/0/a")
    assert resp.status_int == 204
    assert resp.headers["X-Put-Timestamp"] == "0000000002.00000"
    assert resp.headers["X-Account-Container-Count"] == "0"


def test_missing_account_is_404(app):
    assert call(app, "HEAD", "/sda/0/a").status_int == 404
    assert call(app, "GET", "/sda/0/a").status_int == 404
    assert call(app, "POST", "/sda/0/a", {"X-Timestamp": "1"}).status_int == 404
    assert call(app, "DELETE", "/sda/0/a", {"X-Timestamp": "1"}).status_int == 404
    assert report(app, "c").status_int == 404


def test_bad_requests(account):
    assert call(account, "PUT", "/sdx/0/a", {"X-Timestamp": "1"}).status_int == 507
    assert call(account, "PUT", "/sda/0/" + "a" * 257, {"X-Timestamp": "1"}).status_int == 400
    assert call(account, "PUT", "/sda/0/a/c/x", {"X-Timestamp": "1"}).status_int == 400
    headers = {"X-Timestamp": "2", "X-Account-Meta-" + "k" * 129: "v"}
    assert call(account, "POST", "/sda/0/a", headers).status_int == 400
    assert call(account, "GET", "/sda/0/a?limit=10001").status_int == 412
    assert call(account, "GET", "/sda/0/a?limit=x").status_int == 400
    assert call(account, "GET", "/sda/0/a/c").status_int == 400


def test_report_needs_its_headers(account):
    assert call(account, "PUT", "/sda/0/a/c", {"X-Put-Timestamp": "1"}).status_int == 400
    assert report(account, "c", count="many").status_int == 400
    assert report(account, "c", put="soon").status_int == 400
    extra = {"X-Backend-Storage-Policy-Index": "-1"}
    assert report(account, "c", **extra).status_int == 400


def test_metadata_post_newest_wins(account):
    call(account, "POST", "/sda/0/a", {"X-Timestamp": "3", "X-Account-Meta-Color": "red"})
    resp = call(account, "POST", "/sda/0/a", {"X-Timestamp": "2", "X-Account-Meta-Color": "blue"})
    assert resp.status_int == 204
    headers = call(account, "HEAD", "/sda/0/a").headers
    assert headers["X-Account-Meta-Color"] == "red"
    call(account, "POST", "/sda/0/a", {"X-Timestamp": "4", "X-Remove-Account-Meta-Color": "x"})
    assert "X-Account-Meta-Color" not in call(account, "HEAD", "/sda/0/a").headers


def test_reports_make_listing_and_totals(account):
    assert report(account, "c1", count=2, used=20).status_int == 201
    assert (
        report(
            account, "c2", count=3, used=30, **{"X-Backend-Storage-Policy-Index": "1"}
        ).status_int
        == 201
    )
    assert report(account, "c1", put="2", count=4, used=40).status_int == 201  # update
    headers = call(account, "HEAD", "/sda/0/a").headers
    assert headers["X-Account-Container-Count"] == "2"
    assert headers["X-Account-Object-Count"] == "7"
    assert headers["X-Account-Bytes-Used"] == "70"
    assert listing(account) == [
        {"name": "c1", "count": 4, "bytes": 40, "last_modified": "1970-01-01T00:00:02.000000"},
        {"name": "c2", "count": 3, "bytes": 30, "last_modified": "1970-01-01T00:00:01.000000"},
    ]
    broker = account.get_broker("sda", "0", "a")
    assert broker.get_policy_stats() == {
        0: {"container_count": 1, "object_count": 4, "bytes_used": 40},
        1: {"container_count": 1, "object_count": 3, "bytes_used": 30},
    }


def test_deleted_container_drops_out_and_older_put_cannot_revive_it(account):
    report(account, "c", put="1", count=0)
    assert report(account, "c", put="1", delete="2").status_int == 204
    assert listing(account) == []
    assert call(account, "HEAD", "/sda/0/a").headers["X-Account-Container-Count"] == "0"
    report(account, "c", put="1.5", delete="0")  # a stale report: the delete stays newer
    assert listing(account) == []
    report(account, "c", put="3", delete="0")  # created again
    assert [e["name"] for e in listing(account)] == ["c"]


def test_listing_parameters_and_formats(account):
    for name in ("a", "b-1", "b-2", "c"):
        report(account, name)
    names = [e.get("name") or e.get("subdir") for e in listing(account, "&delimiter=-")]
    assert names == ["a", "b-", "c"]
    assert [e["name"] for e in listing(account, "&marker=a&limit=2")] == ["b-1", "b-2"]
    assert [e["name"] for e in listing(account, "&reverse=1&end_marker=b-1")] == ["c", "b-2"]
    assert [e["name"] for e in listing(account, "&prefix=b")] == ["b-1", "b-2"]
    resp = call(account, "GET", "/sda/0/a")
    assert resp.body == b"a\nb-1\nb-2\nc\n" and resp.content_type == "text/plain"
    resp = call(account, "GET", "/sda/0/a?format=xml")
    root = ElementTree.fromstring(resp.body)
    assert root.tag == "account" and root.get("name") == "a"
    assert [c.find("name").text for c in root.findall("container")] == ["a", "b-1", "b-2", "c"]
    assert resp.headers["X-Account-Container-Count"] == "4"


def test_empty_plain_listing_is_204(account):
    resp = call(account, "GET", "/sda/0/a")
    assert resp.status_int == 204 and resp.body == b""
    assert call(account, "GET", "/sda/0/a?format=json").body == b"[]"


def test_delete_account(account):
    report(account, "c", count=1, used=1)
    assert call(account, "DELETE", "/sda/0/a").status_int == 400  # no timestamp
    assert call(account, "DELETE", "/sda/0/a", {"X-Timestamp": "5"}).status_int == 204
    resp = call(account, "HEAD", "/sda/0/a")
    assert resp.status_int == 404
    assert resp.headers["X-Account-Status"] == "Deleted"
    assert call(account, "GET", "/sda/0/a").status_int == 404
    assert report(account, "c2").status_int == 404
    assert call(account, "PUT", "/sda/0/a", {"X-Timestamp": "6"}).status_int == 403
    assert call(account, "DELETE", "/sda/0/a", {"X-Timestamp": "7"}).status_int == 404


def test_auto_create_by_header_or_prefix(app):
    assert report(app, "c").status_int == 404
    assert report(app, "c", **{"X-Backend-Auto-Create": "true"}).status_int == 201
    assert [e["name"] for e in listing(app)] == ["c"]
    assert report(app, "1700000000", account=".expiring_objects").status_int == 201
    assert call(app, "HEAD", "/sda/0/.expiring_objects").status_int == 204


def test_broker_merge_keeps_newest_timestamps(tmp_path):
    broker = AccountBroker(db_file_path(str(tmp_path / "sda"), "accounts", 0, "f" * 32))
    broker.initialize(1, account="a")
    broker.put_container("c", 5, 0, 3, 30)
    broker.put_container("c", 4, 6, 0, 0)  # older put, newer delete: deleted
    rows = broker.get_items_since(-1, 10)
    assert len(rows) == 1
    row = rows[0]
    assert (row["put_timestamp"], row["delete_timestamp"], row["deleted"]) == (
        "0000000005.00000",
        "0000000006.00000",
        1,
    )
    assert broker.list_containers(ListingParams()) == []
    before = broker.get_max_row()
    broker.put_container("c", 4, 6, 0, 0)  # the same report again changes nothing
    assert broker.get_max_row() == before
    info = broker.get_info()
    assert (info["container_count"], info["object_count"], info["bytes_used"]) == (0, 0, 0)
