"""Real storage nodes for functional tests: config files, a process, an HTTP client.

``StorageNode(root)`` writes ``haneul.conf`` and ``storage.conf`` under ``root`` (free
loopback ports, device directories), then ``start()`` runs ``haneul serve storage`` as
a child process in its own session and waits until every port answers. ``stop()``
sends SIGTERM (then SIGKILL); ``kill()`` is ``kill -9`` of the whole process group, a
crash. ``request()`` is a small http.client wrapper; ``path()`` and friends build
backend paths with the partition the node's secrets give.

``ProxyServer(root, nodes)`` writes one-replica rings over the nodes' devices and a
``proxy.conf`` (tempauth user ``test:tester`` / ``testing``), and runs
``haneul serve proxy`` the same way.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

from common.hashing import HashSecrets, hash_path, part_of_hash

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = "127.0.0.1"
KINDS = ("object", "container", "account")
PART_POWER = 8


def free_ports(count):
    """``count`` distinct loopback ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class Response:
    """What a client saw: status, headers (case-insensitive lookups), body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {key.lower(): value for key, value in headers}
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:80]!r}>"


class StorageNode:
    """One ``haneul serve storage`` process with its own config, devices and ports."""

    def __init__(
        self, root, devices=("d1", "d2"), workers=1, single_port=False, extra=None, env=None
    ):
        self.root = os.fspath(root)
        self.host = HOST
        self.devices_root = os.path.join(self.root, "srv")
        self.devices = list(devices)
        self.workers = workers
        self.single_port = single_port
        self.secrets = HashSecrets(uuid.uuid4().hex, uuid.uuid4().hex)
        ports = free_ports(4)
        self.ports = dict(zip(KINDS, ports, strict=False))
        self.storage_port = ports[3]
        if single_port:
            self.ports = dict.fromkeys(KINDS, self.storage_port)
        self.haneul_conf = os.path.join(self.root, "haneul.conf")
        self.conf_path = os.path.join(self.root, "storage.conf")
        self.log_path = os.path.join(self.root, "storage.log")
        self.extra = extra or {}
        self.env = env or {}
        self.proc = None
        for device in self.devices:
            os.makedirs(os.path.join(self.devices_root, device), exist_ok=True)
        self.write_configs()

    # -- config and process ------------------------------------------------------------

    def write_configs(self):
        with open(self.haneul_conf, "w") as fp:
            fp.write(
                f"[hash]\nprefix = {self.secrets.prefix.decode()}\n"
                f"suffix = {self.secrets.suffix.decode()}\n"
            )
        sections = {
            "DEFAULT": {
                "devices": self.devices_root,
                "mount_check": "false",
                "haneul_conf": self.haneul_conf,
                "bind_ip": HOST,
                "workers": str(self.workers),
                "shutdown_timeout": "10",
                "log_level": "info",
            },
            "storage": {
                "single_port": "true" if self.single_port else "false",
                "port": str(self.storage_port),
            },
            "object": {"port": str(self.ports["object"])},
            "container": {"port": str(self.ports["container"])},
            "account": {"port": str(self.ports["account"])},
        }
        for name, options in self.extra.items():
            sections.setdefault(name, {}).update(options)
        with open(self.conf_path, "w") as fp:
            for name, options in sections.items():
                fp.write(f"[{name}]\n")
                fp.writelines(f"{key} = {value}\n" for key, value in options.items())
                fp.write("\n")

    def start(self, timeout=30):
        """Start the node and wait until every port answers HTTP."""
        log = open(self.log_path, "a")  # noqa: SIM115 - the child holds it
        env = {**os.environ, "PYTHONPATH": ROOT, "HANEUL_CONF": self.haneul_conf, **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "storage", "-c", self.conf_path],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        for port in set(self.ports.values()):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"storage node exited {self.proc.returncode}:\n{self.log}")
                try:
                    self.raw_request(port, "GET", "/", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"storage node did not answer:\n{self.log}") from None
                    time.sleep(0.05)
        return self

    def stop(self, timeout=15):
        """SIGTERM (graceful), then SIGKILL of the group if it lingers; the exit code."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
        self._kill_group()
        self.proc = None
        return code

    def kill(self):
        """``kill -9`` of the supervisor and every worker at once: a crash."""
        if self.proc is not None:
            self._kill_group()
            self.proc.wait(10)
            self.proc = None

    def _kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)

    def restart(self):
        self.stop()
        return self.start()

    @property
    def log(self):
        try:
            with open(self.log_path, errors="replace") as fp:
                return fp.read()
        except FileNotFoundError:
            return ""

    # -- HTTP --------------------------------------------------------------------------

    def raw_request(self, port, method, path, headers=None, body=None, timeout=10):
        conn = http.client.HTTPConnection(self.host, port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, resp.getheaders(), resp.read())
        finally:
            conn.close()

    def request(self, kind, method, path, headers=None, body=None, timeout=10):
        """A request to the ``kind`` (object/container/account) server of this node."""
        return self.raw_request(self.ports[kind], method, path, headers, body, timeout)

    # -- names -------------------------------------------------------------------------

    def partition(self, account, container=None, obj=None):
        digest = hash_path(account, container, obj, secrets=self.secrets, raw_digest=True)
        return part_of_hash(digest, PART_POWER)

    def path(self, device, account, container=None, obj=None):
        """``/<device>/<partition>/<account>[/<container>[/<object>]]``."""
        part = self.partition(account, container, obj)
        names = "/".join(n for n in (account, container, obj) if n is not None)
        return f"/{device}/{part}/{names}"

    def container_update_headers(self, device, account, container):
        """The X-Container-* headers of an object write, pointing at this node."""
        return {
            "X-Container-Host": f"{self.host}:{self.ports['container']}",
            "X-Container-Device": device,
            "X-Container-Partition": str(self.partition(account, container)),
        }

    def account_update_headers(self, device, account):
        """The X-Account-* headers of a container write, pointing at this node."""
        return {
            "X-Account-Host": f"{self.host}:{self.ports['account']}",
            "X-Account-Device": device,
            "X-Account-Partition": str(self.partition(account)),
        }

    def data_files(self, device=None):
        """Every ``.data`` file under the objects dirs of the node's devices."""
        found = []
        for dev in [device] if device else self.devices:
            dev_path = os.path.join(self.devices_root, dev)
            for top in os.listdir(dev_path):
                if not top.startswith("objects"):
                    continue
                for dirpath, _dirs, files in os.walk(os.path.join(dev_path, top)):
                    found.extend(os.path.join(dirpath, f) for f in files if f.endswith(".data"))
        return found


