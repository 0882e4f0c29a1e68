"""The object updater: async pendings left by a real object server are delivered to real
container servers on loopback, kept while they fail, and deleted once acknowledged."""

import glob
import json
import os
import socket
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from webob import Request

from common.hashing import HashSecrets
from common.timestamp import Timestamp
from container_server.server import ContainerApp
from object_server.async_pending import read_async_pending
from object_server.server import ObjectApp
from object_server.updater import ObjectUpdater
from ring.builder import RingBuilder

SECRETS = HashSecrets("pre", "suf")
T0 = time.time()


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args):
        pass


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class ContainerNode:
    """A real container server on loopback behind a gate that can make it answer 503."""

    def __init__(self, root):
        os.makedirs(os.path.join(root, "sda"))
        self.app = ContainerApp({"devices": str(root)}, hash_secrets=SECRETS)
        self.fail = False
        self.requests = []
        self.server = make_server(
            "127.0.0.1", 0, self.gate, server_class=ThreadingServer, handler_class=QuietHandler
        )
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def gate(self, environ, start_response):
        self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        if self.fail:
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        return self.app(environ, start_response)

    def call(self, method, path, headers=None):
        return Request.blank(path, method=method, headers=headers or {}).get_response(self.app)

    def create(self, part="1", container="c"):
        resp = self.call("PUT", f"/sda/{part}/a/{container}", {"X-Timestamp": "1"})
        assert resp.status_int == 201

    def listing(self, part="1"):
        resp = self.call("GET", f"/sda/{part}/a/c?format=json")
        return {row["name"]: row["bytes"] for row in json.loads(resp.body)}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def containers(tmp_path):
    nodes = [ContainerNode(tmp_path / f"container{i}") for i in range(2)]
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture
def objects(tmp_path):
    root = tmp_path / "objects"
    (root / "sda").mkdir(parents=True)
    return ObjectApp({"devices": str(root), "conn_timeout": "1"}, hash_secrets=SECRETS)


@pytest.fixture
def conf(tmp_path, objects):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "haneul.conf").write_text("[hash]\nprefix = pre\nsuffix = suf\n")
    return {
        "devices": objects.devices,
        "ring_dir": str(etc),
        "haneul_conf": str(etc / "haneul.conf"),
        "conn_timeout": "1",
        "node_timeout": "5",
    }


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write(objects, method, name, offset, hosts, container="c", part="1"):
    headers = {
        "X-Timestamp": Timestamp(T0 + offset).internal,
        "X-Container-Host": ",".join(hosts),
        "X-Container-Device": ",".join("sda" for _ in hosts),
        "X-Container-Partition": part,
    }
    req = Request.blank(f"/sda/7/a/{container}/{name}", method=method, headers=headers)
    if method == "PUT":
        req.body = b"twelve bytes"
    assert req.get_response(objects).status_int in (201, 204)


def pendings(objects):
    return sorted(glob.glob(os.path.join(objects.devices, "sda", "async_pending*", "*", "*")))


def test_pending_is_delivered_and_deleted(containers, objects, conf):
    node = containers[0]
    node.create()
    node.fail = True
    write(objects, "PUT", "o", 1, [node.host])
    assert len(pendings(objects)) == 1 and node.listing() == {}

    node.fail = False
    stats = ObjectUpdater(conf).run_once()
    assert stats["successes"] == 1 and stats["unlinks"] == 1 and stats["failures"] == 0
    assert pendings(objects) == []
    assert node.listing() == {"o": 12}


def test_pending_is_kept_while_the_container_server_fails(containers, objects, conf):
    node = containers[0]
    node.create()
    node.fail = True
    write(objects, "PUT", "o", 1, [node.host])
    updater = ObjectUpdater(conf)
    for _ in range(2):
        stats = updater.run_once()
        assert stats["failures"] == 1 and stats["unlinks"] == 0
        assert len(pendings(objects)) == 1


def test_a_missing_container_keeps_the_pending(containers, objects, conf):
    node = containers[0]
    write(objects, "PUT", "o", 1, [f"127.0.0.1:{closed_port()}"])
    (path,) = pendings(objects)
    # The ring sends it to a server that has no such container yet: 404, kept.
    builder = RingBuilder(2, 1, 0)
    builder.add_dev(
        {"region": 1, "zone": 1, "ip": "127.0.0.1", "port": node.port, "device": "sda", "weight": 1}
    )
    builder.rebalance(seed=1)
    builder.get_ring().save(os.path.join(conf["ring_dir"], "container.ring.gz"))
    stats = ObjectUpdater(conf).run_once()
    assert stats["failures"] == 1
    assert pendings(objects) == [path]


def test_the_container_ring_wins_over_the_recorded_host(containers, objects, conf):
    node = containers[0]
    builder = RingBuilder(2, 1, 0)
    builder.add_dev(
        {"region": 1, "zone": 1, "ip": "127.0.0.1", "port": node.port, "device": "sda", "weight": 1}
    )
    builder.rebalance(seed=1)
    builder.get_ring().save(os.path.join(conf["ring_dir"], "container.ring.gz"))
    updater = ObjectUpdater(conf)
    part = str(updater.container_ring.get_part("a", "c"))
    node.create(part)
    write(objects, "PUT", "o", 1, [f"127.0.0.1:{closed_port()}"], part="1")

    stats = updater.run_once()
    assert stats["successes"] == 1
    assert node.listing(part) == {"o": 12}
    assert pendings(objects) == []


def test_partial_success_is_remembered(containers, objects, conf):
    first, second = containers
    for node in containers:
        node.create()
        node.fail = True
    write(objects, "PUT", "o", 1, [first.host, second.host])
    first.fail = False

    stats = ObjectUpdater(conf).run_once()
    assert stats["failures"] == 1
    (path,) = pendings(objects)
    assert read_async_pending(path)["successes"] == [f"{first.host}/sda"]
    assert first.listing() == {"o": 12}

    second.fail = False
    before = len(first.requests)
    stats = ObjectUpdater(conf).run_once()
    assert stats["successes"] == 1 and pendings(objects) == []
    assert len(first.requests) == before  # not sent again where it was taken
    assert second.listing() == {"o": 12}


def test_only_the_newest_pending_of_an_object_is_sent(containers, objects, conf):
    node = containers[0]
    node.create()
    node.fail = True
    write(objects, "PUT", "o", 1, [node.host])
    write(objects, "DELETE", "o", 2, [node.host])
    assert len(pendings(objects)) == 2

    node.fail = False
    node.requests.clear()
    stats = ObjectUpdater(conf).run_once()
    assert stats["superseded"] == 1 and stats["successes"] == 1 and stats["unlinks"] == 2
    assert [method for method, _ in node.requests] == ["DELETE"]
    assert node.listing() == {}
    assert pendings(objects) == []


def test_a_damaged_pending_is_quarantined(objects, conf):
    suffix_dir = os.path.join(objects.devices, "sda", "async_pending", "abc")
    os.makedirs(suffix_dir)
    name = "0" * 29 + "abc-" + Timestamp(T0).internal
    with open(os.path.join(suffix_dir, name), "wb") as fp:
        fp.write(b"\xc1 not msgpack")
    with open(os.path.join(suffix_dir, "stranger.txt"), "wb") as fp:
        fp.write(b"left alone")

    stats = ObjectUpdater(conf).run_once()
    assert stats["quarantined"] == 1
    assert os.listdir(suffix_dir) == ["stranger.txt"]
    assert os.listdir(os.path.join(objects.devices, "sda", "quarantined", "async_pending")) == [
        name
    ]
