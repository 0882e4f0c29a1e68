"""Objects with X-Delete-At: the queue rows the object server writes, and the expirer."""

import json
import time

import pytest
from test_db_replicator import Cluster, ts

from common import expiring
from common.daemon import update_headers
from container_server.updater import ContainerUpdater
from object_server.expirer import ObjectExpirer

QUEUE = expiring.EXPIRING_ACCOUNT


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path)
    yield made
    made.stop()


def put_object(cluster, name, delete_at=None, container="c", account="AUTH_t", proxy=True):
    """PUT to both object primaries with the headers the proxy adds."""
    primaries = cluster.nodes[:2]
    stamp = ts()
    queue = (
        expiring.delete_at_headers(cluster.rings["container"], delete_at, 2)
        if (delete_at and proxy)
        else [{}, {}]
    )
    for slot, node in enumerate(primaries):
        headers = {
            "X-Timestamp": stamp,
            "Content-Type": "text/plain",
            **update_headers("Container", [n.node("container") for n in primaries], 0, slot),
            **queue[slot],
        }
        if delete_at:
            headers["X-Delete-At"] = str(delete_at)
        resp = node.call("object", "PUT", node.path(account, container, name), headers, b"x")
        assert resp.status_int == 201, resp.text


def make_container(cluster, container="c", account="AUTH_t"):
    stamp = ts()
    for node in cluster.nodes[:2]:
        resp = node.call("container", "PUT", node.path(account, container), {"X-Timestamp": stamp})
        assert resp.status_int == 201


def names(node, account, container):
    resp = node.call("container", "GET", node.path(account, container) + "?format=json")
    if resp.status_int == 404:
        return None
    return [e["name"] for e in json.loads(resp.body)]


def report_queue(cluster):
    """The container updaters tell the queue account about its containers."""
    for node in cluster.nodes[:2]:
        ContainerUpdater(node.conf("container"), account_ring=cluster.rings["account"]).run_once()


def expirer(node, now, **extra):
    return ObjectExpirer(node.conf("object", **extra), clock=lambda: now)


def test_queue_row_names_sort_by_expiry():
    assert expiring.bucket_for(1700000123) == "1699920000"
    row = expiring.entry_name(1700000123, "AUTH_t", "c", "a/b")
    assert row == "1700000123-AUTH_t/c/a/b"
    assert expiring.parse_entry(row) == (1700000123, "AUTH_t", "c", "a/b")
    assert expiring.policy_of(expiring.row_content_type(3)) == 3
    with pytest.raises(ValueError):
        expiring.parse_entry("soon-AUTH_t/c")


def test_expirer_deletes_a_due_object_its_listing_row_and_queue_row(cluster):
    node0, node1, _ = cluster.nodes
    make_container(cluster)
    delete_at = int(time.time()) + 100
    put_object(cluster, "doomed", delete_at)
    put_object(cluster, "kept")
    bucket = expiring.bucket_for(delete_at)
    row = expiring.entry_name(delete_at, "AUTH_t", "c", "doomed")
    for node in (node0, node1):
        assert names(node, QUEUE, bucket) == [row]
    report_queue(cluster)

    # Not due yet: nothing happens.
    early = expirer(node0, delete_at - 1).run_once()
    assert early["objects_expired"] == 0
    # Due: only the first primary of the queue container works on it.
    assert expirer(node1, delete_at + 1).run_once()["buckets_checked"] == 0
    stats = expirer(node0, delete_at + 1).run_once()

    assert stats["buckets_checked"] == 1
    assert stats["objects_expired"] == 1 and stats["rows_removed"] == 1
    for node in (node0, node1):
        assert node.call("object", "HEAD", node.path("AUTH_t", "c", "doomed")).status_int == 404
        assert node.call("object", "HEAD", node.path("AUTH_t", "c", "kept")).status_int == 200
        assert names(node, "AUTH_t", "c") == ["kept"]
        assert names(node, QUEUE, bucket) == []
    # The day is over and the queue container is empty: it goes, and leaves the account.
    later = expirer(node0, expiring.bucket_end(bucket)).run_once()
    assert later["buckets_deleted"] == 1
    for node in (node0, node1):
        assert names(node, QUEUE, bucket) is None
        resp = node.call("account", "GET", node.path(QUEUE) + "?format=json")
        assert json.loads(resp.body) == []


def test_a_stale_row_is_dropped_without_deleting_the_object(cluster):
    node0, node1, _ = cluster.nodes
    make_container(cluster)
    delete_at = int(time.time()) + 100
    put_object(cluster, "renewed", delete_at)
    put_object(cluster, "renewed", proxy=False)  # overwritten without X-Delete-At
    report_queue(cluster)

    stats = expirer(node0, delete_at + 1).run_once()

    assert stats["stale_rows"] == 1 and stats["objects_expired"] == 0
    assert stats["rows_removed"] == 1
    for node in (node0, node1):
        assert node.call("object", "HEAD", node.path("AUTH_t", "c", "renewed")).status_int == 200
        assert names(node, QUEUE, expiring.bucket_for(delete_at)) == []


def test_a_new_delete_at_replaces_the_queue_row(cluster):
    node0, node1, _ = cluster.nodes
    make_container(cluster)
    day = (int(time.time()) // expiring.DAY + 2) * expiring.DAY  # a whole day ahead
    put_object(cluster, "o", day + 100)
    put_object(cluster, "o", day + 200)  # same day: the old row is removed
    bucket = expiring.bucket_for(day)
    for node in (node0, node1):
        assert names(node, QUEUE, bucket) == [expiring.entry_name(day + 200, "AUTH_t", "c", "o")]
    # A POST moving it again does the same.
    for slot, node in enumerate((node0, node1)):
        headers = {
            "X-Timestamp": ts(),
            "X-Delete-At": str(day + 300),
            **expiring.delete_at_headers(cluster.rings["container"], day + 300, 2)[slot],
        }
        assert node.call("object", "POST", node.path("AUTH_t", "c", "o"), headers).status_int == 202
    for node in (node0, node1):
        assert names(node, QUEUE, bucket) == [expiring.entry_name(day + 300, "AUTH_t", "c", "o")]


def test_queue_update_that_fails_is_kept_for_the_updater(cluster, tmp_path):
    node0, node1, _ = cluster.nodes
    make_container(cluster)
    delete_at = int(time.time()) + 100
    headers = {
        "X-Timestamp": ts(),
        "X-Delete-At": str(delete_at),
        "Content-Type": "text/plain",
        "X-Delete-At-Container": expiring.bucket_for(delete_at),
        "X-Delete-At-Host": "127.0.0.1:1",  # nobody listens there
        "X-Delete-At-Partition": "0",
        "X-Delete-At-Device": "sd0",
    }
    resp = node0.call("object", "PUT", node0.path("AUTH_t", "c", "o"), headers, b"x")
    assert resp.status_int == 201
    pending = list((tmp_path / "node0" / "sd0").glob("async_pending/*/*"))
    assert len(pending) == 1


def test_bad_queue_headers_are_refused(cluster):
    node0 = cluster.nodes[0]
    headers = {
        "X-Timestamp": ts(),
        "X-Delete-At": str(int(time.time()) + 100),
        "X-Delete-At-Host": "127.0.0.1:1,127.0.0.1:2",
        "X-Delete-At-Device": "sd0",
        "X-Delete-At-Partition": "0",
        "X-Delete-At-Container": "1",
    }
    resp = node0.call("object", "PUT", node0.path("AUTH_t", "c", "o"), headers, b"x")
    assert resp.status_int == 400
