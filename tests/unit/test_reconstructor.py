"""The object reconstructor on a real 7-node ring for a 4+2 ISA-L policy: object servers
on loopback, files on tmp_path, fragments written as the proxy writes them (phase 1 PUT
+ commit), one ObjectReconstructor per node as the agent would build it."""

import hashlib
import io
import os
import shutil
import time

import pytest
from helpers import EC_CONF, EC_SEGMENT, LoopbackCluster, Node, flip_byte

from common import daemon
from common.crc32 import CRC32
from common.policies import load_policies
from common.timestamp import Timestamp
from object_server import layout
from object_server.auditor import ObjectAuditor
from object_server.ec_diskfile import ec_driver
from object_server.reconstructor import ObjectReconstructor
from object_server.reconstructor_fragments import FragmentSource, next_fragment

SEGMENT = EC_SEGMENT
K, M = 4, 2
T0 = time.time()
HANEUL_CONF = EC_CONF


def md5(data):
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class ECNode(Node):
    """A loopback Node whose requests are for the EC policy."""

    def call(self, method, path, headers=None, body=None):
        headers = {"X-Backend-Storage-Policy-Index": "1", **(headers or {})}
        return super().call(method, path, headers, body)

    def ec_files(self):
        return sorted(
            os.path.relpath(os.path.join(d, f), self.dev_path)
            for d, _, files in os.walk(os.path.join(self.dev_path, "objects-1"))
            for f in files
            if f.endswith((".data", ".ts", ".meta"))
        )


def encode(driver, body):
    """The k + m fragment archives of a body, segmented as the proxy does (an empty body
    has empty archives)."""
    segments = [body[i : i + SEGMENT] for i in range(0, len(body), SEGMENT)]
    archives = [bytearray() for _ in range(K + M)]
    for segment in segments:
        for index, fragment in enumerate(driver.encode(segment)):
            archives[index] += fragment
    return [bytes(a) for a in archives]


def decode(driver, archives):
    """The body from any k archives ({frag index: bytes})."""
    sources = [
        FragmentSource(index, io.BytesIO(data).read, lambda: None, f"archive {index}")
        for index, data in archives.items()
    ]
    length = len(next(iter(archives.values())))
    body, done = bytearray(), 0
    while done < length:
        fragments = [next_fragment(driver, source) for source in sources]
        done += len(fragments[0])
        body += driver.decode(fragments)
    return bytes(body)


class ECCluster(LoopbackCluster):
    node_class = ECNode

    def __init__(self, root, nodes=7):
        super().__init__(root, HANEUL_CONF)
        self.policies = load_policies(self.haneul_conf)
        self.policy = self.policies.get_by_index(1)
        self.driver = ec_driver(self.policy)
        self.start_nodes(nodes, self.policies)
        self.build_ring("object-1", 2, K + M, seed=7)
        self.archives = {}

    def reconstruct(self, node, **extra):
        return ObjectReconstructor(self.conf(node, **extra)).run_once()

    def reconstruct_all(self, passes=1):
        totals = {}
        for _ in range(passes):
            for node in self.nodes:
                for key, value in self.reconstruct(node).items():
                    totals[key] = totals.get(key, 0) + value
        return totals

    def path(self, node, name):
        return f"/{node.device}/{self.placement(name)[0]}/a/c/{name}"

    def put(self, name, body, ts, where=None, commit=True):
        """Write a body as the proxy would: archive i to node ``where[i]`` (default the
        primaries), then commit each one. Returns the archives."""
        archives = encode(self.driver, body)
        self.archives[name] = archives
        _, primaries, _ = self.placement(name)
        where = where if where is not None else dict(enumerate(primaries))
        timestamp = Timestamp(T0 + ts).internal
        for index, node in where.items():
            headers = {
                "X-Timestamp": timestamp,
                "X-Backend-Ec-Frag-Index": str(index),
                "Content-Type": "text/plain",
                "X-Object-Meta-Color": "blue",
                "X-Object-Sysmeta-Ec-Segment-Size": str(SEGMENT),
            }
            resp = node.call("PUT", self.path(node, name), headers, archives[index])
            assert resp.status_int == 201, resp.body
            if not commit:
                continue
            footer = {
                "X-Timestamp": timestamp,
                "X-Backend-Ec-Frag-Index": str(index),
                "X-Backend-Ec-Commit": "true",
                "X-Object-Sysmeta-Ec-Etag": md5(body),
                "X-Object-Sysmeta-Ec-Content-Length": str(len(body)),
                "X-Object-Sysmeta-Ec-Frag-Archive-Etag": CRC32(archives[index]).hexdigest(),
            }
            resp = node.call("POST", self.path(node, name), footer)
            assert resp.status_int == 201, resp.body
        return archives

    def get(self, node, name):
        return node.call("GET", self.path(node, name))


