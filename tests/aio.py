"""Drive a real all-in-one cluster (``haneul up``) from tests: start, stop, break nodes."""

import json
import os
import random
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

    def __init__(self, root, nodes=4, replicas=3):
        self.root = str(root)
        self.nodes = nodes
        self.replicas = replicas
        self.port, self.base_port = pick_ports(nodes)
        self.info = None

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
        )
        self.reload()
        return proc

    def reload(self):
        with open(os.path.join(self.root, "cluster.json"), encoding="utf-8") as fp:
            self.info = json.load(fp)
        return self.info

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
