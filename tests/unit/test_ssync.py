"""SSYNC: the decision of what a receiver wants, and the verb itself between a Sender
and a real object server on loopback (files on tmp_path)."""

import hashlib
import http.client
import os
import socket
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from webob import Request

from common.hashing import HashSecrets, hash_path
from common.timestamp import Timestamp
from object_server import ssync
from object_server.diskfile import DiskFileManager
from object_server.server import ObjectApp
from object_server.ssync_sender import Sender

SECRETS = HashSecrets("pre", "suf")
T0 = int(time.time())
PART = 5


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args):
        pass


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def ts(offset):
    return Timestamp(T0 + offset)


# -- what a receiver wants -------------------------------------------------------------------


def test_wanted_follows_newest_wins():
    t1, t2, t3 = ts(1), ts(2), ts(3)
    assert ssync.wanted((t1, False, None), None) == "d"
    assert ssync.wanted((t1, False, t2), None) == "dm"
    assert ssync.wanted((t1, True, None), None) == "d"
    assert ssync.wanted((t2, False, None), (t1, False, None)) == "d"
    assert ssync.wanted((t1, False, None), (t2, False, None)) == ""
    assert ssync.wanted((t1, True, None), (t1, False, None)) == "d"  # tombstone wins a tie
    assert ssync.wanted((t1, False, None), (t1, True, None)) == ""
    assert ssync.wanted((t1, False, t2), (t1, False, None)) == "m"
    assert ssync.wanted((t1, False, t2), (t1, False, t3)) == ""
    assert ssync.wanted((t1, False, t3), (t2, True, None)) == ""  # no .meta on a tombstone
    assert ssync.wanted((t2, False, t3), (t1, False, t3)) == "d"  # its own .meta is as new


states = st.tuples(
    st.integers(1, 5).map(ts),
    st.booleans(),
    st.one_of(st.none(), st.integers(1, 5).map(ts)),
).map(lambda s: (s[0], s[1], None if s[1] or s[2] is None or s[2] <= s[0] else s[2]))


@given(states, states)
def test_wanted_is_one_way_and_settles(a, b):
    assert ssync.wanted(a, a) == ""
    a_wants = "d" in ssync.wanted(b, a)
    b_wants = "d" in ssync.wanted(a, b)
    assert not (a_wants and b_wants)
    if (a[0], a[1]) != (b[0], b[1]):
        assert a_wants or b_wants


# -- the verb over HTTP ---------------------------------------------------------------------


class Server:
    def __init__(self, root, device="sdb"):
        self.devices = str(root)
        self.device = device
        self.dev_path = os.path.join(self.devices, device)
        os.makedirs(self.dev_path, exist_ok=True)
        self.app = ObjectApp({"devices": self.devices}, hash_secrets=SECRETS)
        self.requests = []
        self.server = make_server(
            "127.0.0.1", 0, self.gate, server_class=ThreadingServer, handler_class=QuietHandler
        )
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def gate(self, environ, start_response):
        self.requests.append((environ["REQUEST_METHOD"], environ.get("HTTP_X_BACKEND_SSYNC_PHASE")))
        return self.app(environ, start_response)

    @property
    def node(self):
        return {"ip": "127.0.0.1", "port": self.port, "device": self.device}

    def call(self, method, name, headers=None, body=None):
        req = Request.blank(f"/{self.device}/{PART}/a/c/{name}", method=method, headers=headers)
        if body is not None:
            req.body = body
        return req.get_response(self.app)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def remote(tmp_path):
    server = Server(tmp_path / "remote")
    yield server
    server.stop()


@pytest.fixture
def local(tmp_path):
    dev = tmp_path / "local" / "sda"
    dev.mkdir(parents=True)
    return str(dev)


@pytest.fixture
def mgr():
    return DiskFileManager(SECRETS)


def put(mgr, dev, name, offset, body=b"payload", extra=None):
    df = mgr.get_diskfile(dev, PART, "a", "c", name)
    metadata = {
        "name": df.name,
        "X-Timestamp": ts(offset).internal,
        "Content-Length": str(len(body)),
        "ETag": hashlib.md5(body).hexdigest(),
        "Content-Type": "text/plain",
        **(extra or {}),
    }
    with df.create() as writer:
        writer.write(body)
        writer.put(metadata)
    return df


def sender(mgr, local, remote):
    return Sender(mgr, remote.node, local, PART, 0, conn_timeout=1, node_timeout=5)


def test_sender_pushes_what_is_missing_and_nothing_twice(mgr, local, remote):
    put(mgr, local, "new", 10, b"fresh bytes")
    put(mgr, local, "old-there", 10)
    put(mgr, local, "same", 10)
    mgr.get_diskfile(local, PART, "a", "c", "gone").delete(ts(30))
    remote.call("PUT", "old-there", {"X-Timestamp": ts(20).internal}, b"newer there")
    remote.call("PUT", "same", {"X-Timestamp": ts(10).internal}, b"payload")

    result = sender(mgr, local, remote).sync(mgr.yield_hashes(local, PART))
    assert result.offered == 4
    assert result.objects_sent == 2 and not result.failed
    resp = remote.call("GET", "new")
    assert resp.status_int == 200 and resp.body == b"fresh bytes"
    assert resp.headers["X-Timestamp"] == ts(10).internal
    assert resp.headers["Content-Type"] == "text/plain"
    assert remote.call("GET", "old-there").body == b"newer there"
    resp = remote.call("GET", "gone")
    assert resp.status_int == 404 and resp.headers["X-Backend-Timestamp"] == ts(30).internal

    again = sender(mgr, local, remote).sync(mgr.yield_hashes(local, PART))
    assert again.objects_sent == 0