@pytest.fixture
def cluster(tmp_path):
    cluster = ECCluster(tmp_path)
    yield cluster
    cluster.stop()


SIZES = [0, 1, 100, 4095, 4096, 4097, 10000, 3 * SEGMENT, 20000, 777, 5000, 9000]


def test_rebuilds_a_wiped_device_fragment_for_fragment(cluster):
    bodies = {f"o{i}": os.urandom(size) for i, size in enumerate(SIZES)}
    for name, body in bodies.items():
        cluster.put(name, body, 100)
    wiped = cluster.nodes[3]
    lost = {
        name: cluster.placement(name)[1].index(wiped)
        for name in bodies
        if wiped in cluster.placement(name)[1]
    }
    assert lost
    shutil.rmtree(os.path.join(wiped.dev_path, "objects-1"))

    totals = {}
    for node in cluster.nodes:
        if node is not wiped:
            stats = cluster.reconstruct(node)
            assert stats["errors"] == 0
            for key in ("fragments_rebuilt", "primary_partitions"):
                totals[key] = totals.get(key, 0) + stats[key]
    assert totals["fragments_rebuilt"] == len(lost)

    for name, index in lost.items():
        resp = cluster.get(wiped, name)
        assert resp.status_int == 200
        assert resp.headers["X-Backend-Ec-Frag-Index"] == str(index)
        assert resp.headers["X-Timestamp"] == Timestamp(T0 + 100).internal
        assert resp.headers["X-Object-Meta-Color"] == "blue"
        assert resp.headers["X-Object-Sysmeta-Ec-Etag"] == md5(bodies[name])
        assert resp.body == cluster.archives[name][index]  # byte for byte
        # ... and it decodes, with k - 1 others, to the original object.
        others = [i for i in range(K + M) if i != index][: K - 1]
        archives = {index: resp.body, **{i: cluster.archives[name][i] for i in others}}
        assert decode(cluster.driver, archives) == bodies[name]

    # Everything agrees now: another pass moves nothing.
    stats = cluster.reconstruct_all()
    assert stats["fragments_rebuilt"] == 0 and stats["errors"] == 0
    assert stats["suffixes_checked"] == 0


def test_handoff_fragments_revert_to_their_primaries_and_are_deleted(cluster):
    body = os.urandom(9000)
    part, primaries, handoffs = cluster.placement("stray")
    handoff = handoffs[0]
    where = dict(enumerate(primaries))
    where[1] = where[4] = handoff  # primaries 1 and 4 were down during the write
    archives = cluster.put("stray", body, 200, where)
    post = {"X-Timestamp": Timestamp(T0 + 210).internal, "X-Object-Meta-Color": "red"}
    assert handoff.call("POST", cluster.path(handoff, "stray"), post).status_int == 202
    assert len(handoff.ec_files()) == 3  # two fragments and a .meta

    stats = cluster.reconstruct(handoff)
    assert stats["handoff_partitions"] == 1
    assert stats["fragments_reverted"] == 2
    assert stats["handoffs_removed"] == 1 and stats["errors"] == 0
    assert not os.path.exists(layout.partition_dir(handoff.dev_path, part, 1))
    for index in (1, 4):
        resp = cluster.get(primaries[index], "stray")
        assert resp.status_int == 200 and resp.body == archives[index]
        assert resp.headers["X-Backend-Ec-Frag-Index"] == str(index)
        assert resp.headers["X-Object-Meta-Color"] == "red"
        assert resp.headers["X-Backend-Data-Timestamp"] == Timestamp(T0 + 200).internal


