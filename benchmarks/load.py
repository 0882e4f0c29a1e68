#!/usr/bin/env python3
"""Bounded load generator for any Swift-API endpoint (Haneul, OpenStack Swift, ...).

Only the public Swift API is used, through plain ``http.client`` with one keep-alive
connection per worker thread, so the same run can be pointed at Haneul and at a peer Swift.

    python benchmarks/load.py --auth-url http://127.0.0.1:18080/auth/v1.0 \\
        --user test:tester --key testing --size 4k --concurrency 16 --count 2000

Phases (``--phases put,get,head,delete``, in the order given) each touch at most ``--count``
objects and stop starting new requests after ``--duration`` seconds. Each phase reports ops
(successful requests), ops/s, MB/s (1 MB = 10^6 bytes), latency p50/p99 of the successful
requests (ms), errors counted by status, and the CPU the generator itself used.

Workers: ``--processes P`` processes (forked) each running a share of the ``--concurrency``
threads. The client is kept cheap: one preallocated payload sent as a memoryview, response
bodies read into one reusable buffer per thread, no per-request payload allocation.

The protocol lives in a small client class (``SwiftClient``): connect/put/get/head/delete of
one object name plus container setup/teardown. ``--s3`` runs the same workloads through the
S3 API (``S3Client``: one bucket, SigV4 header signatures)::

    python benchmarks/load.py --s3 --endpoint http://127.0.0.1:18080 \\
        --access-key AK... --secret-key ... --size 4k --concurrency 16 --count 2000
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import resource
import sys
import threading
import time
import urllib.parse
from array import array

PHASES = ("put", "get", "head", "delete")
READ_CHUNK = 256 << 10  # bytes per readinto() when draining a body (256 KiB-1 MiB measured best)


# --------------------------------------------------------------------------- helpers


def parse_size(text: str | int) -> int:
    """'4k' -> 4096, '1m' -> 1048576, '16MiB' -> 16777216, '123' -> 123 (binary units)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise ValueError(f"bad size {text!r} (use e.g. 4096, 4k, 1m, 16m)")
    return int(m.group(1)) << (10 * " kmgt".index(m.group(2) or " "))


