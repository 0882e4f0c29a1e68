"""Drive a real all-in-one cluster (``haneul up``) from tests: start, stop, break nodes.

Besides starting and stopping, ``AllInOne`` answers the questions a probe test asks:
where the rings put a name (``object_nodes``, ``container_nodes``, ``account_nodes``,
``handoff_devices``), what a device holds on disk (``object_files``, ``data_file``,
``db_file``, ``partitions``), how to break it (``wipe_device``, ``stop_node``), how to
heal it (``agent_once``: one ``haneul agent --once`` pass of named daemons on every
node) and what one server says when asked directly (``direct``).
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

HANEUL = [sys.executable, "-m", "cli.main"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ports_free(ports):
    """True if nothing listens on any of the loopback ports and they can be bound."""
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def pick_ports(nodes):
    """A proxy port and a base port whose whole block is free."""
    for _ in range(200):
        base = random.randrange(20000, 50000, 100)
        proxy = base + 99
        wanted = [proxy] + [base + 10 * i + j for i in range(nodes) for j in range(3)]
        if ports_free(wanted):
            return proxy, base
    raise RuntimeError("no free block of ports found")


class AllInOne:
    """An all-in-one cluster in ``root``, started with the real ``haneul up``."""

    def __init__(self, root, nodes=4, replicas=3, agents=True):
        self.root = str(root)
        self.nodes = nodes
        self.replicas = replicas
        self.agents = agents  # False: ``haneul up --no-agents``, tests run the daemons
        self.port, self.base_port = pick_ports(nodes)
        self.info = None
        self._rings = {}

    def run(self, *args, check=True, timeout=120):
        """Run ``haneul <args>`` and return the CompletedProcess."""
        proc = subprocess.run(
            [*HANEUL, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"haneul {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def up(self):
        """``haneul up`` (starts what is not running) and reload cluster.json."""
        proc = self.run(
            "up",
            "--dir",
            self.root,
            "--nodes",
            str(self.nodes),
            "--replicas",
            str(self.replicas),
            "--port",
            str(self.port),
            "--base-port",
            str(self.base_port),
            *(() if self.agents else ("--no-agents",)),
        )
        self.reload()
        return proc

    def reload(self):
        with open(os.path.join(self.root, "cluster.json"), encoding="utf-8") as fp:
            self.info = json.load(fp)
        return self.info

    def set_proxy_options(self, section, options):
        """Set ``options`` in ``[section]`` of the proxy.conf, then restart the proxy."""
        path = self.info["proxy"]["conf"]
        with open(path, encoding="utf-8") as fp:
            lines = fp.read().splitlines()
        out = []
        for line in lines:
            if line.split("=")[0].strip() in options:
                continue
            out.append(line)
            if line.strip() == f"[{section}]":
                out.extend(f"{key} = {value}" for key, value in options.items())
        with open(path, "w", encoding="utf-8") as fp:
            fp.write("\n".join(out) + "\n")
        self.restart_proxy()

    def restart_proxy(self, timeout=15):
        """Stop the proxy, wait until it is gone, and start it again (``haneul up``)."""
        pid = self.info["proxy"]["pid"]
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        self.up()

    def down(self):
        return self.run("down", "--dir", self.root, check=False)

    @property
    def auth_url(self):
        return self.info["auth_url"]

    def node(self, name):
        return next(n for n in self.info["nodes"] if n["name"] == name)

    def stop_node(self, name, sig=signal.SIGTERM, timeout=15):
        """Stop one storage node's processes and wait until its ports are closed."""
        node = self.node(name)
        try:
            os.killpg(node["pid"], sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        ports = [node["object_port"], node["container_port"], node["account_port"]]
        while time.monotonic() < deadline:
            if ports_free(ports):
                return
            time.sleep(0.1)
        os.killpg(node["pid"], signal.SIGKILL)

    def start_node(self, name):
        """Start a stopped node again (``haneul up`` restarts only what is down)."""
        self.up()
        return self.node(name)

    # -- rings and placement ---------------------------------------------------------------

    @property
    def etc(self):
        return os.path.join(self.root, "etc")

    @property
    def haneul_conf(self):
        return os.path.join(self.etc, "haneul.conf")

    def ring(self, name):
        """The ring ``etc/<name>.ring.gz`` (``account``, ``container``, ``object[-N]``)."""
        if name not in self._rings:
            from common.hashing import load_hash_secrets
            from ring.ring import Ring

            path = os.path.join(self.etc, f"{name}.ring.gz")
            self._rings[name] = Ring(path, hash_secrets=load_hash_secrets(self.haneul_conf))
        return self._rings[name]

    def policies(self):
        """The cluster's storage policies (``common.policies.StoragePolicies``)."""
        from common.policies import load_policies

        return load_policies(self.haneul_conf)

    def object_ring(self, policy_index=0):
        return self.ring("object" if int(policy_index) == 0 else f"object-{int(policy_index)}")

    def object_nodes(self, account, container, obj, policy_index=0):
        """``(partition, [primary ring nodes])`` of an object."""
        return self.object_ring(policy_index).get_nodes(account, container, obj)

    def container_nodes(self, account, container):
        return self.ring("container").get_nodes(account, container)

    def account_nodes(self, account):
        return self.ring("account").get_nodes(account)

    def devices(self):
        """{device name: (node name, device dir)} of every node."""
        return {
            device: (node["name"], path)
            for node in self.info["nodes"]
            for device, path in node["devices"].items()
        }

    def device_path(self, device):
        return self.devices()[device][1]

    def node_of(self, device):
        """The name of the node that holds ``device``."""
        return self.devices()[device][0]

    def handoff_devices(self, primaries):
        """Every device of the cluster that is not one of ``primaries`` (ring nodes)."""
        used = {node["device"] for node in primaries}
        return sorted(device for device in self.devices() if device not in used)

    # -- what is on disk -------------------------------------------------------------------

    def object_hash_dir(self, device, part, account, container, obj, policy_index=0):
        from common.hashing import hash_path, load_hash_secrets
        from object_server import layout

        name_hash = hash_path(account, container, obj, secrets=load_hash_secrets(self.haneul_conf))
        return layout.hash_dir(self.device_path(device), part, policy_index, name_hash)

    def object_files(self, device, part, account, container, obj, policy_index=0):
        """The sorted file names in an object's hash dir on ``device`` ([] if none)."""
        path = self.object_hash_dir(device, part, account, container, obj, policy_index)
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def data_file(self, device, part, account, container, obj, policy_index=0):
        """The path of an object's ``.data`` file on ``device``, or None."""
        path = self.object_hash_dir(device, part, account, container, obj, policy_index)
        found = [
            name
            for name in self.object_files(device, part, account, container, obj, policy_index)
            if name.endswith(".data")
        ]
        return os.path.join(path, found[-1]) if found else None

    @staticmethod
    def read_object_file(path):
        """``(metadata dict, the object's bytes)`` of a ``.data`` file on disk."""
        from object_server.metadata import read_metadata

        with open(path, "rb") as fp:
            stored = read_metadata(fp.fileno())
            data = fp.read()
        if stored.footer_offset is not None:
            data = data[: stored.footer_offset]
        return stored.metadata, data

    def partitions(self, device, policy_index=0):
        """The object partitions that have a directory on ``device``."""
        from object_server import layout

        try:
            names = os.listdir(layout.objects_dir(self.device_path(device), policy_index))
        except FileNotFoundError:
            return set()
        return {int(name) for name in names if name.isdigit()}

    def db_file(self, device, part, account, container=None):
        """Where the account (or container) database is on ``device`` (it may not exist)."""
        from common.db import db_file_path
        from common.hashing import hash_path, load_hash_secrets

        name_hash = hash_path(account, container, secrets=load_hash_secrets(self.haneul_conf))
        datadir = "accounts" if container is None else "containers"
        return db_file_path(self.device_path(device), datadir, part, name_hash)

    def wipe_device(self, device):
        """Remove everything on a device (a replaced disk), keeping its directory."""
        path = self.device_path(device)
        for name in os.listdir(path):
            full = os.path.join(path, name)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)

    # -- daemons and direct requests -------------------------------------------------------

    def agent_once(self, *daemons, devices=None, timeout=180):
        """One ``haneul agent --once`` pass of ``daemons`` on every node; its stdout.

        Fails the test if the agent exits non-zero (a pass failed or a daemon is missing).
        """
        args = ["agent", "--once", "--dir", self.root, "--only", ",".join(daemons)]
        if devices:
            args += ["--devices", ",".join(devices)]
        return self.run(*args, timeout=timeout).stdout

    def direct(self, node, method, part, account, container=None, obj=None, **kwargs):
        """One request straight to the server of a ring node (``common.backend.request``).

        ``headers``, ``query_string``, ``policy_index`` and ``body`` may be given; the
        answer is a ``BackendResult`` (status, headers, body).
        """
        from common.backend import backend_path, request

        kind = "object" if obj is not None else "container" if container else "account"
        headers = {"X-Backend-Server-Type": kind, **kwargs.pop("headers", {})}
        headers["X-Backend-Storage-Policy-Index"] = str(kwargs.pop("policy_index", 0))
        return request(
            node,
            method,
            backend_path(part, account, container, obj),
            headers,
            conn_timeout=2.0,
            node_timeout=30.0,
            **kwargs,
        )
