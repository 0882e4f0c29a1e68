"""Group commit of container updates (object_server.container_update.UpdateBatcher).

Green case: a real object server and a real container server, served by our runner in
one green process; the test sends object PUTs to it from threads, side by side. The
container app is wrapped to note how many rows each ``UPDATE`` carried, and to hold the
first one for a moment, so that the rows of the other PUTs pile up meanwhile.

Plain case: a process that is not green (this one) sends each row alone, at once.
"""

import glob
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from webob import Request

from common.hashing import HashSecrets
from common.timestamp import Timestamp
from container_server.server import ContainerApp
from object_server.async_pending import read_async_pending
from object_server.server import ObjectApp
from tests.unit.helpers import QuietHandler, ThreadingServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRETS = HashSecrets("pre", "suf")
MAX_ROWS = 5
WRITERS = 20

NODE = """
import io, json, sys, time
from common.wsgi import Listener, ServerOptions, prepare_process, serve
prepare_process()
import msgpack
from common.hashing import HashSecrets
from container_server.server import ContainerApp
from object_server import container_update
from object_server.server import ObjectApp

object_port, container_port, devices, batches, max_rows = sys.argv[1:6]
container_update.BATCHER.max_rows = int(max_rows)
secrets = HashSecrets("pre", "suf")
objects = ObjectApp({"devices": devices, "container_update_timeout": "10"}, hash_secrets=secrets)
containers = ContainerApp({"devices": devices}, hash_secrets=secrets)
held = []


def noting(environ, start_response):
    if environ["REQUEST_METHOD"] == "UPDATE":
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        with open(batches, "a") as fp:
            fp.write(json.dumps(len(msgpack.unpackb(body))) + "\\n")
        if not held:
            held.append(True)
            time.sleep(1.0)
        environ["wsgi.input"] = io.BytesIO(body)
    return containers(environ, start_response)


listeners = [
    Listener("object", object_port, objects),
    Listener("container", container_port, noting),
]
sys.exit(serve(listeners, ServerOptions({"workers": "0", "log_requests": "false"})))
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class GreenNode:
    """The NODE program above: an object and a container server in one green process."""

    def __init__(self, root):
        self.devices = root / "srv"
        (self.devices / "sda").mkdir(parents=True)
        self.batches_file = root / "batches"
        self.object_port, self.container_port = free_port(), free_port()
        self.log = open(root / "node.log", "w+")  # noqa: SIM115 - closed in stop()
        args = [self.object_port, self.container_port, self.devices, self.batches_file, MAX_ROWS]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", NODE, *map(str, args)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT},
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        for port in (self.object_port, self.container_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert self.proc.poll() is None, self.log_text()
                    assert time.monotonic() < deadline, self.log_text()
                    time.sleep(0.05)

    def log_text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)
        self.log.close()

    def batches(self):
        """How many rows each UPDATE carried, in order."""
        with open(self.batches_file) as fp:
            return [int(line) for line in fp]

    def put_objects(self, container, count):
        """``count`` object PUTs at once, each naming this node's container server."""
        base = time.time()

        def put(i):
            headers = {
                "X-Timestamp": Timestamp(base + i / 100).internal,
                "Content-Type": "text/plain",
                "Content-Length": "5",
                "X-Container-Host": f"127.0.0.1:{self.container_port}",
                "X-Container-Device": "sda",
                "X-Container-Partition": "1",
            }
            return request(
                self.object_port, "PUT", f"/sda/3/a/{container}/o{i:02}", headers, b"hello"
            )

        with ThreadPoolExecutor(count) as pool:
            return [status for status, _body in pool.map(put, range(count))]

    def listing(self, container):
        status, body = request(self.container_port, "GET", f"/sda/1/a/{container}?format=json")
        return [row["name"] for row in json.loads(body)] if status == 200 else []


@pytest.fixture
def green_node(tmp_path):
    node = GreenNode(tmp_path)
    yield node
    node.stop()


