"""The object server over real HTTP on loopback: eventlet's WSGI server in a child process.

What only a real server shows: chunked uploads de-chunked by the server, Expect:
100-continue, a client that hangs up mid-body, multi-range bytes on the wire.
"""

import http.client
import os
import socket
import subprocess
import sys
import time

import pytest

from common.hashing import HashSecrets, hash_path
from common.timestamp import Timestamp

SERVE = """
import sys
import eventlet
import eventlet.wsgi
from common.hashing import HashSecrets
from object_server.server import ObjectApp

app = ObjectApp({"devices": sys.argv[1]}, hash_secrets=HashSecrets("p", "s"))
sock = eventlet.listen(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
eventlet.wsgi.server(sock, app, log_output=False)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    devices = tmp_path_factory.mktemp("node")
    (devices / "sda1").mkdir()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(devices)],
        stdout=subprocess.PIPE,
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
    )
    try:
        port = int(proc.stdout.readline())
        yield port, devices
    finally:
        proc.terminate()
        proc.wait(5)


def ts():
    return Timestamp.now().internal


def request(port, method, path, headers=None, body=None, **kw):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=body, headers=headers or {}, **kw)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def test_put_get_and_multi_range_over_http(server):
    port, _ = server
    body = os.urandom(100000)
    resp, _ = request(port, "PUT", "/sda1/1/a/c/whole", {"X-Timestamp": ts()}, body)
    assert resp.status == 201
    resp, data = request(port, "GET", "/sda1/1/a/c/whole")
    assert resp.status == 200 and data == body
    resp, data = request(port, "GET", "/sda1/1/a/c/whole", {"Range": "bytes=0-9,-10"})
    assert resp.status == 206
    assert resp.getheader("Content-Type").startswith("multipart/byteranges;boundary=")
    assert body[:10] in data and body[-10:] in data
    assert int(resp.getheader("Content-Length")) == len(data)


def test_chunked_upload(server):
    port, _ = server
    pieces = [os.urandom(3000) for _ in range(7)]
    headers = {"X-Timestamp": ts(), "Transfer-Encoding": "chunked"}
    resp, _ = request(
        port, "PUT", "/sda1/1/a/c/chunked", headers, iter(pieces), encode_chunked=True
    )
    assert resp.status == 201
    resp, data = request(port, "GET", "/sda1/1/a/c/chunked")
    assert data == b"".join(pieces)


def _raw(port, head):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(head.encode("latin-1"))
    return sock


def test_expect_100_continue(server):
    port, _ = server
    sock = _raw(
        port,
        f"PUT /sda1/1/a/c/expect HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts()}\r\n"
        "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
    sock.sendall(b"hello")
    assert sock.recv(100).startswith(b"HTTP/1.1 201")
    sock.close()


def _wait_for(predicate, timeout=3):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_client_hanging_up_mid_body_stores_nothing(server):
    port, devices = server
    tmp = devices / "sda1" / "tmp"
    sock = _raw(
        port,
        f"PUT /sda1/1/a/c/cut HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts()}\r\n"
        "Content-Length: 100000\r\n\r\n",
    )
    sock.sendall(b"x" * 5000)
    _wait_for(lambda: tmp.exists() and os.listdir(tmp))  # the upload is under way
    sock.close()
    _wait_for(lambda: not os.listdir(tmp))  # ... and abandoned
    obj_hash = hash_path("a", "c", "cut", secrets=HashSecrets("p", "s"))
    assert not (devices / "sda1" / "objects" / "1" / obj_hash[-3:] / obj_hash).exists()
    resp, _ = request(port, "HEAD", "/sda1/1/a/c/cut")
    assert resp.status == 404
