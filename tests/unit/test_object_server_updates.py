"""Container updates after PUT/DELETE: sent to a real loopback HTTP server, or kept as
async pendings when the container server is down, failing or slow.

The tests call the app directly, in a process that is not green: each row goes alone,
at once, in an ``UPDATE`` request (test_container_update_batching has the green case).
"""

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import msgpack
import pytest
from webob import Request

from common.hashing import HashSecrets, hash_path
from common.timestamp import Timestamp
from object_server.async_pending import read_async_pending

SECRETS = HashSecrets("p", "s")


class ContainerStub:
    """A tiny container server: records requests as ``(method, path, headers, rows)``
    (``rows`` decoded from an UPDATE body), answers ``status`` after ``delay``."""

    def __init__(self):
        self.requests = []
        self.status = 201
        self.delay = 0.0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rows = msgpack.unpackb(body) if body else None
                path = unquote(self.path, encoding="utf-8")
                stub.requests.append((self.command, path, dict(self.headers), rows))
                time.sleep(stub.delay)
                self.send_response(stub.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_DELETE = do_UPDATE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    server = ContainerStub()
    yield server
    server.close()


@pytest.fixture
def dead_host():
    """An address where nothing listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"127.0.0.1:{port}"


@pytest.fixture
def devices(tmp_path):
    root = tmp_path / "node"
    (root / "sda1").mkdir(parents=True)
    return root


@pytest.fixture
def app(devices):
    from object_server.server import ObjectApp

    conf = {"devices": str(devices), "container_update_timeout": "0.3", "conn_timeout": "0.3"}
    return ObjectApp(conf, hash_secrets=SECRETS)


def call(app, method, path, headers, body=None):
    req = Request.blank(path, environ={"REQUEST_METHOD": method}, headers=headers)
    if body is not None:
        req.body = body
    return req.get_response(app)


def async_pendings(devices):
    found = []
    for root, _dirs, files in os.walk(devices / "sda1"):
        if "async_pending" in root:
            found.extend(os.path.join(root, f) for f in files)
    return found


def update_headers(hosts, devices="cdev", partition="7"):
    return {
        "X-Container-Host": hosts,
        "X-Container-Device": devices,
        "X-Container-Partition": partition,
    }


def test_put_and_delete_update_the_container(app, stub, devices):
    ts = Timestamp(time.time()).internal
    headers = {
        "X-Timestamp": ts,
        "Content-Type": "text/plain",
        "X-Trans-Id": "tx-test",
        "X-Backend-Storage-Policy-Index": "1",
        **update_headers(stub.host),
    }
    assert call(app, "PUT", "/sda1/3/a/c/o", headers, b"hello").status_int == 201
    [(method, path, got, rows)] = stub.requests
    assert (method, path) == ("UPDATE", "/cdev/7/a/c")
    assert got["Content-Type"] == "application/x-msgpack"
    assert got["X-Trans-Id"] == "tx-test"
    assert got["X-Backend-Server-Type"] == "container"
    assert rows == [
        {
            "op": "PUT",
            "name": "o",
            "headers": {
                "X-Timestamp": ts,
                "X-Size": "5",
                "X-Content-Type": "text/plain",
                "X-Etag": "5d41402abc4b2a76b9719d911017c592",
                "X-Backend-Storage-Policy-Index": "1",
            },
        }
    ]

    ts2 = Timestamp(time.time() + 1).internal
    headers = {"X-Timestamp": ts2, "X-Backend-Storage-Policy-Index": "1"}
    headers.update(update_headers(stub.host))
    assert call(app, "DELETE", "/sda1/3/a/c/o", headers).status_int == 204
    method, path, _got, rows = stub.requests[1]
    assert (method, path) == ("UPDATE", "/cdev/7/a/c")
    [row] = rows
    assert (row["op"], row["name"], row["headers"]["X-Timestamp"]) == ("DELETE", "o", ts2)
    assert async_pendings(devices) == []


def test_unicode_names_are_quoted_on_the_wire(app, stub):
    container, name = "통 #2?", "객체 #1?.txt"
    wsgi_path = f"/sda1/3/a/{container}/{name}".encode().decode("latin-1")
    req = Request({"REQUEST_METHOD": "PUT", "PATH_INFO": wsgi_path, "SERVER_NAME": "x",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http"})  # fmt: skip
    req.headers.update({"X-Timestamp": Timestamp(time.time()).internal})
    req.headers.update(update_headers(stub.host))
    req.body = b"x"
    assert req.get_response(app).status_int == 201
    [(_method, path, _headers, rows)] = stub.requests
    assert path == f"/cdev/7/a/{container}"  # the stub unquoted it
    assert rows[0]["name"] == name  # msgpack text, no quoting


def test_failed_replica_becomes_an_async_pending(app, stub, dead_host, devices):
    ts = Timestamp(time.time())
    headers = {"X-Timestamp": ts.internal, "Content-Type": "image/png"}
    headers.update(update_headers(f"{stub.host},{dead_host}", "cdev,cdev2", "9"))
    assert call(app, "PUT", "/sda1/3/a/c/o", headers, b"abc").status_int == 201
    assert len(stub.requests) == 1  # the live one got it
    obj_hash = hash_path("a", "c", "o", secrets=SECRETS)
    expected = devices / "sda1" / "async_pending" / obj_hash[-3:] / f"{obj_hash}-{ts.internal}"
    assert async_pendings(devices) == [str(expected)]
    record = read_async_pending(str(expected))
    assert record["op"] == "PUT"
    assert (record["account"], record["container"], record["obj"]) == ("a", "c", "o")
    assert record["container_host"] == dead_host
    assert record["container_device"] == "cdev2"
    assert record["container_partition"] == "9"
    assert record["policy_index"] == 0
    assert record["headers"]["X-Size"] == "3"
    assert record["headers"]["X-Content-Type"] == "image/png"
    assert record["headers"]["X-Timestamp"] == ts.internal
    assert os.listdir(devices / "sda1" / "tmp") == []


def test_error_answer_and_slowness_become_async_pendings(app, stub, devices):
    stub.status = 500
    ts = Timestamp(time.time())
    headers = {"X-Timestamp": ts.internal, "X-Backend-Storage-Policy-Index": "2"}
    headers.update(update_headers(stub.host))
    assert call(app, "DELETE", "/sda1/3/a/c/o", headers).status_int == 404
    [path] = async_pendings(devices)
    assert "/async_pending-2/" in path
    assert read_async_pending(path)["op"] == "DELETE"

    stub.status = 201
    stub.delay = 1.0  # longer than container_update_timeout
    ts2 = Timestamp(time.time() + 1)
    headers = {"X-Timestamp": ts2.internal, **update_headers(stub.host)}
    started = time.monotonic()
    assert call(app, "PUT", "/sda1/3/a/c/o2", headers, b"x").status_int == 201
    assert time.monotonic() - started < 0.9
    assert len(async_pendings(devices)) == 2


@pytest.mark.parametrize(
    "headers",
    [
        update_headers("127.0.0.1:1,127.0.0.1:2", "d1"),
        update_headers("127.0.0.1:1", "d1,d2"),
        update_headers("127.0.0.1", "d1"),
        update_headers("127.0.0.1:99999", "d1"),
        update_headers("127.0.0.1:1", "d1", "x"),
        update_headers("127.0.0.1:1", "..", "1"),
    ],
)
def test_bad_container_headers_are_400(app, devices, headers):
    headers = {"X-Timestamp": Timestamp(time.time()).internal, **headers}
    assert call(app, "PUT", "/sda1/3/a/c/o", headers, b"x").status_int == 400
    assert call(app, "DELETE", "/sda1/3/a/c/o", headers).status_int == 400
    assert not (devices / "sda1" / "objects").exists()
