"""The account reaper empties a deleted account through real servers on loopback."""

import json

import pytest
from test_db_replicator import Cluster, ts

from account_server.broker import AccountBroker
from account_server.reaper import AccountReaper
from account_server.replicator import AccountReplicator
from common.daemon import update_headers


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path)
    yield made
    made.stop()


def proxy_like_setup(cluster, account, containers):
    """What the proxy would have done: the account, containers and objects on all nodes."""
    primaries = cluster.nodes[:2]
    created = ts()
    for node in primaries:
        assert (
            node.call("account", "PUT", node.path(account), {"X-Timestamp": created}).status_int
            == 201
        )
    for container, objects in containers.items():
        stamp = ts()
        for slot, node in enumerate(primaries):
            headers = {
                "X-Timestamp": stamp,
                **update_headers("Account", [n.node("account") for n in primaries], 0, slot),
            }
            resp = node.call("container", "PUT", node.path(account, container), headers)
            assert resp.status_int == 201, resp.text
        for obj in objects:
            stamp = ts()
            for slot, node in enumerate(primaries):
                headers = {
                    "X-Timestamp": stamp,
                    "Content-Type": "text/plain",
                    **update_headers(
                        "Container", [n.node("container") for n in primaries], 0, slot
                    ),
                }
                resp = node.call(
                    "object", "PUT", node.path(account, container, obj), headers, b"data"
                )
                assert resp.status_int == 201, resp.text


def test_reaper_empties_a_deleted_account(cluster):
    node0, node1, _ = cluster.nodes
    proxy_like_setup(cluster, "AUTH_gone", {"full": ["o1", "o2", "dir/o3"], "empty": []})
    proxy_like_setup(cluster, "AUTH_kept", {"c": ["o"]})
    deleted = ts()
    for node in (node0, node1):
        assert (
            node.call(
                "account", "DELETE", node.path("AUTH_gone"), {"X-Timestamp": deleted}
            ).status_int
            == 204
        )

    # Only the first primary of the account's partition does the work.
    assert AccountReaper(node1.conf("account")).run_once()["accounts_checked"] == 0
    stats = AccountReaper(node0.conf("account")).run_once()

    assert stats["accounts_checked"] == 1 and stats["accounts_reaped"] == 1
    assert stats["objects_deleted"] == 3 and stats["objects_failed"] == 0
    assert stats["containers_deleted"] == 2 and stats["containers_remaining"] == 0
    for node in (node0, node1):
        for obj in ("o1", "o2", "dir/o3"):
            assert node.call("object", "GET", node.path("AUTH_gone", "full", obj)).status_int == 404
        for container in ("full", "empty"):
            assert (
                node.call("container", "HEAD", node.path("AUTH_gone", container)).status_int == 404
            )
    # The account heard of every container going: it is empty now.
    for node in (node0, node1):
        with AccountBroker(node.db_file("AUTH_gone")) as broker:
            assert broker.get_info()["container_count"] == 0
    # The other account is untouched.
    resp = node0.call("container", "GET", node0.path("AUTH_kept", "c") + "?format=json")
    assert [e["name"] for e in json.loads(resp.body)] == ["o"]

    # Once reaped and older than reclaim_age, the replicator removes the database.
    reclaim = AccountReplicator(node0.conf("account", reclaim_age=0)).run_once()
    assert reclaim["reclaimed"] == 1


def test_reaper_waits_for_delay_reaping(cluster):
    node0, node1, _ = cluster.nodes
    proxy_like_setup(cluster, "AUTH_later", {"c": ["o"]})
    for node in (node0, node1):
        node.call("account", "DELETE", node.path("AUTH_later"), {"X-Timestamp": ts()})

    stats = AccountReaper(node0.conf("account", delay_reaping=3600)).run_once()

    assert stats["accounts_waiting"] == 1 and stats["objects_deleted"] == 0
    assert node0.call("object", "HEAD", node0.path("AUTH_later", "c", "o")).status_int == 200


def test_reaper_leaves_what_it_cannot_reach_for_next_pass(cluster):
    node0, node1, _ = cluster.nodes
    proxy_like_setup(cluster, "AUTH_half", {"c": ["o"]})
    for node in (node0, node1):
        node.call("account", "DELETE", node.path("AUTH_half"), {"X-Timestamp": ts()})
    node1.servers["object"].shutdown()
    node1.servers["object"].server_close()

    stats = AccountReaper(node0.conf("account", conn_timeout=0.2, node_timeout=1)).run_once()

    assert stats["objects_failed"] == 1 and stats["accounts_reaped"] == 0
    assert stats["containers_remaining"] == 1
