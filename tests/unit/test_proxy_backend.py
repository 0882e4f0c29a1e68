"""common.backend against a scripted peer on a loopback socket (no real server).

Each test's peer reads the request head, then plays back exactly the bytes that show
one behaviour: an early refusal, 100-continue, a body cut short, silence.
"""

import socket
import threading

import pytest

from common.backend import BackendConnection, BackendError, backend_path, request


class Peer:
    """Accepts one connection and runs ``script(conn, received_head)`` on it."""

    def __init__(self, script):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.node = {"ip": "127.0.0.1", "port": self.sock.getsockname()[1], "device": "sda"}
        self.received = b""
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script):
        conn, _addr = self.sock.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    break
                head += data
            self.received = head
            script(conn, self)
        self.sock.close()

    def join(self):
        self.thread.join(5)


def test_backend_path_quotes_names_and_the_device_goes_in_front():
    assert backend_path(7, "AUTH_a", "c c", "o/\u2603") == "/7/AUTH_a/c%20c/o/%E2%98%83"
    peer = Peer(lambda conn, p: conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n"))
    result = request(peer.node, "HEAD", backend_path(3, "a"), {"X-Trans-Id": "tx1"})
    peer.join()
    assert result.status == 204
    assert peer.received.startswith(b"HEAD /sda/3/a HTTP/1.1\r\n")
    assert b"X-Trans-Id: tx1" in peer.received


def test_early_final_answer_instead_of_100_continue():
    def refuse(conn, peer):
        conn.sendall(b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 4\r\n\r\nnope")

    peer = Peer(refuse)
    conn = BackendConnection.open(
        peer.node, "PUT", "/1/a/c/o", {"Content-Length": "5", "Expect": "100-continue"}
    )
    assert conn.await_continue() == 412
    resp = conn.getresponse()
    assert resp.status == 412
    assert conn.read(100) == b"nope"
    conn.close()
    peer.join()


def test_100_continue_then_chunked_body_then_answer():
    def accept(conn, peer):
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.settimeout(2)
        while not peer.received.endswith(b"0\r\n\r\n"):
            peer.received += conn.recv(65536)
        conn.sendall(b'HTTP/1.1 201 Created\r\nETag: "abc"\r\nContent-Length: 0\r\n\r\n')

    peer = Peer(accept)
    headers = {"Transfer-Encoding": "chunked", "Expect": "100-continue"}
    conn = BackendConnection.open(peer.node, "PUT", "/1/a/c/o", headers)
    assert conn.await_continue() == 100
    conn.send(b"hello")
    conn.send(b"")  # nothing to send is not a last chunk
    conn.send(b"world!")
    conn.finish()
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("ETag")) == (201, '"abc"')
    conn.close()
    peer.join()
    body = peer.received.split(b"\r\n\r\n", 1)[1]
    assert body == b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n"


def test_a_body_cut_short_is_an_error_not_a_short_read():
    def cut(conn, peer):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)

    peer = Peer(cut)
    conn = BackendConnection.open(peer.node, "GET", "/1/a/c/o", {})
    assert conn.getresponse().status == 200
    assert conn.read(64) == b"x" * 10
    with pytest.raises(BackendError, match="90 body bytes unread"):
        conn.read(64)
    peer.join()


def test_silence_is_a_timeout():
    done = threading.Event()
    peer = Peer(lambda conn, p: done.wait(2))
    with pytest.raises(BackendError) as err:
        request(peer.node, "GET", "/1/a", {}, node_timeout=0.2)
    assert err.value.timeout
    done.set()
    peer.join()


def test_refused_connection_is_a_backend_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    node = {"ip": "127.0.0.1", "port": port, "device": "sda"}
    with pytest.raises(BackendError, match="cannot send GET"):
        request(node, "GET", "/1/a", {})
