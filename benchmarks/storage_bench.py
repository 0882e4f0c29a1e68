#!/usr/bin/env python3
"""How fast one storage node answers its backend API, on loopback.

    python benchmarks/storage_bench.py            # starts a node in a temp dir
    python benchmarks/storage_bench.py --quick    # a short run (CI, smoke)
    python benchmarks/storage_bench.py --host 127.0.0.1 --port 6200 --device sdb1

Phases, each bounded by ``--count`` operations and ``--duration`` seconds:

1. 4 KiB object PUT, then GET of the same objects, at ``--concurrency`` (32) keep-alive
   connections spread over ``--clients`` (2) forked client processes, each object in
   its own partition as a ring would spread them. Reports ops/s, latency p50/p99 and,
   when the bench started the node, the server CPU time per request (the figure that
   does not depend on how much CPU the Python clients take on the same machine).
2. 16 MiB object PUT and GET, one connection at a time: MB/s (1 MB = 10^6 bytes).
3. A container of ``--rows`` (100,000) object rows: the rows are inserted directly
   through ``ContainerBroker.merge_items`` (in batches of 10,000) when the bench started
   the node, else through the container server's backend API (``PUT /d/p/a/c/o`` with
   ``X-Size``...). Then the time of a 10,000-row JSON page: the first page, and one
   from the middle (``marker``).

The client is a small raw-socket HTTP/1.1 client (no http.client), event-driven in each
client process, so its overhead and its latencies stay small next to the server's; both
share this machine's CPUs.
"""

import argparse
import multiprocessing
import os
import selectors
import shutil
import socket
import statistics
import sys
import tempfile
import time
import zlib
from urllib.parse import quote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SMALL = 4096
BIG = 16 * 1024 * 1024
PARTITIONS = 1024
ACCOUNT = "AUTH_bench"
LISTING_PAGE = 10000


# -- a small keep-alive HTTP client -----------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; responses need Content-Length or chunking."""

    def __init__(self, host, port, timeout=60):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.scratch = bytearray(1 << 20)

    def request(self, method, path, headers=None, body=b"", keep_body=False):
        """Send a request; returns (status, body bytes or body length)."""
        path, _, query = path.partition("?")
        target = quote(path) + (f"?{query}" if query else "")
        lines = [f"{method} {target} HTTP/1.1", "Host: bench"]
        lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
        lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if len(body) <= 65536:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            self.sock.sendall(body)
        return self._response(method, keep_body)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _response(self, method, keep_body):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304):
            return status, b"" if keep_body else 0
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return status, self._chunked(keep_body)
        return status, self._body(int(headers.get("content-length", 0)), keep_body)

    def _body(self, length, keep_body):
        kept = bytearray()
        take = min(length, len(self.buf))
        if keep_body:
            kept += self.buf[:take]
        del self.buf[:take]
        left = length - take
        view = memoryview(self.scratch)
        while left:
            got = self.sock.recv_into(view, min(left, len(view)))
            if not got:
                raise ConnectionError("server closed the connection mid-body")
            if keep_body:
                kept += view[:got]
            left -= got
        return bytes(kept) if keep_body else length

    def _chunked(self, keep_body):
        kept, total = bytearray(), 0
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            end = self.buf.index(b"\r\n")
            size = int(bytes(self.buf[:end]).split(b";")[0], 16)
            del self.buf[: end + 2]
            while len(self.buf) < size + 2:
                self._fill()
            if keep_body:
                kept += self.buf[:size]
            total += size
            del self.buf[: size + 2]
            if size == 0:
                return bytes(kept) if keep_body else total

    def close(self):
        self.sock.close()


# -- the node under test --------------------------------------------------------------


class LocalNode:
    """A storage node the bench starts in a temp dir (and measures the CPU of)."""

    def __init__(self, workers):
        from tests.functional.nodes import StorageNode

        self.tmp = tempfile.mkdtemp(prefix="haneul-bench-")
        env = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024 * 1024)}
        extra = {"DEFAULT": {"log_requests": "false"}}
        self.node = StorageNode(self.tmp, devices=("d1",), workers=workers, extra=extra, env=env)
        self.node.start()
        self.host, self.ports, self.device = self.node.host, self.node.ports, "d1"

    def cpu_seconds(self):
        """User + system CPU of the supervisor and its workers so far."""
        pids = [self.node.proc.pid]
        try:
            with open(f"/proc/{pids[0]}/task/{pids[0]}/children") as fp:
                pids += [int(pid) for pid in fp.read().split()]
        except OSError:
            pass
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as fp:
                    fields = fp.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
            except OSError:
                continue
        return total

    def container_db(self, container):
        from common.db import db_file_path
        from common.hashing import hash_path
        from container_server.broker import ContainerBroker

        name_hash = hash_path(ACCOUNT, container, secrets=self.node.secrets)
        dev_path = os.path.join(self.node.devices_root, self.device)
        part = partition_of(container)
        return ContainerBroker(db_file_path(dev_path, ContainerBroker.datadir, part, name_hash))

    def close(self):
        self.node.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class RemoteNode:
    """A node someone else runs; no CPU figures."""

    def __init__(self, host, port, container_port, device):
        self.host, self.device = host, device
        self.ports = {"object": port, "container": container_port}

    def cpu_seconds(self):
        return None

    container_db = None

    def close(self):
        pass