def test_many_objects_go_in_bounded_requests(mgr, local, remote):
    count = ssync.UPDATE_BATCH + 8
    for i in range(count):
        put(mgr, local, f"o{i}", 10, f"body {i}".encode())
    result = sender(mgr, local, remote).sync(mgr.yield_hashes(local, PART))
    assert result.objects_sent == count
    assert remote.requests == [("SSYNC", "check"), ("SSYNC", "update"), ("SSYNC", "update")]
    assert remote.call("GET", f"o{count - 1}").body == f"body {count - 1}".encode()


def test_meta_alone_is_sent_when_the_data_is_there(mgr, local, remote):
    df = put(mgr, local, "o", 10, extra={"X-Object-Meta-A": "1"})
    df.write_metadata({"name": df.name, "X-Timestamp": ts(11).internal, "X-Object-Meta-B": "2"})
    remote.call("PUT", "o", {"X-Timestamp": ts(10).internal, "X-Object-Meta-A": "1"}, b"payload")
    s = sender(mgr, local, remote)
    assert s.check(list(mgr.yield_hashes(local, PART))) == {df.hash: "m"}
    assert s.sync(mgr.yield_hashes(local, PART)).files_sent == 1
    resp = remote.call("HEAD", "o")
    assert resp.headers["X-Object-Meta-B"] == "2"
    assert "X-Object-Meta-A" not in resp.headers  # a POST replaces user metadata


def frame(obj_hash, kind, metadata, body=b""):
    return ssync.frame_header(obj_hash, kind, metadata, len(body)) + body


def data_frame(name, offset, body, etag=None):
    metadata = {
        "name": f"/a/c/{name}",
        "X-Timestamp": ts(offset).internal,
        "Content-Length": str(len(body)),
        "ETag": etag or hashlib.md5(body).hexdigest(),
    }
    return frame(hash_path("a", "c", name, secrets=SECRETS), "data", metadata, body)


def raw_ssync(remote, phase, body, length=None, device=None, close_early=False):
    headers = {
        ssync.PHASE_HEADER: phase,
        "Content-Length": str(len(body) if length is None else length),
    }
    with socket.create_connection(("127.0.0.1", remote.port), timeout=5) as sock:
        head = f"SSYNC /{device or remote.device}/{PART} HTTP/1.1\r\nHost: x\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode() + body)
        if close_early:
            sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, resp.read()


def test_update_refuses_bytes_that_do_not_match_their_etag(remote):
    body = data_frame("good", 10, b"good bytes") + data_frame(
        "bad", 10, b"bad bytes", etag="0" * 32
    )
    status, answer = raw_ssync(remote, "update", body)
    assert status == 200
    answer = msgpack.unpackb(answer)
    assert answer["written"] == 1
    assert list(answer["failed"]) == [hash_path("a", "c", "bad", secrets=SECRETS)]
    assert remote.call("GET", "good").body == b"good bytes"
    assert remote.call("GET", "bad").status_int == 404
    assert os.listdir(os.path.join(remote.dev_path, "tmp")) == []


def test_update_refuses_a_name_that_is_not_the_hash(remote):
    metadata = {"name": "/a/c/other", "X-Timestamp": ts(1).internal}
    body = frame(hash_path("a", "c", "o", secrets=SECRETS), "tombstone", metadata)
    status, answer = raw_ssync(remote, "update", body)
    assert status == 200
    assert msgpack.unpackb(answer)["written"] == 0


def test_cut_short_update_keeps_the_whole_frames_before_the_cut(remote):
    whole = data_frame("first", 10, b"complete")
    cut = data_frame("second", 10, b"x" * 1000)[:-500]
    status, _ = raw_ssync(
        remote, "update", whole + cut, length=len(whole) + len(cut) + 500, close_early=True
    )
    assert status == 499
    assert remote.call("GET", "first").body == b"complete"
    assert remote.call("GET", "second").status_int == 404
    assert os.listdir(os.path.join(remote.dev_path, "tmp")) == []


@pytest.mark.parametrize(
    ("phase", "body", "device", "status"),
    [
        ("nonsense", b"", None, 400),
        ("check", b"\xc1", None, 400),
        ("check", msgpack.packb([["not-a-hash", "1", False, None]]), None, 400),
        ("update", b"\xff\xff\xff\xff", None, 400),
        ("check", msgpack.packb([]), "nodev", 507),
    ],
)
def test_bad_sync_requests_are_refused(remote, phase, body, device, status):
    assert raw_ssync(remote, phase, body, device=device)[0] == status


def test_sync_without_a_length_is_411(remote):
    req = Request.blank(f"/{remote.device}/{PART}", method="SSYNC")
    req.headers[ssync.PHASE_HEADER] = "check"
    req.environ.pop("CONTENT_LENGTH", None)
    assert req.get_response(remote.app).status_int == 411