class ProxyServer:
    """``haneul serve proxy`` in front of storage nodes, with rings built over them."""

    def __init__(self, root, nodes, replicas=1, extra_app_conf=None):
        from ring.builder import RingBuilder

        self.root = os.fspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.host = HOST
        (self.port,) = free_ports(1)
        self.haneul_conf = nodes[0].haneul_conf
        self.conf_path = os.path.join(self.root, "proxy.conf")
        self.log_path = os.path.join(self.root, "proxy.log")
        self.proc = None
        for kind in KINDS:
            builder = RingBuilder(6, replicas, 0)
            for zone, node in enumerate(nodes, 1):
                for device in node.devices:
                    builder.add_dev(
                        {
                            "region": 1,
                            "zone": zone,
                            "ip": node.host,
                            "port": node.ports[kind],
                            "device": device,
                            "weight": 100,
                        }
                    )
            builder.rebalance(seed=1)
            builder.get_ring().save(os.path.join(self.root, f"{kind}.ring.gz"))
        app_conf = "".join(f"{k} = {v}\n" for k, v in (extra_app_conf or {}).items())
        with open(self.conf_path, "w") as fp:
            fp.write(
                f"[DEFAULT]\nbind_ip = {HOST}\nbind_port = {self.port}\nworkers = 1\n"
                f"haneul_conf = {self.haneul_conf}\nring_dir = {self.root}\n\n"
                "[pipeline:main]\n"
                "pipeline = catch_errors healthcheck proxy_logging tempauth proxy\n\n"
                "[filter:catch_errors]\nuse = catch_errors\n\n"
                "[filter:healthcheck]\nuse = healthcheck\n\n"
                "[filter:proxy_logging]\nuse = proxy_logging\n\n"
                "[filter:tempauth]\nuse = tempauth\nuser_test_tester = testing .admin\n\n"
                f"[app:proxy]\nuse = proxy\n{app_conf}"
            )

    def start(self, timeout=30):
        log = open(self.log_path, "a")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "proxy", "-c", self.conf_path],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT, "HANEUL_CONF": self.haneul_conf},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited {self.proc.returncode}:\n{self.log}")
            try:
                if self.request("GET", "/healthcheck").status == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"proxy did not answer:\n{self.log}")
            time.sleep(0.05)

    def stop(self, timeout=15):
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None
        return code

    @property
    def log(self):
        try:
            with open(self.log_path, errors="replace") as fp:
                return fp.read()
        except FileNotFoundError:
            return ""

    def request(self, method, path, headers=None, body=None, timeout=10):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, resp.getheaders(), resp.read())
        finally:
            conn.close()

    def auth(self, user="test:tester", key="testing"):
        """(token, storage path such as ``/v1/AUTH_test``) from tempauth."""
        resp = self.request("GET", "/auth/v1.0", {"X-Auth-User": user, "X-Auth-Key": key})
        url = resp.header("X-Storage-Url")
        return resp.header("X-Auth-Token"), "/" + url.split("/", 3)[3]
