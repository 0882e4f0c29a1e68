"""Object replication between real ``haneul serve storage`` processes: REPLICATE and
SSYNC over their HTTP ports (one of them a single-port node behind the router)."""

import os
import shutil
import time
import uuid

import pytest

from common.hashing import HashSecrets
from common.timestamp import Timestamp
from object_server.auditor import ObjectAuditor
from object_server.replicator import ObjectReplicator
from ring.builder import RingBuilder
from tests.functional.nodes import PART_POWER

BODY = b"replicated bytes " * 1000


@pytest.fixture
def trio(make_storage_node, tmp_path):
    """Three nodes with one device each, sharing the cluster secrets and a 3-replica ring."""
    secrets = HashSecrets(uuid.uuid4().hex, uuid.uuid4().hex)
    nodes = []
    for i in range(3):
        node = make_storage_node(start=False, devices=(f"d{i}",), single_port=i == 2)
        node.secrets = secrets
        node.write_configs()
        nodes.append(node.start())
    builder = RingBuilder(PART_POWER, 3, 0)
    for zone, node in enumerate(nodes, 1):
        builder.add_dev(
            {
                "region": 1,
                "zone": zone,
                "ip": node.host,
                "port": node.ports["object"],
                "device": node.devices[0],
                "weight": 1,
            }
        )
    builder.rebalance(seed=1)
    ring_dir = tmp_path / "rings"
    ring_dir.mkdir()
    builder.get_ring().save(str(ring_dir / "object.ring.gz"))
    for node in nodes:
        node.ring_dir = str(ring_dir)
    return nodes


def daemon_conf(node, **extra):
    return {
        "devices": node.devices_root,
        "mount_check": "false",
        "ring_dir": node.ring_dir,
        "haneul_conf": node.haneul_conf,
        "bind_ip": node.host,
        "port": str(node.ports["object"]),
        **extra,
    }


def object_path(node, name):
    return node.path(node.devices[0], "a", "c", name)


def test_wiped_node_is_refilled_and_a_delete_spreads(trio):
    now = time.time()
    names = [f"obj-{i}" for i in range(8)]
    for name in names:
        for node in trio:
            headers = {"X-Timestamp": Timestamp(now).internal, "Content-Type": "text/plain"}
            resp = node.request("object", "PUT", object_path(node, name), headers, BODY)
            assert resp.status == 201, resp
    wiped = trio[2]
    shutil.rmtree(os.path.join(wiped.devices_root, wiped.devices[0], "objects"))

    stats = ObjectReplicator(daemon_conf(trio[0])).run_once()
    assert stats["errors"] == 0
    assert stats["objects_pushed"] == len(names)
    for name in names:
        resp = wiped.request("object", "GET", object_path(wiped, name))
        assert resp.status == 200 and resp.body == BODY

    gone = names[0]
    resp = trio[2].request(
        "object", "DELETE", object_path(trio[2], gone), {"X-Timestamp": Timestamp(now + 1).internal}
    )
    assert resp.status == 204
    ObjectReplicator(daemon_conf(trio[2])).run_once()
    for node in trio:
        assert node.request("object", "GET", object_path(node, gone)).status == 404


def test_corrupt_copy_is_quarantined_and_restored(trio):
    now = time.time()
    for node in trio:
        headers = {"X-Timestamp": Timestamp(now).internal}
        assert node.request("object", "PUT", object_path(node, "o"), headers, BODY).status == 201
    victim = trio[1]
    (data_file,) = victim.data_files()
    with open(data_file, "r+b") as fp:
        fp.write(b"X")

    stats = ObjectAuditor(daemon_conf(victim, files_per_second="0")).run_once()
    assert stats["quarantined"] == 1
    assert victim.request("object", "GET", object_path(victim, "o")).status == 404

    ObjectReplicator(daemon_conf(trio[0])).run_once()
    resp = victim.request("object", "GET", object_path(victim, "o"))
    assert resp.status == 200 and resp.body == BODY
