#!/usr/bin/env python3
"""Erasure coding, how fast: raw pyeclib, then EC against replication through the Swift API.

    python benchmarks/ec_bench.py                       # raw pyeclib + its own cluster
    python benchmarks/ec_bench.py --raw-only
    python benchmarks/ec_bench.py --cluster DIR         # a cluster already running
    python benchmarks/ec_bench.py --peer-auth-url http://127.0.0.1:18080/auth/v1.0

1. Raw pyeclib: MB/s (1 MB = 10^6 bytes of object data, per core: CPU time) to encode
   ``--segment-size`` segments and to decode them from the k data fragments and from
   the last k fragments (parity in the mix), for 4+2 and 8+4 with every ec_type pyeclib
   knows (those that cannot start on this machine are listed as unavailable).
2. Through the Swift API, with benchmarks/load.py's keep-alive clients: PUT then GET of
   ``--count`` objects of ``--size`` (16 MiB) at ``--concurrency``, in a container of the
   ec42 policy and one of the replicated policy (gold) of a Haneul all-in-one cluster
   (``--cluster DIR``, else one started here with ``haneul up --no-agents`` on free ports
   and stopped at the end), and with ``--peer-auth-url`` the same workload against
   another Swift endpoint's ec42 policy (``--peer-policy``). Each target runs
   ``--repeat`` times, alternating; the table shows medians (and ranges), the server
   CPU per operation, and Haneul EC over the peer.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from array import array

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # tests.aio, and the packages when run without installing
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # load.py beside us

from load import (  # noqa: E402
    SwiftClient,
    cleanup,
    human_size,
    parse_size,
    run_phase,
    swift_auth,
)

# -- raw pyeclib ---------------------------------------------------------------------------


def raw_rates(ec_type, k, m, segment_size, seconds):
    """(encode, decode from data, decode with parity) MB/s of CPU time, or None."""
    from pyeclib.ec_iface import ECDriver

    try:
        driver = ECDriver(k=k, m=m, ec_type=ec_type)
        segment = os.urandom(segment_size)
        fragments = driver.encode(segment)
    except Exception:  # ECDriverError and kin: this type does not run here
        return None

    def rate(call):
        for _ in range(20):
            call()
        done, start = 0, time.process_time()
        while True:
            call()
            done += 1
            spent = time.process_time() - start
            if spent >= seconds:
                return done * segment_size / spent / 1e6

    return (
        rate(lambda: driver.encode(segment)),
        rate(lambda: driver.decode(fragments[:k])),
        rate(lambda: driver.decode(fragments[-k:])),
    )


def raw_table(segment_size, seconds):
    from pyeclib.ec_iface import VALID_EC_TYPES

    # The first driver a process uses runs slow for a while (glibc's first big buffers
    # come from fresh mmaps): settle that before measuring anything.
    raw_rates("isa_l_rs_vand", 4, 2, segment_size, seconds)
    lines = [
        f"# raw pyeclib, {human_size(segment_size)} segments, MB/s of one core's CPU time",
        f"{'ec_type':<24} {'k+m':>5} {'encode':>9} {'decode':>9} {'decode+parity':>14}",
    ]
    for k, m in ((4, 2), (8, 4)):
        for ec_type in VALID_EC_TYPES:
            rates = raw_rates(ec_type, k, m, segment_size, seconds)
            if rates is None:
                lines.append(f"{ec_type:<24} {f'{k}+{m}':>5} {'unavailable here':>34}")
            else:
                enc, dec, par = rates
                lines.append(f"{ec_type:<24} {f'{k}+{m}':>5} {enc:>9.0f} {dec:>9.0f} {par:>14.0f}")
    return "\n".join(lines)


# -- through the Swift API -----------------------------------------------------------------


class Target:
    """One endpoint and policy to load: a Haneul policy or the peer's."""

    def __init__(self, label, auth_url, user, key, policy, server_match):
        self.label = label
        self.auth_url = auth_url
        self.user = user
        self.key = key
        self.policy = policy
        self.server_match = server_match
        self.runs = {"put": [], "get": []}

    def run(self, args, size, payload, attempt):
        storage, token = swift_auth(self.auth_url, self.user, self.key)
        kw = {
            "storage_url": storage,
            "token": token,
            "container": f"ec-bench-{self.policy}-{os.getpid()}-{attempt}",
            "timeout": 120.0,
            "policy": self.policy,
        }
        admin = SwiftClient(**kw)
        status = admin.create_container()
        admin.close()
        if status // 100 != 2:
            raise RuntimeError(f"{self.label}: creating a container answered {status}")
        phase_kw = dict(
            prefix="obj",
            size=size,
            concurrency=args.concurrency,
            processes=min(args.concurrency, os.cpu_count() or 1),
            payload=payload,
            server_match=self.server_match,
        )
        indices = array("l", range(args.count))
        try:
            for op in ("put", "get"):
                stats, ok, _tried = run_phase(
                    op, "swift", kw, indices, duration=args.duration, **phase_kw
                )
                self.runs[op].append(stats)
                if op == "put":
                    indices = ok
        finally:
            cleanup("swift", kw, array("l", range(args.count)), phase_kw)

    def summary(self, op):
        runs = self.runs[op]
        if not runs:
            return None
        rates = [r["MB_s"] for r in runs]
        cpu = [r.get("server_cpu_ms_per_op") for r in runs if r.get("server_cpu_ms_per_op")]
        errors = sum(r["errors"] for r in runs)
        return {
            "median": statistics.median(rates),
            "low": min(rates),
            "high": max(rates),
            "cpu": statistics.median(cpu) if cpu else None,
            "errors": errors,
        }


