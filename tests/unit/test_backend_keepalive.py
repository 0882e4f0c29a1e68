"""Keep-alive backend connections against a real server process on loopback.

The server is our runner (``common.wsgi``, eventlet's HTTP/1.1) serving a few-line app
that tells each request which client port it came from: one port per TCP connection,
so counting the ports a server saw counts the connections it accepted. A scripted peer
on a raw socket plays the one race a real server only shows by chance: a pooled
connection closed by the node just as a request goes out on it.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from common import backend_pool
from common.backend import BackendConnection, BackendError, request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

APP = """
import os, sys, time
from common.wsgi import prepare_process, run_wsgi
prepare_process()


def app(environ, start_response):
    path = environ["PATH_INFO"].split("/", 2)[-1]  # after the device
    headers = [("X-Client-Port", environ["REMOTE_PORT"]), ("X-Pid", str(os.getpid()))]
    if environ["REQUEST_METHOD"] == "PUT":
        if path == "refuse":
            start_response("412 Precondition Failed", headers + [("Content-Length", "0")])
            return [b""]
        body = environ["wsgi.input"].read()
        start_response("201 Created", headers + [("Content-Length", str(len(body)))])
        return [body]
    if path == "big":
        body = b"x" * (1 << 20)
    elif path == "close":
        headers.append(("Connection", "close"))
        body = b"bye"
    elif path == "slow":
        time.sleep(1)
        body = b"late"
    elif path == "short":  # a body that stops before its Content-Length
        start_response("200 OK", headers + [("Content-Length", "10")])
        return iter([b"12345"])
    elif path == "chunked":  # no Content-Length: eventlet sends it chunked
        start_response("200 OK", headers)
        return iter([b"one", b"two", b"three"])
    else:
        body = b"hello"
    start_response("200 OK", headers + [("Content-Length", str(len(body)))])
    return [body]


sys.exit(run_wsgi(app, {"port": sys.argv[1], "workers": "0"}, name="keepalive"))
"""

GREEN_CLIENT = """
import sys
from common.concurrency import patch_process
patch_process()
from common.backend import request
node = {"ip": "127.0.0.1", "port": int(sys.argv[1]), "device": "sda"}
ports = set()
for path in ("/small", "/chunked", "/small"):
    result = request(node, "GET", path, {})
    assert result.status == 200, result
    ports.add(result.headers["X-Client-Port"])
result = request(node, "PUT", "/put", {}, body=b"data")
assert (result.status, result.body) == (201, b"data"), result
ports.add(result.headers["X-Client-Port"])
print(len(ports))
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The app above in its own process (``kill()`` is kill -9; ``start()`` again)."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.node = {"ip": "127.0.0.1", "port": self.port, "device": "sda"}
        self.key = ("127.0.0.1", self.port)
        self.log = open(tmp_path / "server.log", "a+")  # noqa: SIM115 - closed in stop()
        self.proc = None
        self.start()

    def start(self):
        env = {**os.environ, "PYTHONPATH": ROOT}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", APP, str(self.port)],
            cwd=ROOT,
            env=env,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(self.key, timeout=1):
                    return
            except OSError:
                assert self.proc.poll() is None, self.log_text()
                time.sleep(0.05)
        raise AssertionError(f"server did not start:\n{self.log_text()}")

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def get(self, path="/small"):
        """(client port the server saw, body) of one pooled GET."""
        result = request(self.node, "GET", path, {})
        assert result.status == 200, result
        return result.headers["X-Client-Port"], result.body


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch):
    monkeypatch.setattr(backend_pool, "POOL", backend_pool.BackendPool(enabled=True))
    yield backend_pool.POOL
    backend_pool.POOL.clear()


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    yield srv
    srv.kill()
    srv.log.close()


def test_back_to_back_requests_share_one_connection(server, fresh_pool):
    ports = {server.get()[0] for _ in range(5)}
    ports.add(server.get("/chunked")[0])
    put = request(server.node, "PUT", "/put", {}, body=b"data")
    head = request(server.node, "HEAD", "/small", {})
    assert (put.status, put.body, head.status) == (201, b"data", 200)
    ports |= {put.headers["X-Client-Port"], head.headers["X-Client-Port"]}
    assert len(ports) == 1
    assert fresh_pool.idle_count(server.key) == 1