def async_pendings(devices):
    return sorted(glob.glob(os.path.join(devices, "sda", "async_pending*", "*", "*")))


def test_rows_that_wait_share_a_request(green_node):
    status, _ = request(green_node.container_port, "PUT", "/sda/1/a/c", {"X-Timestamp": "1"})
    assert status == 201
    assert green_node.put_objects("c", WRITERS) == [201] * WRITERS
    # Each PUT answered only once its row was in: the listing is complete at once.
    assert green_node.listing("c") == [f"o{i:02}" for i in range(WRITERS)]
    batches = green_node.batches()
    # The first UPDATE carries the rows ready when it went (often one; PUTs finishing
    # together may share it); the container holds it, and the rest wait for the next.
    assert sum(batches) == WRITERS
    assert max(batches) == MAX_ROWS  # the rows that waited went together, capped
    assert len(batches) < WRITERS / 2, batches
    assert async_pendings(green_node.devices) == []


def test_a_failed_request_leaves_a_pending_for_each_of_its_rows(green_node):
    # No container database: every UPDATE answers 404.
    assert green_node.put_objects("missing", WRITERS) == [201] * WRITERS
    batches = green_node.batches()
    assert sum(batches) == WRITERS and len(batches) < WRITERS / 2, batches
    pendings = async_pendings(green_node.devices)
    assert len(pendings) == WRITERS
    records = [read_async_pending(path) for path in pendings]
    assert sorted(r["obj"] for r in records) == [f"o{i:02}" for i in range(WRITERS)]
    for record in records:
        assert record["op"] == "PUT" and record["container"] == "missing"
        assert record["container_host"] == f"127.0.0.1:{green_node.container_port}"
        assert record["headers"]["X-Size"] == "5"


# -- a process that is not green -----------------------------------------------------------


class NotingContainerServer:
    """A real container server on loopback (a thread per request) noting each request."""

    def __init__(self, devices):
        self.app = ContainerApp({"devices": str(devices)}, hash_secrets=SECRETS)
        self.requests = []
        self.server = ThreadingServer(("127.0.0.1", 0), QuietHandler)
        self.server.set_app(self._noting)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def _noting(self, environ, start_response):
        self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        return self.app(environ, start_response)

    def call(self, method, path, headers=None):
        return Request.blank(path, method=method, headers=headers or {}).get_response(self.app)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def container_server(tmp_path):
    (tmp_path / "containers" / "sda").mkdir(parents=True)
    server = NotingContainerServer(tmp_path / "containers")
    yield server
    server.close()


def test_without_a_green_hub_each_row_is_sent_alone_at_once(tmp_path, container_server):
    (tmp_path / "objects" / "sda").mkdir(parents=True)
    objects = ObjectApp({"devices": str(tmp_path / "objects")}, hash_secrets=SECRETS)
    assert container_server.call("PUT", "/sda/1/a/c", {"X-Timestamp": "1"}).status_int == 201
    target = {
        "X-Container-Host": container_server.host,
        "X-Container-Device": "sda",
        "X-Container-Partition": "1",
    }
    base = time.time()
    for i, name in enumerate(("x", "y", "z")):
        headers = {"X-Timestamp": Timestamp(base + i).internal, **target}
        req = Request.blank(f"/sda/3/a/c/{name}", method="PUT", headers=headers, body=b"abc")
        assert req.get_response(objects).status_int == 201
    headers = {"X-Timestamp": Timestamp(base + 5).internal, **target}
    req = Request.blank("/sda/3/a/c/y", method="DELETE", headers=headers)
    assert req.get_response(objects).status_int == 204

    assert container_server.requests == [("UPDATE", "/sda/1/a/c")] * 4
    resp = container_server.call("GET", "/sda/1/a/c?format=json")
    assert [row["name"] for row in json.loads(resp.body)] == ["x", "z"]
    assert async_pendings(tmp_path / "objects") == []
