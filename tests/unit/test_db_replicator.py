"""Container and account database replication between real servers on loopback.

``Cluster`` (also used by the reaper and expirer tests) runs N storage nodes in this
process: each node's object, container and account apps on their own wsgiref servers,
and one-partition rings whose first ``replicas`` devices are the primaries, so every
name lives on node0..node{replicas-1} and the other nodes are handoffs.
"""

import json
import os
import sqlite3
import threading
import time
from array import array
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from webob import Request

from account_server.replicator import AccountReplicator
from account_server.server import AccountApp
from common.db import POOL, db_file_path
from common.hashing import HashSecrets, hash_path
from common.timestamp import Timestamp
from container_server.broker import ContainerBroker
from container_server.replicator import ContainerReplicator
from container_server.server import ContainerApp
from object_server.server import ObjectApp
from ring.ring import Ring
from ring.ringfile import RingData

SECRETS = HashSecrets("replication-prefix", "replication-suffix")
KINDS = ("object", "container", "account")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args):
        pass


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Node:
    """One storage node: object, container and account apps, each on its own port."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.name = f"node{index}"
        self.device = f"sd{index}"
        self.devices_root = os.path.join(cluster.root, self.name)
        os.makedirs(os.path.join(self.devices_root, self.device))
        conf = {"devices": self.devices_root}
        self.apps = {
            "object": ObjectApp(conf, hash_secrets=SECRETS),
            "container": ContainerApp(conf, hash_secrets=SECRETS),
            "account": AccountApp(conf, hash_secrets=SECRETS),
        }
        self.servers = {}
        self.ports = {}
        for kind, app in self.apps.items():
            server = make_server(
                "127.0.0.1", 0, app, server_class=ThreadingServer, handler_class=QuietHandler
            )
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            ).start()
            self.servers[kind] = server
            self.ports[kind] = server.server_address[1]

    def conf(self, kind, **extra):
        """A daemon conf as the agent builds it for this node's ``kind`` server."""
        conf = {
            "devices": self.devices_root,
            "mount_check": "false",
            "bind_ip": "127.0.0.1",
            "ring_dir": self.cluster.ring_dir,
            "haneul_conf": self.cluster.haneul_conf,
            "port": str(self.ports[kind]),
        }
        conf.update({f"{k}_port": str(p) for k, p in self.ports.items()})
        conf.update({k: str(v) for k, v in extra.items()})
        return conf

    def call(self, kind, method, path, headers=None, body=b""):
        """A request straight to one of this node's apps (no network)."""
        req = Request.blank(path, method=method, headers=headers or {})
        if body:
            req.body = body
        return req.get_response(self.apps[kind])

    def path(self, *names):
        return f"/{self.device}/0/" + "/".join(names)

    def db_file(self, account, container=None):
        datadir = "containers" if container is not None else "accounts"
        names = (account,) if container is None else (account, container)
        name_hash = hash_path(*names, secrets=SECRETS)
        return db_file_path(os.path.join(self.devices_root, self.device), datadir, 0, name_hash)

    def node(self, kind):
        return {"ip": "127.0.0.1", "port": self.ports[kind], "device": self.device}

    def stop(self):
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


class Cluster:
    """``count`` nodes, one-partition rings with ``replicas`` primaries, a haneul.conf."""

    def __init__(self, root, count=3, replicas=2):
        self.root = os.fspath(root)
        self.ring_dir = os.path.join(self.root, "etc")
        os.makedirs(self.ring_dir)
        self.haneul_conf = os.path.join(self.ring_dir, "haneul.conf")
        with open(self.haneul_conf, "w") as fp:
            fp.write(
                f"[hash]\nprefix = {SECRETS.prefix.decode()}\nsuffix = {SECRETS.suffix.decode()}\n"
                "\n[policy:0]\nname = gold\ntype = replication\ndefault = yes\n"
            )
        self.nodes = [Node(self, i) for i in range(count)]
        self.rings = {}
        for kind in KINDS:
            devs = [
                {
                    "id": i,
                    "region": 1,
                    "zone": i + 1,
                    "ip": "127.0.0.1",
                    "port": node.ports[kind],
                    "device": node.device,
                    "weight": 100,
                    "meta": "",
                }
                for i, node in enumerate(self.nodes)
            ]
            path = os.path.join(self.ring_dir, f"{kind}.ring.gz")
            RingData(0, devs, [array("H", [i]) for i in range(replicas)]).save(path)
            self.rings[kind] = Ring(path, hash_secrets=SECRETS)

    def stop(self):
        for node in self.nodes:
            node.stop()
        POOL.clear()


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path)
    yield made
    made.stop()