def test_handoff_keeps_what_a_down_primary_has_not_taken(cluster):
    body = os.urandom(5000)
    part, primaries, handoffs = cluster.placement("patient")
    handoff = handoffs[0]
    cluster.put("patient", body, 250, {**dict(enumerate(primaries)), 2: handoff})
    primaries[2].stop()
    stats = cluster.reconstruct(handoff)
    assert stats["errors"] >= 1 and stats["handoffs_removed"] == 0
    assert handoff.ec_files()

    primaries[2].start()
    stats = cluster.reconstruct(handoff)
    assert stats["errors"] == 0 and stats["fragments_reverted"] == 1
    assert not handoff.ec_files()
    assert cluster.get(primaries[2], "patient").body == cluster.archives["patient"][2]


def test_tombstones_propagate_to_every_primary(cluster):
    body = os.urandom(6000)
    _, primaries, _ = cluster.placement("doomed")
    cluster.put("doomed", body, 300)
    delete_ts = Timestamp(T0 + 350).internal
    first = primaries[0]
    resp = first.call("DELETE", cluster.path(first, "doomed"), {"X-Timestamp": delete_ts})
    assert resp.status_int == 204

    for _ in range(K + M):  # each pass moves it at least one partner further
        cluster.reconstruct_all()
        if all(cluster.get(n, "doomed").status_int == 404 for n in primaries):
            break
    for node in primaries:
        resp = cluster.get(node, "doomed")
        assert resp.status_int == 404
        assert resp.headers["X-Backend-Timestamp"] == delete_ts
        assert [os.path.basename(f) for f in node.ec_files()] == [f"{delete_ts}.ts"]


def test_handoff_tombstone_reaches_every_primary_then_goes(cluster):
    _, primaries, handoffs = cluster.placement("gone")
    cluster.put("gone", b"x" * 100, 400)
    handoff = handoffs[0]
    delete_ts = Timestamp(T0 + 450).internal
    handoff.call("DELETE", cluster.path(handoff, "gone"), {"X-Timestamp": delete_ts})
    stats = cluster.reconstruct(handoff)
    assert stats["files_synced"] == K + M and stats["errors"] == 0
    assert stats["handoffs_removed"] == 1
    assert all(cluster.get(n, "gone").status_int == 404 for n in primaries)


def test_too_few_fragments_to_rebuild_is_an_error_not_a_crash(cluster):
    _, primaries, _ = cluster.placement("sparse")
    cluster.put("sparse", os.urandom(5000), 500, {i: primaries[i] for i in range(K - 1)})
    stats = cluster.reconstruct(primaries[0])
    assert stats["errors"] >= 1 and stats["fragments_rebuilt"] == 0
    assert cluster.get(primaries[1], "sparse").status_int == 200  # nothing was harmed
    assert cluster.get(primaries[K], "sparse").status_int == 404


def test_uncommitted_fragments_are_neither_rebuilt_nor_moved(cluster):
    _, primaries, handoffs = cluster.placement("inflight")
    where = {**dict(enumerate(primaries)), 0: handoffs[0]}
    cluster.put("inflight", os.urandom(3000), 600, where, commit=False)
    stats = cluster.reconstruct_all()
    assert stats["fragments_rebuilt"] == 0 and stats["fragments_reverted"] == 0
    assert stats["errors"] == 0
    assert len(handoffs[0].ec_files()) == 1


