"""Issue 4: with 3 replicas on 4 nodes, one storage node down costs the client nothing.

The node stopped is one that holds a replica of the test container and of some of its
objects, so writes must go to handoffs and reads must pass over the missing node.
"""

import hashlib
import os

import pytest
from swiftclient.exceptions import ClientException

CONTAINER = "probe-availability"


def md5_hex(body):
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def replicas_on(cluster, node_name, account, names):
    """How many object replicas of ``names`` the ring puts on ``node_name``."""
    count = 0
    for name in names:
        _part, nodes = cluster.object_nodes(account, CONTAINER, name)
        count += sum(cluster.node_of(node["device"]) == node_name for node in nodes)
    return count


def assert_listing(conn, expected):
    headers, listing = conn.get_container(CONTAINER)
    assert [entry["name"] for entry in listing] == sorted(expected)
    assert {entry["name"]: entry["bytes"] for entry in listing} == {
        name: len(body) for name, body in expected.items()
    }
    assert int(headers["x-container-object-count"]) == len(expected)
    assert int(headers["x-container-bytes-used"]) == sum(map(len, expected.values()))


def test_put_get_list_delete_survive_one_node_down(cluster, conn, account):
    conn.put_container(CONTAINER)
    before = {f"before/{i:02d}": os.urandom(1000 + 37 * i) for i in range(12)}
    for name, body in before.items():
        conn.put_object(CONTAINER, name, body)

    _part, container_nodes = cluster.container_nodes(account, CONTAINER)
    holders = sorted({cluster.node_of(node["device"]) for node in container_nodes})
    victim = max(holders, key=lambda node: replicas_on(cluster, node, account, before))
    assert replicas_on(cluster, victim, account, before) > 0
    cluster.stop_node(victim)

    # Reads of what was there before the node went.
    for name, body in before.items():
        headers, got = conn.get_object(CONTAINER, name)
        assert got == body and headers["etag"] == md5_hex(body), name
    assert_listing(conn, before)

    # Writes while it is gone: some of these have a primary on the stopped node.
    during = {f"during/{i:02d}": os.urandom(2000 + 53 * i) for i in range(12)}
    assert replicas_on(cluster, victim, account, during) > 0
    for name, body in during.items():
        assert conn.put_object(CONTAINER, name, body) == md5_hex(body), name
    for name, body in during.items():
        assert conn.get_object(CONTAINER, name)[1] == body, name
    live = {**before, **during}
    assert_listing(conn, live)
    _headers, listing = conn.get_container(CONTAINER, prefix="during/")
    assert [entry["name"] for entry in listing] == sorted(during)

    # Deletes while it is gone: of old objects and of new ones.
    deleted = sorted(before)[::3] + sorted(during)[::3]
    for name in deleted:
        conn.delete_object(CONTAINER, name)
        del live[name]
    for name in deleted:
        with pytest.raises(ClientException) as err:
            conn.get_object(CONTAINER, name)
        assert err.value.http_status == 404, name
    assert_listing(conn, live)

    # The node comes back (stale: it missed the writes); reads still succeed.
    cluster.start_node(victim)
    for name, body in live.items():
        headers, got = conn.get_object(CONTAINER, name)
        assert got == body and headers["etag"] == md5_hex(body), name
    for name in live:
        assert int(conn.head_object(CONTAINER, name)["content-length"]) == len(live[name])
    # Until replication runs, the returned node may still hold copies of objects deleted
    # while it was down (as in Swift); X-Newest asks every primary and honours the
    # tombstones.
    for name in deleted:
        with pytest.raises(ClientException) as err:
            conn.get_object(CONTAINER, name, headers={"X-Newest": "true"})
        assert err.value.http_status == 404, name
    assert int(conn.head_account()["x-account-container-count"]) == 1
