"""Issue 6: container updates that could not be sent arrive later (object-updater), and
expired objects leave the store and its listings (container-updater, object-expirer)."""

import json
import os
import time

import pytest
from swiftclient.exceptions import ClientException

from common import expiring

MAX_PASSES = 3


def container_state(cluster, node, part, account, container):
    """(object count, bytes used, [names]) of one container replica, asked directly."""
    head = cluster.direct(node, "HEAD", part, account, container)
    assert head.status // 100 == 2, (node["device"], head.status)
    rows = cluster.direct(
        node, "GET", part, account, container, query_string="format=json&limit=10000"
    )
    assert rows.status == 200, (node["device"], rows.status)
    return (
        int(head.headers["X-Container-Object-Count"]),
        int(head.headers["X-Container-Bytes-Used"]),
        [entry["name"] for entry in json.loads(rows.body)],
    )


def async_pendings(cluster):
    """Every async pending file left on any device."""
    found = []
    for _device, (_node, path) in cluster.devices().items():
        for root, _dirs, files in os.walk(path):
            if "async_pending" in os.path.relpath(root, path).split(os.sep)[0]:
                found += [os.path.join(root, f) for f in files]
    return found


def test_updates_missed_by_a_stopped_container_replica_arrive(cluster, conn, account):
    container = "updates"
    conn.put_container(container)
    part, nodes = cluster.container_nodes(account, container)
    victim_node = nodes[0]
    victim = cluster.node_of(victim_node["device"])
    cluster.stop_node(victim)

    bodies = {f"obj/{i:02d}": os.urandom(100 * i + 1) for i in range(12)}
    for name, body in bodies.items():
        conn.put_object(container, name, body)
    assert async_pendings(cluster), "no update was left pending"
    cluster.start_node(victim)
    expected = (len(bodies), sum(map(len, bodies.values())), sorted(bodies))
    assert container_state(cluster, victim_node, part, account, container) != expected

    for _attempt in range(MAX_PASSES):
        cluster.agent_once("object-updater")
        if not async_pendings(cluster):
            break
    assert async_pendings(cluster) == []
    for node in nodes:
        assert container_state(cluster, node, part, account, container) == expected, node
    headers, listing = conn.get_container(container)
    assert [entry["name"] for entry in listing] == sorted(bodies)
    assert int(headers["x-container-object-count"]) == len(bodies)


def queue_rows(cluster, delete_at):
    """The expirer queue's rows for ``delete_at``'s day, on every replica that has it."""
    bucket = expiring.bucket_for(delete_at)
    part, nodes = cluster.container_nodes(expiring.EXPIRING_ACCOUNT, bucket)
    rows = set()
    for node in nodes:
        answer = cluster.direct(
            node, "GET", part, expiring.EXPIRING_ACCOUNT, bucket, query_string="format=json"
        )
        if answer.status == 200:
            rows.update(entry["name"] for entry in json.loads(answer.body))
    return rows


def test_expired_object_is_deleted_and_leaves_the_listing(cluster, conn, account):
    container = "expiry"
    conn.put_container(container)
    conn.put_object(container, "doomed", b"short-lived", headers={"X-Delete-After": "1"})
    conn.put_object(container, "kept", b"forever")
    conn.put_object(container, "later", b"in an hour", headers={"X-Delete-After": "3600"})
    # X-Delete-After 1 may expire it within the same second (X-Delete-At is whole
    # seconds), so X-Delete-At is read from a replica's metadata, not with a HEAD.
    part, nodes = cluster.object_nodes(account, container, "doomed")
    data_file = cluster.data_file(nodes[0]["device"], part, account, container, "doomed")
    metadata, _body = cluster.read_object_file(data_file)
    delete_at = int(metadata["X-Delete-At"])
    assert time.time() - 1 <= delete_at <= time.time() + 1
    row = expiring.entry_name(delete_at, account, container, "doomed")
    assert row in queue_rows(cluster, delete_at)
    _headers, listing = conn.get_container(container)
    assert [entry["name"] for entry in listing] == ["doomed", "kept", "later"]

    time.sleep(max(0.0, delete_at + 0.2 - time.time()))  # at most about 1.2 s
    tombstone = f"{delete_at:010d}.00000.ts"
    for _attempt in range(MAX_PASSES):
        cluster.agent_once("container-updater", "object-expirer")
        if all(
            cluster.object_files(n["device"], part, account, container, "doomed") == [tombstone]
            for n in nodes
        ):
            break

    for node in nodes:  # deleted on every primary, at its X-Delete-At
        files = cluster.object_files(node["device"], part, account, container, "doomed")
        assert files == [tombstone], node["device"]
        assert cluster.direct(node, "GET", part, account, container, "doomed").status == 404
    with pytest.raises(ClientException) as err:
        conn.get_object(container, "doomed")
    assert err.value.http_status == 404
    headers, listing = conn.get_container(container)
    assert [entry["name"] for entry in listing] == ["kept", "later"]
    assert int(headers["x-container-object-count"]) == 2
    cpart, cnodes = cluster.container_nodes(account, container)
    for node in cnodes:
        assert container_state(cluster, node, cpart, account, container)[2] == ["kept", "later"]
    assert row not in queue_rows(cluster, delete_at)
    assert conn.get_object(container, "kept")[1] == b"forever"
    assert conn.get_object(container, "later")[1] == b"in an hour"