# -- helpers ------------------------------------------------------------------------------

_clock = [time.time()]


def ts():
    """A fresh, strictly increasing timestamp."""
    _clock[0] += 0.01
    return Timestamp(_clock[0]).internal


def make_container(node, account="a", container="c", timestamp=None):
    resp = node.call(
        "container", "PUT", node.path(account, container), {"X-Timestamp": timestamp or ts()}
    )
    assert resp.status_int in (201, 202), resp.text


def put_row(node, name, account="a", container="c", size=1, timestamp=None):
    headers = {
        "X-Timestamp": timestamp or ts(),
        "X-Size": str(size),
        "X-Content-Type": "text/plain",
        "X-Etag": "0" * 32,
    }
    resp = node.call("container", "PUT", node.path(account, container, name), headers)
    assert resp.status_int == 201, resp.text


def delete_row(node, name, account="a", container="c"):
    resp = node.call(
        "container", "DELETE", node.path(account, container, name), {"X-Timestamp": ts()}
    )
    assert resp.status_int == 204, resp.text


def listing(node, account="a", container="c"):
    resp = node.call("container", "GET", node.path(account, container) + "?format=json")
    if resp.status_int == 404:
        return None
    return sorted((e["name"], e["bytes"]) for e in json.loads(resp.body))


def container_info(node, account="a", container="c"):
    with ContainerBroker(node.db_file(account, container)) as broker:
        return broker.get_info(), broker.get_max_row()


def replicator(node, cls=ContainerReplicator, **extra):
    kind = "container" if cls is ContainerReplicator else "account"
    return cls(node.conf(kind, **extra))


# -- container replication ----------------------------------------------------------------


def test_missing_replica_gets_the_whole_database(cluster):
    node0, node1, _ = cluster.nodes
    make_container(node0)
    for name in ("x", "y", "z"):
        put_row(node0, name)

    stats = replicator(node0).run_once()

    assert stats["whole_copies"] == 1 and stats["errors"] == 0
    assert listing(node1) == [("x", 1), ("y", 1), ("z", 1)]
    info0, max0 = container_info(node0)
    info1, _ = container_info(node1)
    assert info1["id"] != info0["id"]  # a replica of its own
    assert info1["hash"] == info0["hash"]
    with ContainerBroker(node1.db_file("a", "c")) as broker:
        assert broker.get_sync(info0["id"]) == max0
    assert not os.listdir(os.path.join(node0.devices_root, node0.device, "tmp"))
    # The next pass finds nothing to do.
    again = replicator(node0).run_once()
    assert again["no_change"] == 1 and again["whole_copies"] == 0 and again["rows_pushed"] == 0


def test_divergent_replicas_merge_rows_both_ways(cluster):
    node0, node1, _ = cluster.nodes
    created = ts()
    make_container(node0, timestamp=created)
    make_container(node1, timestamp=created)
    put_row(node0, "only-on-0")
    put_row(node0, "changed", size=1)
    put_row(node1, "only-on-1")
    put_row(node1, "changed", size=2)  # newer: wins everywhere
    put_row(node0, "deleted")
    delete_row(node1, "deleted")
    node0.call(
        "container",
        "POST",
        node0.path("a", "c"),
        {"X-Timestamp": ts(), "X-Container-Meta-Color": "blue"},
    )
    node1.call(
        "container",
        "POST",
        node1.path("a", "c"),
        {"X-Timestamp": ts(), "X-Container-Meta-Shape": "round"},
    )

    first = replicator(node0).run_once()
    second = replicator(node1).run_once()

    assert first["diff_syncs"] == 1 and first["rows_pushed"] == 3
    assert second["diff_syncs"] == 1 and second["whole_copies"] == 0
    expected = [("changed", 2), ("only-on-0", 1), ("only-on-1", 1)]
    assert listing(node0) == listing(node1) == expected
    assert container_info(node0)[0]["hash"] == container_info(node1)[0]["hash"]
    for node in (node0, node1):
        resp = node.call("container", "HEAD", node.path("a", "c"))
        assert resp.headers["X-Container-Meta-Color"] == "blue"
        assert resp.headers["X-Container-Meta-Shape"] == "round"
    # In sync now: neither pushes again.
    assert replicator(node0).run_once()["rows_pushed"] == 0
    assert replicator(node1).run_once()["rows_pushed"] == 0