def partition_of(name):
    """Spread names over partitions as a ring would (the node takes any partition)."""
    return zlib.crc32(name.encode()) % PARTITIONS


def timestamp():
    return f"{time.time():016.05f}"


# -- concurrent small-object phases ----------------------------------------------------


def parse_response(buf):
    """(status, length of the whole response) if ``buf`` holds one, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    length = 0
    at = head.find(b"\ncontent-length:")
    if at >= 0:
        length = int(head[at + 16 : head.index(b"\r", at + 1)])
    total = end + 4 + length
    return (status, total) if len(buf) >= total else None


def small_ops_worker(args):
    """One client process: ``conns`` connections doing ``method``, driven by one selector.

    Event-driven rather than a thread per connection, so that the client's latencies
    are the server's and the network's, not the wait for this process's GIL.
    """
    host, port, device, method, names, conns, deadline = args
    body = os.urandom(SMALL)
    queue = iter(names)
    selector = selectors.DefaultSelector()
    results = {"ok": 0, "errors": 0, "latencies": []}

    def send_next(sock, state):
        name = next(queue, None) if time.monotonic() < deadline else None
        if name is None:
            selector.unregister(sock)
            sock.close()
            return
        path = f"/{device}/{partition_of(name)}/{ACCOUNT}/bench/{name}"
        if method == "PUT":
            head = (
                f"PUT {path} HTTP/1.1\r\nHost: bench\r\nX-Timestamp: {timestamp()}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {SMALL}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
        else:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        state["started"] = time.perf_counter()

    for _ in range(conns):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state = {"buf": bytearray(), "started": 0.0}
        selector.register(sock, selectors.EVENT_READ, state)
        send_next(sock, state)
    want = 201 if method == "PUT" else 200
    while selector.get_map():
        for key, _ in selector.select(timeout=5):
            sock, state = key.fileobj, key.data
            data = sock.recv(262144)
            if not data:
                raise ConnectionError("the server closed a connection")
            state["buf"] += data
            parsed = parse_response(state["buf"])
            if parsed is None:
                continue
            status, total = parsed
            del state["buf"][:total]
            results["latencies"].append(time.perf_counter() - state["started"])
            good = status == want and (method == "PUT" or total > SMALL)
            results["ok" if good else "errors"] += 1
            send_next(sock, state)
    return results


def small_phase(node, method, count, duration, concurrency, clients):
    names = [f"o{i:07d}" for i in range(count)]
    clients = max(1, min(clients, concurrency))
    per_client = [concurrency // clients + (i < concurrency % clients) for i in range(clients)]
    shares = [names[i::clients] for i in range(clients)]
    cpu_before = node.cpu_seconds()
    started = time.monotonic()
    deadline = started + duration
    jobs = [
        (node.host, node.ports["object"], node.device, method, share, threads, deadline)
        for share, threads in zip(shares, per_client, strict=True)
    ]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(small_ops_worker, jobs)
    elapsed = time.monotonic() - started
    cpu_after = node.cpu_seconds()
    ok = sum(r["ok"] for r in results)
    errors = sum(r["errors"] for r in results)
    latencies = sorted(lat for r in results for lat in r["latencies"])
    line = f"  {method:<4} 4 KiB  c={concurrency:<3} {ok:>6} ok {errors:>3} errors  "
    line += f"{ok / elapsed:8.0f} ops/s"
    if latencies:
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        line += f"  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
    if cpu_before is not None and ok:
        line += f"  server CPU {(cpu_after - cpu_before) / ok * 1000:.2f} ms/op"
    print(line, flush=True)
    return ok


# -- big objects ------------------------------------------------------------------------


def big_phase(node, count, duration):
    body = os.urandom(BIG)
    conn = Connection(node.host, node.ports["object"])
    deadline = time.monotonic() + duration
    names = []
    put_time = 0.0
    for i in range(count):
        if time.monotonic() > deadline:
            break
        name = f"big{i:04d}"
        path = f"/{node.device}/{partition_of(name)}/{ACCOUNT}/bench/{name}"
        started = time.perf_counter()
        status, _ = conn.request("PUT", path, {"X-Timestamp": timestamp()}, body)
        put_time += time.perf_counter() - started
        if status != 201:
            raise RuntimeError(f"PUT {path}: {status}")
        names.append(path)
    get_time = 0.0
    for path in names:
        started = time.perf_counter()
        status, length = conn.request("GET", path)
        get_time += time.perf_counter() - started
        if status != 200 or length != BIG:
            raise RuntimeError(f"GET {path}: {status} {length}")
    conn.close()
    if names:
        size = len(names) * BIG / 1e6
        print(f"  PUT  16 MiB c=1   {len(names):>6} ok  {size / put_time:8.0f} MB/s", flush=True)
        print(f"  GET  16 MiB c=1   {len(names):>6} ok  {size / get_time:8.0f} MB/s", flush=True)


# -- container listing ------------------------------------------------------------------


def fill_container(node, container, rows):
    """Insert ``rows`` object rows; returns how (a phrase for the report)."""
    names = [f"obj-{i:06d}" for i in range(rows)]
    if node.container_db is not None:
        broker = node.container_db(container)
        now = timestamp()
        for start in range(0, rows, 10000):
            batch = [
                {
                    "name": name,
                    "created_at": now,
                    "size": 4096,
                    "content_type": "application/octet-stream",
                    "etag": "d41d8cd98f00b204e9800998ecf8427e",
                    "deleted": 0,
                    "storage_policy_index": 0,
                }
                for name in names[start : start + 10000]
            ]
            broker.merge_items(batch)
        broker.close()
        return "directly through ContainerBroker.merge_items"
    part = partition_of(container)
    conn = Connection(node.host, node.ports["container"])
    for name in names:
        headers = {
            "X-Timestamp": timestamp(),
            "X-Size": "4096",
            "X-Content-Type": "application/octet-stream",
            "X-Etag": "d41d8cd98f00b204e9800998ecf8427e",
            "X-Backend-Storage-Policy-Index": "0",
        }
        path = f"/{node.device}/{part}/{ACCOUNT}/{container}/{name}"
        status, _ = conn.request("PUT", path, headers)
        if status not in (201, 202):
            raise RuntimeError(f"PUT {path}: {status}")
    conn.close()
    return "through the container backend API, one PUT per row"


def listing_phase(node, rows, repeats):
    container = "listing"
    part = partition_of(container)
    base = f"/{node.device}/{part}/{ACCOUNT}/{container}"
    conn = Connection(node.host, node.ports["container"])
    headers = {"X-Timestamp": timestamp(), "X-Backend-Storage-Policy-Index": "0"}
    status, _ = conn.request("PUT", base, headers)
    if status not in (201, 202):
        raise RuntimeError(f"PUT {base}: {status}")
    started = time.monotonic()
    how = fill_container(node, container, rows)
    print(f"  inserted {rows} rows {how} in {time.monotonic() - started:.1f} s", flush=True)
    middle = f"obj-{rows // 2:06d}"
    for label, query in (
        ("first page", f"?format=json&limit={LISTING_PAGE}"),
        ("middle page", f"?format=json&limit={LISTING_PAGE}&marker={middle}"),
    ):
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            status, body = conn.request("GET", base + query, keep_body=True)
            times.append(time.perf_counter() - began)
            if status != 200 or body.count(b'"name"') != min(LISTING_PAGE, rows):
                raise RuntimeError(f"GET {base}{query}: {status}, {len(body)} bytes")
        print(
            f"  GET {LISTING_PAGE}-row page ({label}, json, {len(body)} bytes): "
            f"median {statistics.median(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms",
            flush=True,
        )
    conn.close()


# -- main --------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, short phases")
    parser.add_argument("--count", type=int, help="4 KiB objects per phase (default 5000)")
    parser.add_argument("--duration", type=float, help="seconds per phase at most (20)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--big-count", type=int, help="16 MiB objects (default 8)")
    parser.add_argument("--rows", type=int, help="container rows (default 100000)")
    parser.add_argument("--workers", default="auto", help="server workers (own node)")
    parser.add_argument("--host", help="a running node's address (else start one)")
    parser.add_argument("--port", type=int, default=6200, help="its object port")
    parser.add_argument("--container-port", type=int, help="its container port (port + 1)")
    parser.add_argument("--device", default="sdb1", help="a device of the running node")
    args = parser.parse_args(argv)
    quick = args.quick
    args.count = args.count or (1000 if quick else 5000)
    args.duration = args.duration or (5.0 if quick else 20.0)
    args.big_count = args.big_count if args.big_count is not None else (2 if quick else 8)
    args.rows = args.rows if args.rows is not None else (20000 if quick else 100000)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.host:
        node = RemoteNode(args.host, args.port, args.container_port or args.port + 1, args.device)
        where = f"node at {args.host}:{args.port}"
    else:
        node = LocalNode(args.workers)
        where = f"local node, workers={args.workers}, in {node.tmp}"
    print(f"storage node benchmark: {where}; {os.cpu_count()} CPUs shared with the clients")
    try:
        print(f"4 KiB objects ({args.clients} client processes):", flush=True)
        stored = small_phase(node, "PUT", args.count, args.duration, args.concurrency, args.clients)
        small_phase(node, "GET", stored, args.duration, args.concurrency, args.clients)
        print("16 MiB objects:", flush=True)
        big_phase(node, args.big_count, args.duration * 3)
        print(f"container listing of {args.rows} rows:", flush=True)
        listing_phase(node, args.rows, repeats=3 if args.quick else 5)
    finally:
        node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