def human_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def percentile(sorted_values, pct: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence (None when empty)."""
    n = len(sorted_values)
    if not n:
        return None
    rank = max(1, math.ceil(pct / 100.0 * n))
    return sorted_values[min(n, rank) - 1]


def cpu_stat() -> tuple[int, int] | None:
    """(total, idle) jiffies of all CPUs from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(v), v[3] + v[4]


def processes_cpu(match: str, exclude: set[int]) -> float:
    """CPU seconds (user+sys) of processes whose command line contains ``match``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    needle = match.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in exclude:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------------------- clients


def swift_auth(auth_url: str, user: str, key: str, timeout: float = 30) -> tuple[str, str]:
    """v1 auth (tempauth/swauth style): returns (storage_url, token)."""
    u = urllib.parse.urlsplit(auth_url)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(
            "GET", u.path or "/auth/v1.0", headers={"X-Auth-User": user, "X-Auth-Key": key}
        )
        r = conn.getresponse()
        r.read()
        if r.status // 100 != 2:
            raise RuntimeError(f"auth at {auth_url} failed: {r.status} {r.reason}")
        storage, token = r.getheader("X-Storage-Url"), r.getheader("X-Auth-Token")
        if not storage or not token:
            raise RuntimeError("auth response lacks X-Storage-Url or X-Auth-Token")
        return storage, token
    finally:
        conn.close()


class KeepAliveHTTP:
    """One keep-alive HTTP connection, reopened when the server closes it.

    ``request()`` sends one request and drains the response body (into ``buf`` when given,
    so nothing is allocated per request). A request that fails because the server closed an
    idle kept-alive connection is retried once on a fresh one (counted in ``retries``), as
    HTTP clients do; any other failure raises OSError or http.client.HTTPException.
    """

    def __init__(self, url: str, timeout: float = 60.0):
        u = urllib.parse.urlsplit(url)
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname, u.port or (443 if self.https else 80)
        self.path = u.path.rstrip("/")
        self.timeout = timeout
        self.conn = None
        self.used = False  # the open connection has carried a request already
        self.retries = 0

    def connect(self) -> None:
        self.close()
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        self.conn = cls(self.host, self.port, timeout=self.timeout)
        self.conn.connect()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.used = False

    def request(self, method, path, headers, body=None, buf=None) -> tuple[int, int]:
        """Returns (status, body bytes received)."""
        for attempt in (0, 1):
            if self.conn is None:
                self.connect()
            reused = self.used
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                got = 0
                if buf is None:
                    got = len(r.read())
                else:
                    readinto = r.readinto
                    while n := readinto(buf):
                        got += n
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 0 and reused:
                    self.retries += 1
                    continue
                raise
            except BaseException:
                self.close()
                raise
            self.used = True
            if r.length or r.will_close:  # body cut short, or the server hangs up
                self.close()
            return r.status, got
        raise AssertionError("unreachable")


class SwiftClient(KeepAliveHTTP):
    """Swift API operations on the objects of one container, over one keep-alive connection.

    The interface a load client offers (an S3 client offers the same; register it in
    CLIENT_TYPES and build its keyword arguments in main()):
      connect(), close(), retries (int)
      put(name, body), get(name, buf), head(name), delete(name) -> (status, bytes moved)
      create_container(), delete_container() -> status
    Network errors raise OSError or http.client.HTTPException. Instances are built in the
    worker processes from plain keyword arguments.
    """

    kind = "swift"

    def __init__(
        self,
        storage_url: str,
        token: str,
        container: str,
        timeout: float = 60.0,
        policy: str | None = None,
    ):
        super().__init__(storage_url, timeout)
        self.container = container
        self.policy = policy
        self.base = f"{self.path}/{urllib.parse.quote(container)}"
        self.token = token
        self.hdr = {"X-Auth-Token": token}

    def put(self, name: str, body) -> tuple[int, int]:
        size = len(body)
        hdr = {
            "X-Auth-Token": self.token,
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
        }
        return self.request("PUT", f"{self.base}/{name}", hdr, body)[0], size

    def get(self, name: str, buf: memoryview) -> tuple[int, int]:
        return self.request("GET", f"{self.base}/{name}", self.hdr, buf=buf)

    def head(self, name: str) -> tuple[int, int]:
        return self.request("HEAD", f"{self.base}/{name}", self.hdr)[0], 0

    def delete(self, name: str) -> tuple[int, int]:
        return self.request("DELETE", f"{self.base}/{name}", self.hdr)[0], 0

    def create_container(self) -> int:
        hdr = dict(self.hdr)
        if self.policy:
            hdr["X-Storage-Policy"] = self.policy
        return self.request("PUT", self.base, hdr)[0]

    def delete_container(self) -> int:
        return self.request("DELETE", self.base, self.hdr)[0]


class S3Client(KeepAliveHTTP):
    """The same operations through the S3 API: objects of one bucket, SigV4-signed.

    Signing stays cheap: the derived key is made once a day, each request costs two
    HMACs and one SHA-256 of a short canonical request. The payload is sent as
    ``UNSIGNED-PAYLOAD`` (``payload="unsigned"``, the default) or with its SHA-256
    (``payload="sha256"``), computed once for the run's one payload and reused.
    """

    kind = "s3"
    EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        region: str = "us-east-1",
        timeout: float = 60.0,
        payload: str = "unsigned",
    ):
        super().__init__(endpoint, timeout)
        self.access_key = access_key
        self.secret_key = secret_key
        self.container = bucket
        self.region = region
        self.payload = payload
        self.base = f"{self.path}/{urllib.parse.quote(bucket, safe='')}"
        default_port = 443 if self.https else 80
        self.host_header = self.host if self.port == default_port else f"{self.host}:{self.port}"
        self._day = None
        self._key = None
        self._payload_hashes = {}  # (id, len) of a payload -> its SHA-256, computed once

    def _signing_key(self, day: str) -> bytes:
        if day != self._day:
            key = ("AWS4" + self.secret_key).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day, self._key = day, key
        return self._key

    def _payload_hash(self, body) -> str:
        if body is None:
            return self.EMPTY_SHA256
        if self.payload != "sha256":
            return "UNSIGNED-PAYLOAD"
        ident = (id(body.obj) if isinstance(body, memoryview) else id(body), len(body))
        found = self._payload_hashes.get(ident)
        if found is None:
            found = self._payload_hashes[ident] = hashlib.sha256(body).hexdigest()
        return found

    def signed(self, method: str, path: str, body=None, extra=None) -> dict:
        """Headers of a SigV4-signed request (``path`` already URI-encoded, no query)."""
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        payload = self._payload_hash(body)
        canonical = (
            f"{method}\n{path}\n\nhost:{self.host_header}\nx-amz-content-sha256:{payload}\n"
            f"x-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}"
        )
        scope = f"{amz_date[:8]}/{self.region}/s3/aws4_request"
        to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(amz_date[:8]), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "Host": self.host_header,
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
            ),
        }
        if extra:
            headers.update(extra)
        return headers

    def put(self, name: str, body) -> tuple[int, int]:
        size = len(body)
        path = f"{self.base}/{name}"
        extra = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        return self.request("PUT", path, self.signed("PUT", path, body, extra), body)[0], size

    def get(self, name: str, buf: memoryview) -> tuple[int, int]:
        path = f"{self.base}/{name}"
        return self.request("GET", path, self.signed("GET", path), buf=buf)

    def head(self, name: str) -> tuple[int, int]:
        path = f"{self.base}/{name}"
        return self.request("HEAD", path, self.signed("HEAD", path))[0], 0

    def delete(self, name: str) -> tuple[int, int]:
        path = f"{self.base}/{name}"
        return self.request("DELETE", path, self.signed("DELETE", path))[0], 0

    def create_container(self) -> int:
        return self.request("PUT", self.base, self.signed("PUT", self.base, b""))[0]

    def delete_container(self) -> int:
        return self.request("DELETE", self.base, self.signed("DELETE", self.base))[0]


CLIENT_TYPES = {"swift": SwiftClient, "s3": S3Client}


# --------------------------------------------------------------------------- workers


class _Share:
    """What one worker process (or the in-process runner) does in one phase."""

    def __init__(self, op, kind, client_kw, indices, prefix, size, threads, duration):
        self.op, self.kind, self.client_kw = op, kind, client_kw
        self.indices, self.prefix, self.size = indices, prefix, size
        self.threads, self.duration = threads, duration


def _thread_loop(share, client, payload, next_i, deadline, out):
    op, size, prefix, indices = share.op, share.size, share.prefix, share.indices
    lat, ok_idx, tried, errors = out["lat"], out["ok_idx"], out["tried"], out["errors"]
    nbytes = 0
    buf = memoryview(bytearray(max(1, min(size, READ_CHUNK)))) if op == "get" else None
    call = getattr(client, op)
    arg = payload if op == "put" else buf
    clock = time.monotonic
    n_idx = len(indices)
    for k in next_i:
        if k >= n_idx:
            break
        t0 = clock()
        if t0 >= deadline:
            break
        i = indices[k]
        tried.append(i)
        name = f"{prefix}{i:08d}"
        try:
            if op in ("put", "get"):
                status, moved = call(name, arg)
            else:
                status, moved = call(name)
        except Exception as e:  # OSError, HTTPException; anything else is counted too
            key = f"exc:{type(e).__name__}"
            errors[key] = errors.get(key, 0) + 1
            continue
        dt = clock() - t0
        if status // 100 != 2:
            errors[str(status)] = errors.get(str(status), 0) + 1
        elif op == "get" and moved != size:
            errors["short"] = errors.get("short", 0) + 1
        else:
            lat.append(dt)
            ok_idx.append(i)
            nbytes += moved if op in ("put", "get") else 0
    out["bytes"] += nbytes


def _run_share(share, payload, wait_go=None):
    """Run one share with its threads; returns a result dict (picklable)."""
    cls = CLIENT_TYPES[share.kind]
    clients = [cls(**share.client_kw) for _ in range(share.threads)]
    for c in clients:  # connect up front so the phase does not time TCP setup
        try:
            c.connect()
        except OSError:
            c.close()  # the first request retries, and counts the error if it fails again
    if wait_go is not None:
        wait_go()
    outs = [
        {"lat": array("d"), "ok_idx": array("l"), "tried": array("l"), "errors": {}, "bytes": 0}
        for _ in clients
    ]
    next_i = itertools.count()  # shared by the threads; next() is atomic under the GIL
    cpu0 = own_cpu()
    t0 = time.monotonic()
    deadline = t0 + share.duration
    ths = [
        threading.Thread(
            target=_thread_loop, args=(share, c, payload, next_i, deadline, o), daemon=True
        )
        for c, o in zip(clients, outs, strict=True)
    ]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    t1 = time.monotonic()
    cpu1 = own_cpu()
    for c in clients:
        c.close()
    res = {
        "t0": t0,
        "t1": t1,
        "cpu": cpu1 - cpu0,
        "retries": sum(c.retries for c in clients),
        "lat": array("d"),
        "ok_idx": array("l"),
        "tried": array("l"),
        "errors": {},
        "bytes": 0,
    }
    for o in outs:
        res["lat"].extend(o["lat"])
        res["ok_idx"].extend(o["ok_idx"])
        res["tried"].extend(o["tried"])
        res["bytes"] += o["bytes"]
        for k, v in o["errors"].items():
            res["errors"][k] = res["errors"].get(k, 0) + v
    return res


def _child(share, payload, conn, go):
    try:

        def wait_go():
            conn.send("ready")
            go.wait(60)

        conn.send(_run_share(share, payload, wait_go))
    except BaseException as e:  # report, never hang the parent
        conn.send({"crash": repr(e)})
    finally:
        conn.close()


def _mp_context():
    # fork: children inherit the payload (no copy) and need not re-import this script.
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def split_threads(concurrency: int, processes: int) -> list[int]:
    """Spread ``concurrency`` threads over at most ``processes`` processes."""
    processes = max(1, min(processes, concurrency))
    base, extra = divmod(concurrency, processes)
    return [base + (1 if p < extra else 0) for p in range(processes)]


def run_phase(
    op,
    kind,
    client_kw,
    indices,
    *,
    prefix,
    size,
    concurrency,
    processes,
    duration,
    payload,
    server_match=None,
):
    """Run one phase over ``indices`` and return (stats dict, ok indices, tried indices)."""
    plan = split_threads(concurrency, processes)
    shares = [
        _Share(op, kind, client_kw, indices[p :: len(plan)], prefix, size, t, duration)
        for p, t in enumerate(plan)
    ]
    stat0 = cpu_stat()
    srv0 = processes_cpu(server_match, {os.getpid()}) if server_match else 0.0
    if len(shares) == 1:
        results = [_run_share(shares[0], payload)]
    else:
        ctx = _mp_context()
        go = ctx.Event()
        procs, pipes = [], []
        for s in shares:
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_child, args=(s, payload, w, go), daemon=True)
            p.start()
            w.close()
            procs.append(p)
            pipes.append(r)
        results, started = [], []
        for r in pipes:  # wait until every process has its connections open
            try:
                msg = r.recv() if r.poll(60) else {"crash": "worker did not start in time"}
            except EOFError:
                msg = {"crash": "worker exited before starting"}
            if msg == "ready":
                started.append(r)
            else:
                results.append(msg)
        go.set()
        for r in started:
            try:
                # bounded: the phase duration plus one request timeout
                if r.poll(duration + client_kw.get("timeout", 60) + 30):
                    results.append(r.recv())
                else:
                    results.append({"crash": "worker did not report in time"})
            except EOFError:
                results.append({"crash": "worker exited without a report"})
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    stat1 = cpu_stat()
    srv1 = processes_cpu(server_match, {os.getpid()}) if server_match else 0.0

    errors: dict[str, int] = {}
    lat = array("d")
    ok_idx, tried = array("l"), array("l")
    nbytes, cpu, retries, t0s, t1s = 0, 0.0, 0, [], []
    for res in results:
        if "crash" in res:
            errors["worker-crash"] = errors.get("worker-crash", 0) + 1
            print(f"load.py: worker crashed: {res['crash']}", file=sys.stderr)
            continue
        lat.extend(res["lat"])
        ok_idx.extend(res["ok_idx"])
        tried.extend(res["tried"])
        nbytes += res["bytes"]
        cpu += res["cpu"]
        retries += res["retries"]
        t0s.append(res["t0"])
        t1s.append(res["t1"])
        for k, v in res["errors"].items():
            errors[k] = errors.get(k, 0) + v
    wall = max(1e-9, max(t1s) - min(t0s)) if t0s else 1e-9
    ops = len(lat)
    lat = sorted(lat)
    n_err = sum(errors.values())
    stats = {
        "phase": op,
        "ops": ops,
        "errors": n_err,
        "errors_by_status": dict(sorted(errors.items())),
        "retries": retries,
        "bytes": nbytes,
        "wall_s": round(wall, 4),
        "ops_s": round(ops / wall, 2),
        "MB_s": round(nbytes / wall / 1e6, 3),
        "p50_ms": round(percentile(lat, 50) * 1e3, 2) if ops else None,
        "p99_ms": round(percentile(lat, 99) * 1e3, 2) if ops else None,
        "client_cpu_cores": round(cpu / wall, 3),
        "client_cpu_ms_per_op": round(cpu / max(1, ops + n_err) * 1e3, 3),
    }
    if stat0 and stat1 and stat1[0] > stat0[0]:
        stats["all_cpu_busy"] = round(1 - (stat1[1] - stat0[1]) / (stat1[0] - stat0[0]), 3)
    if server_match:
        scpu = srv1 - srv0
        stats["server_cpu_cores"] = round(scpu / wall, 3)
        stats["server_cpu_ms_per_op"] = round(scpu / max(1, ops) * 1e3, 3)
    return stats, ok_idx, tried


# --------------------------------------------------------------------------- output


def format_table(rows: list[dict]) -> str:
    cols = [
        ("phase", "phase", "{}"),
        ("ops", "ops", "{}"),
        ("ops/s", "ops_s", "{:.1f}"),
        ("MB/s", "MB_s", "{:.1f}"),
        ("p50 ms", "p50_ms", "{:.1f}"),
        ("p99 ms", "p99_ms", "{:.1f}"),
        ("wall s", "wall_s", "{:.1f}"),
        ("client cpu", "client_cpu_cores", "{:.2f}"),
    ]
    if any("server_cpu_cores" in r for r in rows):
        cols.append(("server cpu", "server_cpu_cores", "{:.2f}"))
        cols.append(("srv ms/op", "server_cpu_ms_per_op", "{:.2f}"))
    cols.append(("errors", "errors_by_status", None))
    table = []
    for r in rows:
        line = []
        for _, key, fmt in cols:
            v = r.get(key)
            if fmt is None:
                line.append(" ".join(f"{k}:{n}" for k, n in v.items()) if v else "0")
            else:
                line.append("-" if v is None else fmt.format(v))
        table.append(line)
    heads = [c[0] for c in cols]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
    out = ["  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))]
    for t in table:
        out.append("  ".join(v.rjust(w) for v, w in zip(t, widths, strict=True)))
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Bounded Swift-API load generator (PUT/GET/HEAD/DELETE phases).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = ap.add_argument_group("endpoint")
    a.add_argument("--auth-url", default=os.environ.get("ST_AUTH"), help="v1 auth URL")
    a.add_argument("--user", default=os.environ.get("ST_USER", "test:tester"))
    a.add_argument("--key", default=os.environ.get("ST_KEY", "testing"))
    a.add_argument("--storage-url", help="skip auth: use this storage URL ...")
    a.add_argument("--token", help="... and this token")
    a.add_argument("--timeout", type=float, default=60.0, help="socket timeout per request (s)")
    s3 = ap.add_argument_group("S3 endpoint (--s3)")
    s3.add_argument("--s3", action="store_true", help="use the S3 API instead of Swift's")
    s3.add_argument("--endpoint", help="S3 endpoint URL (e.g. http://127.0.0.1:8080)")
    s3.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    s3.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    s3.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    s3.add_argument(
        "--s3-payload",
        choices=("unsigned", "sha256"),
        default="unsigned",
        help="x-amz-content-sha256 of PUTs: UNSIGNED-PAYLOAD, or the payload's SHA-256 "
        "(computed once per run)",
    )
    w = ap.add_argument_group("workload")
    w.add_argument("--size", default="4k", help="object size: bytes or 4k/1m/16m")
    w.add_argument("--concurrency", "-c", type=int, default=16, help="requests in flight")
    w.add_argument("--count", "-n", type=int, default=1000, help="objects per phase (at most)")
    w.add_argument("--duration", type=float, default=60.0, help="time bound per phase (s)")
    w.add_argument("--phases", default=",".join(PHASES), help="comma list of put,get,head,delete")
    w.add_argument("--container", help="container name (default: load-<pid>-<time>)")
    w.add_argument("--policy", help="X-Storage-Policy for the new container")
    w.add_argument("--prefix", default="obj", help="object name prefix")
    w.add_argument("--keep", action="store_true", help="keep the container and its objects")
    w.add_argument("--seed", type=int, default=1, help="seed for the GET/HEAD/DELETE order")
    r = ap.add_argument_group("runner")
    r.add_argument(
        "--processes",
        "-p",
        type=int,
        default=None,
        help="worker processes, the --concurrency threads spread over them (default: one "
        "per CPU, at most --concurrency; threads in one process contend for the GIL and cost "
        "about twice the CPU per request, see benchmarks/README.md)",
    )
    o = ap.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="one JSON line per phase on stdout")
    o.add_argument("--tag", default="", help="label copied into the JSON lines")
    o.add_argument(
        "--server-match",
        help="also report the CPU of processes whose command line contains this string "
        "(e.g. swift_launch.py for the peer Swift)",
    )
    return ap


class UsageError(Exception):
    pass


def client_config(args, container: str) -> tuple[str, dict, str]:
    """(client kind, keyword arguments to build one client, URL for the report).

    This is where an API is chosen: ``--s3`` gives ("s3", {endpoint, keys, bucket, ...}) for
    S3Client, otherwise ("swift", {storage_url, token, container, ...}) for SwiftClient.
    """
    if args.s3:
        if not (args.endpoint and args.access_key and args.secret_key):
            raise UsageError("--s3 needs --endpoint, --access-key and --secret-key")
        kw = {
            "endpoint": args.endpoint,
            "access_key": args.access_key,
            "secret_key": args.secret_key,
            "bucket": container,
            "region": args.region,
            "timeout": args.timeout,
            "payload": args.s3_payload,
        }
        return "s3", kw, args.endpoint
    if args.storage_url and args.token:
        storage, token = args.storage_url, args.token
    elif args.auth_url:
        storage, token = swift_auth(args.auth_url, args.user, args.key, args.timeout)
    else:
        raise UsageError("give --auth-url (+ --user/--key) or --storage-url and --token")
    kw = {
        "storage_url": storage,
        "token": token,
        "container": container,
        "timeout": args.timeout,
        "policy": args.policy,
    }
    return "swift", kw, storage


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as e:
        print(f"load.py: {e}", file=sys.stderr)
        return 2
    phases = [p.strip().lower() for p in args.phases.split(",") if p.strip()]
    bad = [p for p in phases if p not in PHASES]
    if bad or not phases:
        print(f"load.py: unknown phase(s) {bad}; choose from {PHASES}", file=sys.stderr)
        return 2
    if args.concurrency < 1 or args.count < 0 or args.duration <= 0:
        print("load.py: need --concurrency >= 1, --count >= 0, --duration > 0", file=sys.stderr)
        return 2
    processes = args.processes if args.processes else (os.cpu_count() or 1)

    container = args.container or f"load-{os.getpid()}-{int(time.time())}"
    try:
        kind, client_kw, storage = client_config(args, container)
        admin = CLIENT_TYPES[kind](**client_kw)
        status = admin.create_container()
        admin.close()
    except UsageError as e:
        print(f"load.py: {e}", file=sys.stderr)
        return 2
    except (OSError, http.client.HTTPException, RuntimeError) as e:
        print(f"load.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if status // 100 != 2:
        print(f"load.py: creating container {container}: HTTP {status}", file=sys.stderr)
        return 1

    # one payload for the whole run, shared by every worker (forked processes inherit it)
    payload = memoryview(os.urandom(size)) if "put" in phases else memoryview(b"")
    rng = random.Random(args.seed)
    present = array("l") if "put" in phases else array("l", range(args.count))
    maybe_there = set(present)  # what cleanup must delete
    meta = {
        "size": size,
        "concurrency": args.concurrency,
        "processes": len(split_threads(args.concurrency, processes)),
        "count": args.count,
        "endpoint": urllib.parse.urlsplit(storage).netloc,
        "container": container,
        "tag": args.tag,
    }
    phase_kw = dict(
        prefix=args.prefix,
        size=size,
        concurrency=args.concurrency,
        processes=processes,
        payload=payload,
        server_match=args.server_match,
    )
    rows = []
    table_out = sys.stderr if args.json else sys.stdout
    print(
        f"# {storage} container={container} size={human_size(size)} "
        f"concurrency={args.concurrency} processes={meta['processes']} count={args.count} "
        f"duration<={args.duration:g}s",
        file=table_out,
        flush=True,
    )
    rc = 0
    try:
        for op in phases:
            if op == "put":
                indices = array("l", range(args.count))
            else:
                indices = array("l", present)
                rng.shuffle(indices)
            stats, ok_idx, tried = run_phase(
                op, kind, client_kw, indices, duration=args.duration, **phase_kw
            )
            if op == "put":
                maybe_there.update(tried)
                present = array("l", sorted(set(present) | set(ok_idx)))
            elif op == "delete":
                gone = set(ok_idx)
                maybe_there -= gone
                present = array("l", (i for i in present if i not in gone))
            stats.update(meta)
            rows.append(stats)
            if args.json:
                print(json.dumps(stats), flush=True)
            if stats["errors"]:
                rc = 1
    finally:
        print(format_table(rows), file=table_out, flush=True)
        if not args.keep:
            cleanup(kind, client_kw, maybe_there, phase_kw)
    return rc


def cleanup(kind, client_kw, indices, phase_kw):
    """Delete what this run may have written, then the container (bounded in time)."""
    admin = CLIENT_TYPES[kind](**client_kw)
    if indices:
        stats, _, _ = run_phase(
            "delete", kind, client_kw, array("l", sorted(indices)), duration=120, **phase_kw
        )
        left = {k: v for k, v in stats["errors_by_status"].items() if k != "404"}
        if left:
            print(f"load.py: cleanup errors {left}", file=sys.stderr)
    for attempt in range(5):
        try:
            status = admin.delete_container()
        except (OSError, http.client.HTTPException) as e:
            status = f"{type(e).__name__}"
        if status in (204, 404):
            return
        if status != 409:
            break
        time.sleep(0.5 * (attempt + 1))  # listing may lag the deletes
    print(f"load.py: container {client_kw['container']} not deleted ({status})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
