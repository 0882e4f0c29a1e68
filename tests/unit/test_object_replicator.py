"""The object replicator on a real 4-node, 3-replica ring: object servers on loopback,
files on tmp_path, one ObjectReplicator per node as the agent would build it."""

import glob
import os
import shutil
import time

import pytest
from helpers import LoopbackCluster, flip_byte

from common.timestamp import Timestamp
from object_server import layout
from object_server.auditor import ObjectAuditor
from object_server.replicator import ObjectReplicator

BODY = b"the quick brown fox " * 100
T0 = int(time.time())  # writes are recent: older tombstones would be reclaimed


class Cluster(LoopbackCluster):
    def __init__(self, root, nodes=4, replicas=3):
        super().__init__(root)
        self.start_nodes(nodes)
        self.build_ring("object", 3, replicas, seed=3)

    def replicate(self, node, **extra):
        return ObjectReplicator(self.conf(node, **extra)).run_once()

    def put(self, name, ts, nodes, body=BODY, headers=None):
        part, _, _ = self.placement(name)
        for node in nodes:
            hdrs = {"X-Timestamp": Timestamp(T0 + ts).internal, "Content-Type": "text/plain"}
            hdrs.update(headers or {})
            resp = node.call("PUT", f"/{node.device}/{part}/a/c/{name}", hdrs, body)
            assert resp.status_int == 201, resp.body

    def get(self, node, name):
        part, _, _ = self.placement(name)
        return node.call("GET", f"/{node.device}/{part}/a/c/{name}")


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.stop()


def test_replicator_fills_a_wiped_device_from_the_others(cluster):
    names = [f"o{i}" for i in range(24)]
    for name in names:
        cluster.put(name, 100, cluster.placement(name)[1])
    wiped = cluster.nodes[1]
    lost = [n for n in names if wiped in cluster.placement(n)[1]]
    assert lost
    shutil.rmtree(os.path.join(wiped.dev_path, "objects"))
    assert all(cluster.get(wiped, n).status_int == 404 for n in lost)

    pushed = 0
    for node in cluster.nodes:
        if node is not wiped:
            stats = cluster.replicate(node)
            assert stats["errors"] == 0
            pushed += stats["objects_pushed"]
    assert pushed >= len(lost)
    for name in lost:
        resp = cluster.get(wiped, name)
        assert resp.status_int == 200
        assert resp.body == BODY
        assert resp.headers["X-Timestamp"] == Timestamp(T0 + 100).internal
        assert resp.headers["Content-Type"] == "text/plain"

    # Everything agrees now: another pass moves nothing.
    for node in cluster.nodes:
        stats = cluster.replicate(node)
        assert stats["objects_pushed"] == 0 and stats["suffixes_synced"] == 0
        assert stats["errors"] == 0


def test_handoff_partition_moves_to_its_primaries_and_is_deleted(cluster):
    part, primaries, handoffs = cluster.placement("lost-and-found")
    handoff = handoffs[0]
    cluster.put("lost-and-found", 200, [handoff])
    part_dir = layout.partition_dir(handoff.dev_path, part, 0)
    assert os.path.isdir(part_dir)

    stats = cluster.replicate(handoff)
    assert stats["handoff_partitions"] == 1
    assert stats["objects_pushed"] == 3
    assert stats["handoffs_removed"] == 1
    assert not os.path.exists(part_dir)
    for node in primaries:
        resp = cluster.get(node, "lost-and-found")
        assert resp.status_int == 200 and resp.body == BODY


def test_handoff_is_kept_while_a_primary_is_down(cluster):
    part, primaries, handoffs = cluster.placement("patience")
    handoff = handoffs[0]
    cluster.put("patience", 300, [handoff])
    primaries[2].stop()

    stats = cluster.replicate(handoff)
    assert stats["errors"] >= 1
    assert stats["handoffs_removed"] == 0
    assert cluster.get(handoff, "patience").status_int == 200  # still here
    assert cluster.get(primaries[0], "patience").status_int == 200  # the others got it

    primaries[2].start()
    stats = cluster.replicate(handoff)
    assert stats["errors"] == 0 and stats["handoffs_removed"] == 1
    assert cluster.get(primaries[2], "patience").body == BODY
    assert not os.path.exists(layout.partition_dir(handoff.dev_path, part, 0))