def test_a_streamed_put_with_100_continue_is_reused(server):
    first, _ = server.get()
    headers = {"Transfer-Encoding": "chunked", "Expect": "100-continue"}
    conn = BackendConnection.open(server.node, "PUT", "/put", headers)
    assert conn.await_continue() == 100
    conn.send(b"hello ")
    conn.send(b"world")
    conn.finish()
    resp = conn.getresponse()
    assert conn.read(100) == b"hello world"
    conn.close()
    assert resp.getheader("X-Client-Port") == first
    assert server.get()[0] == first


def test_headers_held_for_the_body_that_follows_arrive_with_it(server, fresh_pool):
    first, _ = server.get()
    conn = BackendConnection.open(
        server.node, "PUT", "/put", {"Content-Length": "4"}, body_follows=True
    )
    conn.send(b"data")
    resp = conn.getresponse()
    assert (resp.status, conn.read(100)) == (201, b"data")
    conn.close()
    assert resp.getheader("X-Client-Port") == first  # and the connection is reused


def test_headers_held_for_a_body_never_sent_reach_the_node_as_a_disconnect(server, fresh_pool):
    conn = BackendConnection.open(
        server.node, "PUT", "/put", {"Content-Length": "4"}, body_follows=True
    )
    conn.close()  # no body: the node gets the headers, then the end of the stream
    assert server.get()[1] == b"hello"  # the server lives on; a new connection serves


def test_a_whole_body_given_to_open_goes_with_the_headers(server, fresh_pool):
    conn = BackendConnection.open(
        server.node, "PUT", "/put", {"Content-Length": "5"}, body=b"whole"
    )
    assert conn.bytes_sent == 5
    resp = conn.getresponse()
    assert (resp.status, conn.read(100)) == (201, b"whole")
    conn.close()
    with pytest.raises(ValueError):
        BackendConnection.open(
            server.node, "PUT", "/put", {"Transfer-Encoding": "chunked"}, body=b"x"
        )


def test_a_body_abandoned_half_read_closes_the_connection(server, fresh_pool):
    first, _ = server.get()
    conn = BackendConnection.open(server.node, "GET", "/big", {})
    assert conn.getresponse().getheader("X-Client-Port") == first
    assert conn.read(10) == b"x" * 10
    conn.close()  # a client that went away: the rest of the body is not drained
    assert fresh_pool.idle_count(server.key) == 0
    assert server.get()[0] != first


def test_a_chunked_body_not_read_to_its_last_chunk_is_not_reused(server, fresh_pool):
    conn = BackendConnection.open(server.node, "GET", "/chunked", {})
    conn.getresponse()
    assert conn.read(3) == b"one"
    conn.close()
    assert fresh_pool.idle_count(server.key) == 0


def test_connection_close_from_the_server_is_honoured(server, fresh_pool):
    closing, body = server.get("/close")
    assert body == b"bye"
    assert fresh_pool.idle_count(server.key) == 0
    assert server.get()[0] != closing


def test_a_body_cut_short_by_the_server_ends_at_once_not_at_a_timeout(server, fresh_pool):
    conn = BackendConnection.open(server.node, "GET", "/short", {}, node_timeout=5)
    conn.getresponse()
    started = time.monotonic()
    assert conn.read(100) == b"12345"
    with pytest.raises(BackendError, match="5 body bytes unread") as err:
        conn.read(100)
    assert not err.value.timeout and time.monotonic() - started < 2
    assert fresh_pool.idle_count(server.key) == 0
    assert server.get()[1] == b"hello"


def test_an_early_answer_to_100_continue_closes_the_connection(server, fresh_pool):
    first, _ = server.get()
    headers = {"Content-Length": "5", "Expect": "100-continue"}
    conn = BackendConnection.open(server.node, "PUT", "/refuse", headers)
    assert conn.await_continue() == 412
    assert conn.getresponse().getheader("X-Client-Port") == first
    conn.close()  # the body was never sent: the server does not expect another request
    assert fresh_pool.idle_count(server.key) == 0
    assert server.get()[0] != first


def test_a_timeout_closes_the_connection(server, fresh_pool):
    first, _ = server.get()
    with pytest.raises(BackendError) as err:
        request(server.node, "GET", "/slow", {}, node_timeout=0.2)
    assert err.value.timeout
    assert fresh_pool.idle_count(server.key) == 0
    assert server.get()[0] != first


