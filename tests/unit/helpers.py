"""What several unit-test modules share: object servers on loopback with a ring over
them (the replicator's and the reconstructor's tests), and a clock of timestamps."""

import glob
import os
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from webob import Request

from common.hashing import HashSecrets
from common.timestamp import Timestamp
from object_server.server import ObjectApp
from ring.builder import RingBuilder
from ring.ring import Ring

# The secrets of the loopback clusters' haneul.conf (HASH_CONF).
CLUSTER_SECRETS = HashSecrets("pre", "suf")
HASH_CONF = "[hash]\nprefix = pre\nsuffix = suf\n"
# A haneul.conf with the replicated policy 0 and an EC 4+2 policy 1 of 4 KiB segments.
EC_SEGMENT = 4096
EC_CONF = f"""{HASH_CONF}
[policy:0]
name = gold
default = yes

[policy:1]
name = ec42
type = erasure_coding
ec_type = isa_l_rs_vand
ec_num_data_fragments = 4
ec_num_parity_fragments = 2
ec_object_segment_size = {EC_SEGMENT}
"""


def flip_byte(path, offset=0):
    """Corrupt a file on disk in place: flip the low bit of the byte at ``offset``."""
    with open(path, "r+b") as fp:
        fp.seek(offset)
        byte = fp.read(1)
        fp.seek(offset)
        fp.write(bytes([byte[0] ^ 0x01]))


class Clock:
    """Increasing timestamps near now, so X-Delete-At and reclaim rules behave."""

    def __init__(self):
        self.base = time.time()
        self.count = 0

    def __call__(self):
        self.count += 1
        return Timestamp(self.base + self.count).internal


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args):
        pass


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Node:
    """One object server with one device, served on a loopback port in a thread.

    ``policies`` as for ObjectApp: None accepts any policy index."""

    def __init__(self, root, device, policies=None):
        self.root = str(root)
        self.device = device
        self.devices = os.path.join(self.root, "srv")
        self.dev_path = os.path.join(self.devices, device)
        os.makedirs(self.dev_path)
        self.app = ObjectApp(
            {"devices": self.devices}, hash_secrets=CLUSTER_SECRETS, policies=policies
        )
        self.port = 0
        self.server = None
        self.start()

    def start(self):
        self.server = make_server(
            "127.0.0.1",
            self.port,
            self.app,
            server_class=ThreadingServer,
            handler_class=QuietHandler,
        )
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def call(self, method, path, headers=None, body=None):
        req = Request.blank(path, method=method, headers=headers or {})
        if body is not None:
            req.body = body
        return req.get_response(self.app)

    def files(self, ext=""):
        pattern = os.path.join(self.dev_path, "objects", "*", "*", "*", "*" + ext)
        return sorted(glob.glob(pattern))


class LoopbackCluster:
    """Nodes on loopback under one object ring, with the ``ring_dir`` and haneul.conf
    that a daemon of any of them is given (``conf``).

    A test's cluster writes the conf (``__init__``), then starts its nodes
    (``start_nodes``) and builds the ring over them (``build_ring``)."""

    node_class = Node

    def __init__(self, root, haneul_conf=HASH_CONF):
        self.root = root
        self.ring_dir = str(root / "etc")
        os.makedirs(self.ring_dir)
        self.haneul_conf = os.path.join(self.ring_dir, "haneul.conf")
        with open(self.haneul_conf, "w") as fp:
            fp.write(haneul_conf)
        self.nodes = []
        self.ring = None
        self.by_port = {}

    def start_nodes(self, count, policies=None):
        """``count`` nodes, ``node<i>`` with device ``d<i>``."""
        self.nodes = [
            self.node_class(self.root / f"node{i}", f"d{i}", policies) for i in range(count)
        ]
        self.by_port = {node.port: node for node in self.nodes}

    def build_ring(self, ring_name, part_power, replicas, seed):
        """The ring ``<ring_name>.ring.gz``: every node's device, each in its own zone."""
        builder = RingBuilder(part_power, replicas, 0)
        for i, node in enumerate(self.nodes):
            builder.add_dev(
                {
                    "region": 1,
                    "zone": i,
                    "ip": "127.0.0.1",
                    "port": node.port,
                    "device": node.device,
                    "weight": 1,
                }
            )
        builder.rebalance(seed=seed)
        path = os.path.join(self.ring_dir, f"{ring_name}.ring.gz")
        builder.get_ring().save(path)
        self.ring = Ring(path, hash_secrets=CLUSTER_SECRETS)

    def conf(self, node, **extra):
        """The conf the agent would give a daemon of ``node``."""
        return {
            "devices": node.devices,
            "mount_check": "false",
            "ring_dir": self.ring_dir,
            "haneul_conf": self.haneul_conf,
            "bind_ip": "127.0.0.1",
            "port": str(node.port),
            "conn_timeout": "1",
            "node_timeout": "5",
            **extra,
        }

    def placement(self, name):
        """(partition, primary Nodes in ring order, handoff Nodes) of object /a/c/<name>."""
        part, devs = self.ring.get_nodes("a", "c", name)
        primaries = [self.by_port[d["port"]] for d in devs]
        return part, primaries, [n for n in self.nodes if n not in primaries]

    def stop(self):
        for node in self.nodes:
            node.stop()