def test_far_behind_replica_gets_the_file_merged_into_its_own(cluster):
    node0, node1, _ = cluster.nodes
    created = ts()
    make_container(node0, timestamp=created)
    make_container(node1, timestamp=created)
    for i in range(12):
        put_row(node0, f"obj{i:02d}")
    put_row(node1, "mine")
    id1 = container_info(node1)[0]["id"]

    stats = replicator(node0, per_diff=2, max_diffs=3).run_once()

    assert stats["whole_copies"] == 1 and stats["rows_pushed"] == 0
    names = [name for name, _size in listing(node1)]
    assert names == ["mine"] + [f"obj{i:02d}" for i in range(12)]
    assert container_info(node1)[0]["id"] == id1  # merged into, not replaced


def test_rows_go_in_batches_when_the_lag_is_small(cluster):
    node0, node1, _ = cluster.nodes
    make_container(node0)
    replicator(node0).run_once()
    for i in range(5):
        put_row(node0, f"new{i}")

    stats = replicator(node0, per_diff=2, max_diffs=3).run_once()

    assert stats["rows_pushed"] == 5 and stats["whole_copies"] == 0
    assert len(listing(node1)) == 5


def test_handoff_database_moves_to_the_primaries_and_goes(cluster):
    node0, node1, node2 = cluster.nodes
    make_container(node2)  # node2 is not a primary of the only partition
    put_row(node2, "o1")
    db_file = node2.db_file("a", "c")

    stats = replicator(node2).run_once()

    assert stats["whole_copies"] == 2 and stats["handoffs_removed"] == 1
    assert listing(node0) == listing(node1) == [("o1", 1)]
    assert not os.path.exists(db_file)
    assert not os.path.exists(os.path.dirname(db_file))
    assert not os.listdir(os.path.join(node2.devices_root, node2.device, "containers"))


def test_handoff_stays_while_a_primary_is_down(cluster):
    node0, node1, node2 = cluster.nodes
    make_container(node2)
    node1.stop()

    stats = replicator(node2, conn_timeout=0.2, node_timeout=1).run_once()

    assert stats["errors"] == 1 and stats["handoffs_removed"] == 0
    assert os.path.exists(node2.db_file("a", "c"))
    assert listing(node0) == []


def test_primary_gives_a_handoff_a_copy_when_a_primary_is_down(cluster):
    node0, node1, node2 = cluster.nodes
    make_container(node0)
    node1.stop()

    stats = replicator(node0, conn_timeout=0.2, node_timeout=1).run_once()

    assert stats["handoff_pushes"] == 1
    assert listing(node2) == []  # it exists there now


def test_deleted_database_is_reclaimed_after_reclaim_age(cluster):
    node0, node1, _ = cluster.nodes
    old = Timestamp(time.time() - 3 * 86400)
    make_container(node0, "a", "old", timestamp=old.internal)
    node0.call(
        "container",
        "DELETE",
        node0.path("a", "old"),
        {"X-Timestamp": Timestamp(old.timestamp + 1).internal},
    )
    make_container(node0, "a", "recent")
    node0.call("container", "DELETE", node0.path("a", "recent"), {"X-Timestamp": ts()})

    stats = replicator(node0, reclaim_age=86400).run_once()

    assert stats["reclaimed"] == 1
    assert not os.path.exists(node0.db_file("a", "old"))
    assert os.path.exists(node0.db_file("a", "recent"))  # too young: replicated instead
    assert os.path.exists(node1.db_file("a", "recent"))
    assert not os.path.exists(node1.db_file("a", "old"))


def test_corrupt_database_is_quarantined(cluster):
    node0 = cluster.nodes[0]
    make_container(node0)
    db_file = node0.db_file("a", "c")
    POOL.clear()
    with open(db_file, "wb") as fp:
        fp.write(b"this is not sqlite" * 100)

    stats = replicator(node0).run_once()

    assert stats["quarantined"] == 1
    assert not os.path.exists(db_file)
    quarantined = os.path.join(node0.devices_root, node0.device, "quarantined", "containers")
    assert os.listdir(quarantined) == [os.path.basename(os.path.dirname(db_file))]