def test_a_restarted_server_gets_a_new_connection(server, fresh_pool):
    server.get()
    server.kill()  # kill -9: the kernel closes the pooled connection's far end
    server.start()
    assert fresh_pool.idle_count(server.key) == 1
    assert fresh_pool.take(server.key) is None  # seen to be closed, and dropped
    before, _ = server.get()
    server.kill()
    server.start()
    after, body = server.get()  # the request that would have used it works
    assert body == b"hello"
    assert after != before


def test_a_connection_idle_too_long_is_not_reused(server, fresh_pool):
    fresh_pool.max_age = 0.2
    first, _ = server.get()
    assert server.get()[0] == first
    time.sleep(0.3)
    assert server.get()[0] != first


def test_pooling_off_opens_a_connection_per_request(server, fresh_pool):
    fresh_pool.enabled = False
    assert len({server.get()[0] for _ in range(3)}) == 3


def test_a_green_process_reuses_connections(server):
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", GREEN_CLIENT, str(server.port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["1"], out.stderr


class ClosingPeer:
    """Answers one request, then drops the connection when the next request arrives
    (a node that closed an idle connection just as we reused it), then answers on a
    new connection."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.node = {"ip": "127.0.0.1", "port": self.sock.getsockname()[1], "device": "sda"}
        self.accepted = 0
        self.heads = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _read_request(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        self.heads.append((head, body))
        return head

    def _run(self):
        first, _ = self.sock.accept()
        self.accepted += 1
        self._read_request(first)
        first.sendall(self.ANSWER)
        self._read_request(first)
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        first.close()  # unanswered: a reset
        second, _ = self.sock.accept()
        self.accepted += 1
        with second:
            self._read_request(second)
            second.sendall(self.ANSWER)
            second.recv(1)  # until the client hangs up
        self.sock.close()


@pytest.mark.parametrize("method, body", [("GET", b""), ("PUT", b"payload")])
def test_a_pooled_connection_closed_under_a_request_is_retried_once(method, body):
    peer = ClosingPeer()
    assert request(peer.node, method, "/1/a/c/o", {}, body=body).body == b"ok"
    assert request(peer.node, method, "/1/a/c/o", {}, body=body).body == b"ok"
    backend_pool.POOL.clear()
    peer.thread.join(5)
    assert peer.accepted == 2
    assert [b for _h, b in peer.heads] == [body] * 3  # the retried request came whole


def test_a_streamed_body_already_sent_is_not_resent_on_a_new_connection():
    peer = ClosingPeer()
    assert request(peer.node, "GET", "/1/a/c/o", {}).body == b"ok"
    conn = BackendConnection.open(peer.node, "PUT", "/1/a/c/o", {"Content-Length": "4"})
    conn.send(b"data")
    with pytest.raises(BackendError):
        conn.getresponse()
    conn.close()
    assert peer.accepted == 1
    assert request(peer.node, "GET", "/1/a/c/o", {}).body == b"ok"  # lets the peer finish
    backend_pool.POOL.clear()
    peer.thread.join(5)


def test_the_pool_keeps_at_most_max_idle_per_node_and_drops_sockets_readable_while_idle():
    pool = backend_pool.BackendPool(max_idle=3, enabled=True)
    pairs = [socket.socketpair() for _ in range(5)]
    for ours, _theirs in pairs:
        pool.give(("n", 1), ours)
    assert pool.idle_count(("n", 1)) == 3
    pairs[4][1].close()  # the newest one's peer hung up
    pairs[3][1].sendall(b"?")  # the next one got bytes nobody asked for
    assert pool.take(("n", 1)) is pairs[2][0]
    assert pool.idle_count() == 0
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


@pytest.mark.filterwarnings("ignore:Using fork:DeprecationWarning")  # eventlet's, not ours
def test_a_forked_child_does_not_use_its_parents_sockets():
    pool = backend_pool.BackendPool(enabled=True)
    ours, theirs = socket.socketpair()
    pool.give(("n", 1), ours)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if pool.take(("n", 1)) is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pool.take(("n", 1)) is ours  # the parent's socket is still open and its own
    ours.close()
    theirs.close()