def test_unmounted_partner_gets_its_fragment_on_a_handoff_until_it_returns(cluster):
    body = os.urandom(7000)
    part, primaries, _ = cluster.placement("detour")
    cluster.put("detour", body, 700, {i: n for i, n in enumerate(primaries) if i != 1})
    away = primaries[1].dev_path + ".away"
    os.rename(primaries[1].dev_path, away)  # its disk is gone: 507
    stats = cluster.reconstruct(primaries[0], sync_partners="1")
    assert stats["fragments_rebuilt"] == 1 and stats["errors"] == 0
    handoff = next(cluster.by_port[n["port"]] for n in cluster.ring.get_more_nodes(part))
    assert len(handoff.ec_files()) == 1

    os.rename(away, primaries[1].dev_path)
    stats = cluster.reconstruct(handoff)
    assert stats["fragments_reverted"] == 1 and stats["handoffs_removed"] == 1
    assert cluster.get(primaries[1], "detour").body == cluster.archives["detour"][1]


def test_agent_builds_the_reconstructor_from_storage_conf(cluster):
    node = cluster.nodes[0]
    reconstructor = daemon.build_daemon("object-reconstructor", cluster.conf(node))
    assert isinstance(reconstructor, ObjectReconstructor)
    stats = reconstructor.run_once()
    assert {"partitions", "fragments_rebuilt", "fragments_reverted", "errors", "duration"} <= set(
        stats
    )
    assert "object-reconstructor" in daemon.DAEMON_NAMES


def archive_path(node, name):
    """The durable archive file of ``name`` on a node."""
    (path,) = [f for f in node.ec_files() if f.endswith("#d.data")]
    return os.path.join(node.dev_path, path)


def dent(path, offset=200):
    """Flip one byte of an archive's payload (past the first fragment's header)."""
    flip_byte(path, offset)


def test_a_damaged_archive_is_not_rebuilt_from_until_the_auditor_takes_it(cluster):
    """A rebuild reads a source's bytes against its CRC32: a dented archive, local or
    remote, fails the rebuild before anything is committed. Once the auditor has
    quarantined it, both fragments come back byte for byte."""
    body = os.urandom(3 * SEGMENT + 100)
    _, primaries, _ = cluster.placement("dented")
    archives = cluster.put("dented", body, 900)
    shutil.rmtree(os.path.join(primaries[1].dev_path, "objects-1"))  # fragment 1 lost
    dent(archive_path(primaries[0], "dented"))

    # Primary 0 rebuilds for its right partner from its own (dented) archive...
    stats = cluster.reconstruct(primaries[0])
    assert stats["fragments_rebuilt"] == 0 and stats["errors"] >= 1
    # ...and primary 2 for its left one with primary 0's as the first remote source.
    stats = cluster.reconstruct(primaries[2])
    assert stats["fragments_rebuilt"] == 0 and stats["errors"] >= 1
    assert cluster.get(primaries[1], "dented").status_int == 404  # nothing committed

    stats = ObjectAuditor(cluster.conf(primaries[0])).run_once()
    assert stats["quarantined"] == 1
    assert cluster.get(primaries[0], "dented").status_int == 404
    cluster.reconstruct_all(passes=2)
    for index in (0, 1):
        resp = cluster.get(primaries[index], "dented")
        assert resp.status_int == 200 and resp.body == archives[index]


def test_a_damaged_handoff_archive_is_kept_not_reverted(cluster):
    body = os.urandom(2 * SEGMENT)
    _, primaries, handoffs = cluster.placement("bruised")
    handoff = handoffs[0]
    cluster.put("bruised", body, 950, {**dict(enumerate(primaries)), 3: handoff})
    dent(archive_path(handoff, "bruised"))

    stats = cluster.reconstruct(handoff)
    assert stats["fragments_reverted"] == 0 and stats["errors"] == 1
    assert stats["handoffs_removed"] == 0 and handoff.ec_files()
    assert cluster.get(primaries[3], "bruised").status_int == 404
