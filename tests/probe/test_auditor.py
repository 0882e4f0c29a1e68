"""Issue 6: a flipped byte is found by the auditor, quarantined, and replaced by a good
copy from another node; every replica then reads right, even alone."""

import os

from tests.unit.helpers import flip_byte

CONTAINER = "audit"


def test_corrupt_replica_is_quarantined_and_replaced(cluster, conn, account):
    bodies = {f"obj/{i}": os.urandom(10_000 + 1000 * i) for i in range(4)}
    conn.put_container(CONTAINER)
    for name, body in bodies.items():
        conn.put_object(CONTAINER, name, body)
    name = "obj/2"
    part, nodes = cluster.object_nodes(account, CONTAINER, name)
    device = nodes[1]["device"]
    path = cluster.data_file(device, part, account, CONTAINER, name)
    good_metadata, good_bytes = cluster.read_object_file(path)
    assert good_bytes == bodies[name]

    # Flip one byte in the middle of the object's bytes (the size stays the same).
    flip_byte(path, len(good_bytes) // 2)

    out = cluster.agent_once("object-auditor", devices=[device])
    assert "quarantined=1" in out, out
    hash_dir = cluster.object_hash_dir(device, part, account, CONTAINER, name)
    quarantined = os.path.join(
        cluster.device_path(device), "quarantined", "objects", os.path.basename(hash_dir)
    )
    assert not os.path.exists(hash_dir)
    assert os.listdir(quarantined) == [os.path.basename(path)]
    _metadata, bad_bytes = cluster.read_object_file(
        os.path.join(quarantined, os.listdir(quarantined)[0])
    )
    assert bad_bytes != good_bytes and len(bad_bytes) == len(good_bytes)
    assert cluster.direct(nodes[1], "GET", part, account, CONTAINER, name).status == 404

    # The other objects on the device passed the audit and stay where they were.
    for other in bodies:
        other_part, other_nodes = cluster.object_nodes(account, CONTAINER, other)
        if other != name and device in {n["device"] for n in other_nodes}:
            assert cluster.data_file(device, other_part, account, CONTAINER, other)

    for _attempt in range(2):  # the replicator's pass, once more if a remote lagged
        cluster.agent_once("object-replicator")
        if cluster.data_file(device, part, account, CONTAINER, name):
            break
    restored = cluster.data_file(device, part, account, CONTAINER, name)
    assert restored is not None, "no good copy came back"
    assert os.path.basename(restored) == os.path.basename(path)
    assert cluster.read_object_file(restored) == (good_metadata, good_bytes)

    # Every primary answers the right bytes when asked directly...
    for node in nodes:
        answer = cluster.direct(node, "GET", part, account, CONTAINER, name)
        assert answer.status == 200 and answer.body == bodies[name], node["device"]
    # ...and through the proxy with the other two replicas' nodes stopped.
    others = {cluster.node_of(n["device"]) for n in nodes} - {cluster.node_of(device)}
    assert len(others) == 2
    for node_name in sorted(others):
        cluster.stop_node(node_name)
    assert conn.get_object(CONTAINER, name)[1] == bodies[name]