def test_tombstone_replicates_over_an_older_data_file(cluster):
    part, primaries, _ = cluster.placement("doomed")
    cluster.put("doomed", 100, primaries)
    first = primaries[0]
    resp = first.call(
        "DELETE",
        f"/{first.device}/{part}/a/c/doomed",
        {"X-Timestamp": Timestamp(T0 + 150).internal},
    )
    assert resp.status_int == 204

    stats = cluster.replicate(first)
    assert stats["objects_pushed"] == 2
    for node in primaries:
        resp = cluster.get(node, "doomed")
        assert resp.status_int == 404
        assert resp.headers["X-Backend-Timestamp"] == Timestamp(T0 + 150).internal
        assert [os.path.basename(f) for f in node.files()] == [Timestamp(T0 + 150).internal + ".ts"]


def test_tombstone_past_reclaim_age_is_removed_not_replicated(cluster):
    part, primaries, _ = cluster.placement("ancient")
    first = primaries[0]
    path = f"/{first.device}/{part}/a/c/ancient"
    old = Timestamp(time.time() - 3600).internal
    assert first.call("DELETE", path, {"X-Timestamp": old}).status_int == 404
    assert first.files(".ts")

    stats = cluster.replicate(first, reclaim_age="60")
    assert stats["objects_pushed"] == 0
    assert first.files() == []
    assert all(node.files() == [] for node in primaries)


def test_newer_meta_replicates_without_resending_the_data(cluster):
    part, primaries, _ = cluster.placement("described")
    cluster.put("described", 100, primaries, headers={"X-Object-Meta-Color": "red"})
    first = primaries[0]
    resp = first.call(
        "POST",
        f"/{first.device}/{part}/a/c/described",
        {"X-Timestamp": Timestamp(T0 + 120).internal, "X-Object-Meta-Color": "blue"},
    )
    assert resp.status_int == 202
    data_inode = os.stat(primaries[1].files(".data")[0]).st_ino

    assert cluster.replicate(first)["objects_pushed"] == 2
    for node in primaries[1:]:
        resp = cluster.get(node, "described")
        assert resp.headers["X-Object-Meta-Color"] == "blue"
        assert resp.headers["X-Timestamp"] == Timestamp(T0 + 120).internal
        assert resp.body == BODY
        names = [os.path.basename(f) for f in node.files()]
        assert names == [
            Timestamp(T0 + 100).internal + ".data",
            Timestamp(T0 + 120).internal + ".meta",
        ]
    assert os.stat(primaries[1].files(".data")[0]).st_ino == data_inode  # untouched


def test_newer_data_wins_over_a_replicated_older_one(cluster):
    _, primaries, _ = cluster.placement("contested")
    cluster.put("contested", 100, primaries[:2], body=b"old")
    cluster.put("contested", 200, primaries[2:], body=b"new")
    for node in primaries:
        cluster.replicate(node)
    for node in primaries:
        assert cluster.get(node, "contested").body == b"new"
        assert len(node.files()) == 1


def test_auditor_quarantine_then_replicator_restores_the_object(cluster):
    _, primaries, _ = cluster.placement("fragile")
    cluster.put("fragile", 100, primaries)
    victim = primaries[0]
    data_file = victim.files(".data")[0]
    flip_byte(data_file, 7)

    stats = ObjectAuditor(cluster.conf(victim, files_per_second="0")).run_once()
    assert stats["quarantined"] == 1
    assert cluster.get(victim, "fragile").status_int == 404
    assert glob.glob(os.path.join(victim.dev_path, "quarantined", "objects", "*"))

    stats = cluster.replicate(primaries[1])
    assert stats["objects_pushed"] >= 1
    resp = cluster.get(victim, "fragile")
    assert resp.status_int == 200 and resp.body == BODY


def test_unmounted_primary_is_replaced_by_a_handoff(cluster):
    _, primaries, handoffs = cluster.placement("detour")
    cluster.put("detour", 100, primaries[:2])
    shutil.rmtree(primaries[2].dev_path)  # answers 507 from now on

    stats = cluster.replicate(primaries[0])
    assert stats["errors"] == 0
    assert cluster.get(handoffs[0], "detour").body == BODY


def test_replicator_only_works_on_its_own_devices(cluster):
    _, primaries, _ = cluster.placement("mine")
    cluster.put("mine", 100, primaries[:1])
    node = primaries[0]
    assert ObjectReplicator(cluster.conf(node, port="1")).run_once()["partitions_checked"] == 0
    replicator = ObjectReplicator(cluster.conf(node))
    assert replicator.run_once(devices=["elsewhere"])["partitions_checked"] == 0
    assert replicator.run_once(devices=[node.device])["partitions_checked"] == 1