# -- the REPLICATE verb -------------------------------------------------------------------


def test_replicate_refuses_a_file_of_another_database(cluster, tmp_path):
    node0, node1, _ = cluster.nodes
    make_container(node0, "a", "other")
    copy = tmp_path / "copy.db"
    with ContainerBroker(node0.db_file("a", "other")) as broker:
        broker.snapshot(str(copy))
    wanted = hash_path("a", "c", secrets=SECRETS)
    resp = node1.call(
        "container",
        "REPLICATE",
        f"/{node1.device}/0/{wanted}",
        {"X-Replicate-Op": "file", "X-Replicate-Id": "x", "X-Replicate-Max-Row": "1"},
        copy.read_bytes(),
    )
    assert resp.status_int == 400
    assert not os.path.exists(node1.db_file("a", "c"))
    assert os.listdir(os.path.join(node1.devices_root, node1.device, "tmp")) == []


def test_replicate_answers_sync_and_rejects_nonsense(cluster):
    node0 = cluster.nodes[0]
    make_container(node0)
    name_hash = hash_path("a", "c", secrets=SECRETS)
    path = f"/{node0.device}/0/{name_hash}"
    with ContainerBroker(node0.db_file("a", "c")) as broker:
        info = broker.get_info()
    sync = {
        "op": "sync",
        "id": "someone",
        "max_row": 5,
        "hash": "0" * 32,
        "put_timestamp": info["put_timestamp"],
        "delete_timestamp": "0",
        "metadata": {},
    }
    resp = node0.call("container", "REPLICATE", path, {}, json.dumps(sync).encode())
    assert resp.status_int == 200
    assert json.loads(resp.body)["point"] == -1
    assert node0.call("container", "REPLICATE", path, {}, b"not json").status_int == 400
    bad_op = json.dumps({"op": "explode"}).encode()
    assert node0.call("container", "REPLICATE", path, {}, bad_op).status_int == 400
    missing = f"/{node0.device}/0/{'f' * 32}"
    assert node0.call("container", "REPLICATE", missing, {}, bad_op).status_int == 404
    assert (
        node0.call("container", "REPLICATE", f"/{node0.device}/0/nothex", {}, bad_op).status_int
        == 400
    )


def test_snapshot_is_one_consistent_file(tmp_path):
    db = tmp_path / "sd" / "containers" / "0" / "abc" / ("f" * 29 + "abc")
    db_file = str(db / ("f" * 29 + "abc.db"))
    broker = ContainerBroker(db_file)
    broker.initialize(ts(), account="a", container="c")
    broker.put_object("o", ts(), 1, "t", "e")
    copy = str(tmp_path / "copy.db")
    broker.snapshot(copy)
    broker.close()
    assert not os.path.exists(copy + "-wal")
    conn = sqlite3.connect(copy)
    assert conn.execute("SELECT name FROM object").fetchall() == [("o",)]
    conn.close()


# -- account replication --------------------------------------------------------------


def test_account_deletion_spreads_and_the_account_stays_until_reaped(cluster):
    node0, node1, _ = cluster.nodes
    created = ts()
    for node in (node0, node1):
        assert (
            node.call("account", "PUT", node.path("acct"), {"X-Timestamp": created}).status_int
            == 201
        )
    report = {
        "X-Put-Timestamp": ts(),
        "X-Delete-Timestamp": "0",
        "X-Object-Count": "0",
        "X-Bytes-Used": "0",
    }
    assert node0.call("account", "PUT", node0.path("acct", "cont"), report).status_int == 201
    deleted = Timestamp(time.time() - 10 * 86400).internal
    # An old DELETE (its timestamp says so) that only node0 saw.
    node0.call("account", "DELETE", node0.path("acct"), {"X-Timestamp": deleted})
    resp = node1.call("account", "HEAD", node1.path("acct"))
    assert resp.status_int == 204

    stats = replicator(node0, AccountReplicator, reclaim_age=86400).run_once()

    assert stats["reclaimed"] == 0  # a container is left: the reaper has work to do
    resp = node1.call("account", "HEAD", node1.path("acct"))
    assert resp.status_int == 404 and resp.headers["X-Account-Status"] == "Deleted"
    listing1 = node1.call("account", "GET", node1.path("acct") + "?format=json")
    assert listing1.status_int == 404
