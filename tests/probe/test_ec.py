"""Issue 6 (erasure coding): a wiped device's fragment archives are rebuilt by the
reconstructor, byte for byte, and every object still reads right with m = 2 other
nodes stopped, so that the rebuilt fragments are among the k = 4 the proxy decodes.

Needs an ``ec42`` policy (4 data + 2 parity) in the cluster's /info; skipped otherwise.
"""

import collections
import json
import os
import urllib.request

import pytest

from tests.unit.helpers import flip_byte

CONTAINER = "ec-probe"
SIZES = (1, 4096, 1024 * 1024 + 17, 3 * 1024 * 1024 + 5)  # 1, 2 and 4 segments
MAX_PASSES = 3
CANDIDATES = 5000


def ec42_policy(cluster):
    """The cluster's ec42 policy, or skip the test with the reason."""
    with urllib.request.urlopen(cluster.info["proxy"]["url"] + "/info", timeout=10) as resp:
        info = json.load(resp)
    names = [p["name"] for p in info.get("swift", {}).get("policies", [])]
    if "ec42" not in names:
        pytest.skip(f"no ec42 storage policy in this cluster's /info (policies: {names})")
    return cluster.policies().get_by_name("ec42")


def fragments_by_node(cluster, nodes):
    return collections.Counter(cluster.node_of(node["device"]) for node in nodes)


def pick_objects(cluster, account, policy_index):
    """(device to wipe, the two nodes to stop, object names) such that each object has a
    fragment on the device, whose node holds two of its fragments, and the two nodes
    stopped hold one fragment each (so exactly k fragments, the rebuilt one among
    them, remain)."""
    for device in sorted(cluster.devices()):
        groups = collections.defaultdict(list)
        for i in range(CANDIDATES):
            name = f"obj-{i:04d}"
            _part, nodes = cluster.object_nodes(account, CONTAINER, name, policy_index)
            if device not in {node["device"] for node in nodes}:
                continue
            per_node = fragments_by_node(cluster, nodes)
            if per_node[cluster.node_of(device)] != 2:
                continue
            singles = tuple(sorted(n for n, count in per_node.items() if count == 1))
            if len(singles) == 2:
                groups[singles].append(name)
        if groups:
            stopped, names = max(groups.items(), key=lambda item: len(item[1]))
            if len(names) >= len(SIZES):
                return device, stopped, names[: len(SIZES)]
    pytest.fail("the EC ring offers no device and node pair to test with")


def test_wiped_ec_device_is_reconstructed_and_reads_survive_two_nodes_down(cluster, conn, account):
    policy = ec42_policy(cluster)
    assert (policy.ec_ndata, policy.ec_nparity) == (4, 2)
    device, stopped, names = pick_objects(cluster, account, policy.index)
    conn.put_container(CONTAINER, headers={"X-Storage-Policy": "ec42"})
    bodies = {name: os.urandom(size) for name, size in zip(names, SIZES, strict=True)}
    for name, body in bodies.items():
        conn.put_object(CONTAINER, name, body)

    def archive(name):
        """(file name, metadata, bytes) of the object's fragment archive on the device."""
        part, _nodes = cluster.object_nodes(account, CONTAINER, name, policy.index)
        path = cluster.data_file(device, part, account, CONTAINER, name, policy.index)
        return None if path is None else (os.path.basename(path), *cluster.read_object_file(path))

    before = {name: archive(name) for name in bodies}
    for name, found in before.items():
        part, nodes = cluster.object_nodes(account, CONTAINER, name, policy.index)
        index = next(n["index"] for n in nodes if n["device"] == device)
        assert found is not None and found[0].endswith(f"#{index}#d.data"), (name, found)

    cluster.wipe_device(device)
    assert all(archive(name) is None for name in bodies)
    for _attempt in range(MAX_PASSES):
        cluster.agent_once("object-reconstructor")
        if all(archive(name) is not None for name in bodies):
            break

    for name in bodies:
        rebuilt = archive(name)
        assert rebuilt is not None, f"{name}: fragment not rebuilt on {device}"
        assert rebuilt[0] == before[name][0], name  # same timestamp, index, durable
        assert rebuilt[2] == before[name][2], f"{name}: rebuilt archive differs"
        assert rebuilt[1].get("X-Object-Sysmeta-Ec-Frag-Index") == before[name][1].get(
            "X-Object-Sysmeta-Ec-Frag-Index"
        )

    # Stop the two nodes with one fragment each: k fragments are left, one rebuilt.
    assert cluster.node_of(device) not in stopped
    for node_name in stopped:
        cluster.stop_node(node_name)
    for name, body in bodies.items():
        part, nodes = cluster.object_nodes(account, CONTAINER, name, policy.index)
        alive = [n for n in nodes if cluster.node_of(n["device"]) not in stopped]
        assert len(alive) == policy.ec_ndata
        headers, got = conn.get_object(CONTAINER, name)
        assert got == body, name
        assert int(headers["content-length"]) == len(body)


def test_dented_fragment_is_quarantined_by_the_auditor_and_rebuilt(cluster, conn, account):
    """A flipped byte in a fragment archive on disk: the auditor finds it against the
    archive's CRC32 and quarantines it, and the reconstructor brings it back byte for
    byte from the other fragments."""
    policy = ec42_policy(cluster)
    conn.put_container(CONTAINER, headers={"X-Storage-Policy": "ec42"})
    body = os.urandom(2 * 1024 * 1024 + 4321)
    conn.put_object(CONTAINER, "dented", body)
    part, nodes = cluster.object_nodes(account, CONTAINER, "dented", policy.index)
    device = nodes[1]["device"]

    def archive_path():
        return cluster.data_file(device, part, account, CONTAINER, "dented", policy.index)

    path = archive_path()
    good_metadata, good_bytes = cluster.read_object_file(path)
    assert good_metadata["ETag"].startswith("crc32:")
    flip_byte(path, len(good_bytes) // 2)

    out = cluster.agent_once("object-auditor", devices=[device])
    assert "quarantined=1" in out, out
    assert archive_path() is None
    for _attempt in range(MAX_PASSES):
        cluster.agent_once("object-reconstructor")
        if archive_path() is not None:
            break
    restored = archive_path()
    assert restored is not None, "the fragment was not rebuilt"
    assert os.path.basename(restored) == os.path.basename(path)
    metadata, restored_bytes = cluster.read_object_file(restored)
    assert restored_bytes == good_bytes and metadata["ETag"] == good_metadata["ETag"]
    assert conn.get_object(CONTAINER, "dented")[1] == body