def api_table(targets, args):
    lines = [
        f"# {human_size(parse_size(args.size))} objects, concurrency {args.concurrency}, "
        f"{args.count} objects, {args.repeat} run(s) each: MB/s median (range), "
        "server CPU ms per op",
        f"{'target':<26} {'PUT MB/s':>22} {'cpu':>6} {'GET MB/s':>22} {'cpu':>6} {'errors':>6}",
    ]
    for target in targets:
        cells = []
        errors = 0
        for op in ("put", "get"):
            s = target.summary(op)
            if s is None:
                cells += ["-", "-"]
                continue
            cells.append(f"{s['median']:.0f} ({s['low']:.0f}-{s['high']:.0f})")
            cells.append("-" if s["cpu"] is None else f"{s['cpu']:.0f}")
            errors += s["errors"]
        lines.append(
            f"{target.label:<26} {cells[0]:>22} {cells[1]:>6} {cells[2]:>22} {cells[3]:>6} "
            f"{errors:>6}"
        )
    ours = next((t for t in targets if t.label.startswith("haneul ec42")), None)
    peer = next((t for t in targets if t.label.startswith("peer")), None)
    if ours and peer:
        for op in ("put", "get"):
            a, b = ours.summary(op), peer.summary(op)
            if a and b and b["median"]:
                # Each attempt loads both back to back: its own ratio is the one least
                # skewed by whatever else the machine was doing at the time.
                pairs = zip(ours.runs[op], peer.runs[op], strict=False)
                each = ", ".join(f"{x['MB_s'] / y['MB_s']:.2f}" for x, y in pairs if y["MB_s"])
                lines.append(
                    f"haneul ec42 / peer {op.upper()}: {a['median'] / b['median']:.2f}x "
                    f"(per run: {each})"
                )
    return "\n".join(lines)


def start_cluster(args):
    from tests.aio import AllInOne

    root = tempfile.mkdtemp(prefix="haneul-ec-bench-")
    try:
        aio = AllInOne(root, agents=False)  # no background daemons taking CPU
    except TypeError:  # a tests.aio without the option
        aio = AllInOne(root)
    aio.up()
    return aio, root


def haneul_targets(cluster_dir):
    from cli.cluster_layout import read_cluster_json

    info = read_cluster_json(cluster_dir)
    if info is None:
        raise SystemExit(f"ec_bench: no cluster.json in {cluster_dir}")
    match = os.path.abspath(cluster_dir)
    return [
        Target("haneul ec42", info["auth_url"], info["user"], info["key"], "ec42", match),
        Target(
            "haneul gold (3 replicas)", info["auth_url"], info["user"], info["key"], "gold", match
        ),
    ]


def build_parser():
    ap = argparse.ArgumentParser(
        description="pyeclib speed, and EC vs replication PUT/GET through the Swift API",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--raw-only", action="store_true", help="only the pyeclib figures")
    ap.add_argument("--no-raw", action="store_true", help="skip the pyeclib figures")
    ap.add_argument("--segment-size", default="1m", help="segment size for the raw figures")
    ap.add_argument("--raw-seconds", type=float, default=0.5, help="CPU seconds per figure")
    ap.add_argument("--cluster", help="cluster dir of a running `haneul up` (else start one)")
    ap.add_argument("--peer-auth-url", help="v1 auth URL of a peer Swift to load the same way")
    ap.add_argument("--peer-user", default="test:tester")
    ap.add_argument("--peer-key", default="testing")
    ap.add_argument("--peer-policy", default="ec42")
    ap.add_argument(
        "--peer-match",
        default="swift_launch.py",
        help="command-line substring of the peer's server processes (CPU)",
    )
    ap.add_argument("--size", default="16m")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--concurrency", "-c", type=int, default=4)
    ap.add_argument("--duration", type=float, default=60.0, help="time bound per phase (s)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per target (medians)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.no_raw:
        print(raw_table(parse_size(args.segment_size), args.raw_seconds), flush=True)
        print(flush=True)
    if args.raw_only:
        return 0
    size = parse_size(args.size)
    payload = memoryview(os.urandom(size))
    started = None
    cluster_dir = args.cluster
    if cluster_dir is None:
        started, cluster_dir = start_cluster(args)
    try:
        targets = haneul_targets(cluster_dir)
        if args.peer_auth_url:
            targets.append(
                Target(
                    f"peer {args.peer_policy}",
                    args.peer_auth_url,
                    args.peer_user,
                    args.peer_key,
                    args.peer_policy,
                    args.peer_match,
                )
            )
        for attempt in range(args.repeat):
            for target in targets:
                target.run(args, size, payload, attempt)
                s_put, s_get = target.runs["put"][-1], target.runs["get"][-1]
                print(
                    f"# run {attempt + 1}/{args.repeat} {target.label}: "
                    f"PUT {s_put['MB_s']:.0f} MB/s, GET {s_get['MB_s']:.0f} MB/s",
                    file=sys.stderr,
                    flush=True,
                )
        print(api_table(targets, args))
    finally:
        if started is not None:
            started.down()
            shutil.rmtree(started.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
