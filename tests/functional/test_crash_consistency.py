"""``kill -9`` of a storage node in the middle of uploads leaves every object whole or absent.

Several client threads PUT objects of random sizes (empty, small, several 64 KiB chunks,
some chunked-encoded) in pieces, and the whole node (supervisor and workers) is killed
with SIGKILL while they stream. Then, before the node comes back:

- every ``.data`` under ``objects*/`` has the size its metadata says (body + footer),
  its bytes hash to its ETag, and they are exactly the bytes that client sent;
- leftovers in ``tmp/`` are only temp files, which ``cleanup_tmp`` removes.

After a restart, every object a client tried is either whole (GET gives back exactly the
bytes sent, with the matching ETag) or absent (404), every one that was acknowledged
(201) is whole, and nothing was quarantined. Three rounds on the same node: what earlier
rounds stored must survive the later crashes too.
"""

import hashlib
import http.client
import os
import random
import threading
import time

import pytest

from object_server.diskfile import DiskFileManager
from object_server.metadata import read_metadata

ROUNDS = 3
CLIENTS = 4
ACCOUNT, CONTAINER = "AUTH_crash", "c"
SIZES = (0, 1, 4095, 65536, 65537, 3 * 65536 + 17, 300_000, 1_200_000)


class Uploads:
    """What the clients sent (name -> bytes) and which uploads were acknowledged."""

    def __init__(self):
        self.sent = {}
        self.acked = set()
        self.lock = threading.Lock()


def upload(node, uploads, name, body, rng):
    """PUT ``body`` in pieces (sometimes chunked); True on 201."""
    conn = http.client.HTTPConnection(node.host, node.ports["object"], timeout=10)
    try:
        chunked = rng.random() < 0.25
        conn.putrequest("PUT", node.path("d1", ACCOUNT, CONTAINER, name))
        conn.putheader("X-Timestamp", f"{time.time():016.05f}")
        conn.putheader("Content-Type", "application/x-crash")
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        else:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        view = memoryview(body)
        while view:
            size = rng.randint(1, 65536)
            piece, view = bytes(view[:size]), view[size:]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if rng.random() < 0.3:
                time.sleep(0.002)  # let the kill land mid-body now and then
        if chunked:
            conn.send(b"0\r\n\r\n")
        return conn.getresponse().status == 201
    finally:
        conn.close()


def client(node, uploads, round_no, number, stop):
    rng = random.Random(f"{round_no}-{number}")
    count = 0
    while not stop.is_set():
        name = f"r{round_no}/t{number}/{count}"
        count += 1
        body = rng.randbytes(rng.choice(SIZES) + rng.randint(0, 100))
        with uploads.lock:
            uploads.sent[name] = body
        try:
            if upload(node, uploads, name, body, rng):
                with uploads.lock:
                    uploads.acked.add(name)
        except OSError:
            if stop.is_set():
                return
            time.sleep(0.01)


def check_files_on_disk(node, uploads):
    """Every .data is whole and is what its client sent; returns how many there are."""
    prefix = f"/{ACCOUNT}/{CONTAINER}/"
    files = node.data_files()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            stored = read_metadata(fd)
            length = int(stored.metadata["Content-Length"])
            assert os.fstat(fd).st_size == stored.expected_size(length), path
            body = os.pread(fd, length + 1, 0)[:length]
        finally:
            os.close(fd)
        assert hashlib.md5(body).hexdigest() == stored.metadata["ETag"], path
        name = stored.metadata["name"]
        assert name.startswith(prefix)
        assert body == uploads.sent[name[len(prefix) :]], path
    return len(files)


def check_tmp_leftovers(node):
    """Temp files a crash left in tmp/ are only temp files, and cleanup removes them."""
    manager = DiskFileManager(node.secrets)
    left = 0
    for device in node.devices:
        dev_path = os.path.join(node.devices_root, device)
        tmp = os.path.join(dev_path, "tmp")
        names = os.listdir(tmp) if os.path.isdir(tmp) else []
        assert all(name.startswith(".haneul-") for name in names), names
        left += len(names)
        assert manager.cleanup_tmp(dev_path, older_than=0) == len(names)
    return left


def check_over_http(node, uploads):
    """Every object tried is whole or 404; every acknowledged one is whole."""
    whole = 0
    for name, body in uploads.sent.items():
        resp = node.request("object", "GET", node.path("d1", ACCOUNT, CONTAINER, name))
        if resp.status == 404:
            assert name not in uploads.acked, f"acknowledged {name} was lost"
            continue
        assert resp.status == 200, (name, resp)
        assert resp.body == body, name
        assert resp.header("ETag").strip('"') == hashlib.md5(body).hexdigest()
        whole += 1
    return whole


@pytest.mark.slow
def test_kill_9_mid_upload_leaves_every_object_whole_or_absent(make_storage_node):
    node = make_storage_node(workers=2)
    uploads = Uploads()
    rng = random.Random(42)
    report = []
    for round_no in range(ROUNDS):
        stop = threading.Event()
        threads = [
            threading.Thread(target=client, args=(node, uploads, round_no, n, stop))
            for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.6 + rng.random() * 0.6)
        node.kill()
        stop.set()
        for thread in threads:
            thread.join(15)
        assert not any(thread.is_alive() for thread in threads)

        on_disk = check_files_on_disk(node, uploads)
        leftovers = check_tmp_leftovers(node)
        node.start()
        whole = check_over_http(node, uploads)
        assert whole == on_disk
        quarantined = os.path.join(node.devices_root, "d1", "quarantined")
        assert not os.path.exists(quarantined) or not any(os.scandir(quarantined))
        report.append((len(uploads.sent), len(uploads.acked), whole, leftovers))

    print("crash rounds (tried, acknowledged, whole, tmp leftovers):", report)
    sent, acked, _, _ = report[-1]
    assert acked > ROUNDS * CLIENTS  # the clients got work done between the crashes
    assert sent > acked  # and some uploads were cut short by a crash
