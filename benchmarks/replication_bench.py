#!/usr/bin/env python3
"""How fast the replicators rebuild a wiped device of a real all-in-one cluster.

    python benchmarks/replication_bench.py --quick          # 2,000 x 4 KiB + 256 MiB
    python benchmarks/replication_bench.py                  # 20,000 x 4 KiB + 2 GiB
    python benchmarks/replication_bench.py --dir DIR        # a cluster already running

1. Start a cluster (``haneul up --no-agents`` in a temp dir, on free ports), or use the
   one in ``--dir``, and load ``--small`` objects of ``--small-size`` and ``--large-bytes``
   of ``--large-size`` objects through the proxy, with benchmarks/load.py's keep-alive
   clients (``--concurrency`` connections over ``--processes`` processes).
2. Pick the device that holds the most of that data (``--device`` to choose), note which
   objects and databases the rings place on it, and wipe it (its directory stays).
3. Time passes of ``haneul agent --once --dir DIR --only object-replicator`` (every node in
   turn, as ``haneul agent`` does), then of the container and account replicators, until
   every object (with its size) and database is back on the device, at most
   ``--max-passes`` passes each. ``--per-node`` runs one agent process per node at
   once instead, as the nodes' own agents would.
4. Check a sample of the rebuilt files byte for byte, and print objects/s and MB/s
   (1 MB = 10^6 bytes) restored over the object replicator's passes.

Every phase is bounded: loads by count and ``--load-timeout``, passes by
``--max-passes`` and ``--pass-timeout``. A cluster the bench started is stopped and its
directory removed at the end (``--keep`` keeps both).
"""

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from array import array

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # tests.aio, and the packages when run without installing
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # load.py beside us

from load import SwiftClient, human_size, parse_size, run_phase, swift_auth  # noqa: E402

from tests.aio import HANEUL, AllInOne  # noqa: E402

SMALL_CONTAINER = "repl-bench-small"
LARGE_CONTAINER = "repl-bench-large"
OBJECT_REPLICATOR = ("object-replicator",)
DB_REPLICATORS = ("container-replicator", "account-replicator")
SAMPLE = 200  # small objects checked byte for byte after the rebuild


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Time the replicators rebuilding a wiped device.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--dir", help="a running all-in-one cluster (default: start one)")
    ap.add_argument("--quick", action="store_true", help="2,000 small objects + 256 MiB")
    ap.add_argument("--small", type=int, help="small objects (default 20000; quick 2000)")
    ap.add_argument("--small-size", default="4k", help="bytes of a small object")
    ap.add_argument("--large-bytes", help="bytes of large objects in all (2g; quick 256m)")
    ap.add_argument("--large-size", default="64m", help="bytes of one large object")
    ap.add_argument("--concurrency", type=int, default=16, help="PUTs in flight (small)")
    ap.add_argument("--large-concurrency", type=int, default=4, help="PUTs in flight (large)")
    ap.add_argument("--processes", type=int, default=2, help="client processes for loading")
    ap.add_argument("--load-timeout", type=float, default=900, help="bound of each load (s)")
    ap.add_argument("--device", help="the device to wipe (default: the one holding most)")
    ap.add_argument("--per-node", action="store_true", help="one agent process per node")
    ap.add_argument("--max-passes", type=int, default=4, help="replication passes at most")
    ap.add_argument("--pass-timeout", type=float, default=1800, help="bound of one pass (s)")
    ap.add_argument("--nodes", type=int, default=4, help="nodes of a cluster started here")
    ap.add_argument("--keep", action="store_true", help="keep the cluster the bench started")
    args = ap.parse_args(argv)
    args.small = args.small if args.small is not None else (2000 if args.quick else 20000)
    large_default = "256m" if args.quick else "2g"
    args.small_size = parse_size(args.small_size)
    args.large_size = parse_size(args.large_size)
    args.large_bytes = parse_size(args.large_bytes or large_default)
    args.large = args.large_bytes // args.large_size if args.large_size else 0
    if args.small < 0 or args.large < 0 or args.max_passes < 1:
        ap.error("need --small >= 0, --large-bytes >= 0 and --max-passes >= 1")
    return args


# -- loading -------------------------------------------------------------------------


def load(args, storage, token):
    """PUT the small and the large objects; returns [(container, prefix, count, payload)]."""
    plan = [
        (SMALL_CONTAINER, "s", args.small, args.small_size, args.concurrency),
        (LARGE_CONTAINER, "l", args.large, args.large_size, args.large_concurrency),
    ]
    loaded = []
    for container, prefix, count, size, concurrency in plan:
        if not count:
            continue
        kw = {"storage_url": storage, "token": token, "container": container, "timeout": 300}
        admin = SwiftClient(**kw)
        status = admin.create_container()
        admin.close()
        if status // 100 != 2:
            raise SystemExit(f"creating {container}: HTTP {status}")
        payload = memoryview(os.urandom(size))
        stats, ok, _tried = run_phase(
            "put",
            "swift",
            kw,
            array("l", range(count)),
            prefix=prefix,
            size=size,
            concurrency=min(concurrency, count),
            processes=args.processes,
            duration=args.load_timeout,
            payload=payload,
        )
        print(
            f"loaded {stats['ops']:,} x {human_size(size)} into {container}: "
            f"{stats['ops_s']:,.0f} PUT/s, {stats['MB_s']:,.1f} MB/s, errors "
            f"{stats['errors_by_status'] or 0} ({stats['wall_s']:.1f}s)",
            flush=True,
        )
        if len(ok) != count:
            raise SystemExit(f"only {len(ok)} of {count} PUTs to {container} succeeded")
        loaded.append((container, prefix, count, payload))
    return loaded


# -- what the device should hold ------------------------------------------------------


class Expected:
    """The objects and databases the rings put on one device."""

    def __init__(self, cluster, account, loaded, device):
        self.cluster = cluster
        self.device = device
        self.objects = []  # (container, name, part, payload)
        for container, prefix, count, payload in loaded:
            for i in range(count):
                name = f"{prefix}{i:08d}"
                part, nodes = cluster.object_nodes(account, container, name)
                if any(node["device"] == device for node in nodes):
                    self.objects.append((container, name, part, payload))
        self.bytes = sum(len(obj[3]) for obj in self.objects)
        self.dbs = []
        part, nodes = cluster.account_nodes(account)
        if any(node["device"] == device for node in nodes):
            self.dbs.append(cluster.db_file(device, part, account))
        for container, *_rest in loaded:
            part, nodes = cluster.container_nodes(account, container)
            if any(node["device"] == device for node in nodes):
                self.dbs.append(cluster.db_file(device, part, account, container))
        self.account = account

    def objects_present(self):
        """(objects back with their full size, their bytes)."""
        count = size = 0
        for container, name, part, payload in self.objects:
            path = self.cluster.data_file(self.device, part, self.account, container, name)
            if path is not None and os.path.getsize(path) >= len(payload):
                count += 1
                size += len(payload)
        return count, size

    def dbs_present(self):
        return sum(os.path.exists(path) for path in self.dbs)

    def check_sample(self, rng):
        """Read every large and SAMPLE small rebuilt objects; the list of bad ones."""
        large = [o for o in self.objects if o[0] == LARGE_CONTAINER]
        small = [o for o in self.objects if o[0] != LARGE_CONTAINER]
        bad = []
        for container, name, part, payload in large + rng.sample(small, min(SAMPLE, len(small))):
            path = self.cluster.data_file(self.device, part, self.account, container, name)
            metadata, data = self.cluster.read_object_file(path)
            etag = hashlib.md5(payload, usedforsecurity=False).hexdigest()
            if data != payload or metadata.get("ETag") != etag:
                bad.append(name)
        return bad


def pick_device(cluster, account, loaded):
    """The device the object ring gives the most bytes of the loaded objects."""
    held = {}
    for container, prefix, count, payload in loaded:
        for i in range(count):
            _part, nodes = cluster.object_nodes(account, container, f"{prefix}{i:08d}")
            for node in nodes:
                held[node["device"]] = held.get(node["device"], 0) + len(payload)
    return max(sorted(held), key=held.get)


# -- replication passes ---------------------------------------------------------------


def agent_pass(cluster, daemons, per_node, timeout):
    """One pass of ``daemons`` on every node; returns the wall seconds it took."""
    only = ",".join(daemons)
    if per_node:
        commands = [
            [*HANEUL, "agent", "--once", "-c", node["conf"], "--only", only]
            for node in cluster.info["nodes"]
        ]
    else:
        commands = [[*HANEUL, "agent", "--once", "--dir", cluster.root, "--only", only]]
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, HANEUL_CONF=cluster.haneul_conf),
            text=True,
        )
        for cmd in commands
    ]
    failed = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            failed.append(f"timed out after {timeout:.0f}s")
        if proc.returncode:
            failed.append(out.strip()[-2000:])
    elapsed = time.monotonic() - started
    if failed:
        print(f"agent pass of {only} failed:\n" + "\n".join(failed), file=sys.stderr)
    return elapsed


def rebuild(args, cluster, expected):
    """Run object-replicator passes, then DB replicator passes, until the device is whole."""
    object_seconds = 0.0
    passes = 0
    for passes in range(1, args.max_passes + 1):
        object_seconds += agent_pass(cluster, OBJECT_REPLICATOR, args.per_node, args.pass_timeout)
        count, size = expected.objects_present()
        print(
            f"  object-replicator pass {passes}: {object_seconds:.1f}s so far, "
            f"{count:,}/{len(expected.objects):,} objects, {size / 1e6:,.1f} MB back",
            flush=True,
        )
        if count == len(expected.objects):
            break
    db_seconds = 0.0
    db_passes = 0
    while db_passes < args.max_passes:
        db_passes += 1
        db_seconds += agent_pass(cluster, DB_REPLICATORS, args.per_node, args.pass_timeout)
        if expected.dbs_present() == len(expected.dbs):
            break
    print(
        f"  container+account replicators: {db_passes} pass(es), {db_seconds:.1f}s, "
        f"{expected.dbs_present()}/{len(expected.dbs)} databases back",
        flush=True,
    )
    return object_seconds, passes, db_seconds


def main(argv=None):
    args = parse_args(argv)
    started_here = args.dir is None
    root = args.dir or tempfile.mkdtemp(prefix="haneul-repl-bench-")
    cluster = AllInOne(root, nodes=args.nodes, agents=False)
    rc = 0
    try:
        if started_here:
            cluster.up()
        else:
            cluster.reload()
        runner = "one agent per node" if args.per_node else "one agent --dir"
        print(
            f"# cluster {root} ({len(cluster.info['nodes'])} nodes); small "
            f"{args.small:,} x {human_size(args.small_size)}, large {args.large} x "
            f"{human_size(args.large_size)}; {runner}",
            flush=True,
        )
        storage, token = swift_auth(cluster.auth_url, cluster.info["user"], cluster.info["key"])
        account = storage.rstrip("/").rsplit("/", 1)[1]
        loaded = load(args, storage, token)
        device = args.device or pick_device(cluster, account, loaded)
        expected = Expected(cluster, account, loaded, device)
        print(
            f"wiping {device} ({cluster.node_of(device)}): {len(expected.objects):,} objects, "
            f"{expected.bytes / 1e6:,.1f} MB, {len(expected.dbs)} databases",
            flush=True,
        )
        cluster.wipe_device(device)
        load_before = os.getloadavg()[0]
        object_seconds, passes, db_seconds = rebuild(args, cluster, expected)
        count, size = expected.objects_present()
        bad = expected.check_sample(random.Random(1)) if count == len(expected.objects) else []
        whole = count == len(expected.objects) and expected.dbs_present() == len(expected.dbs)
        print(
            f"restored {count:,} objects ({size / 1e6:,.1f} MB) in {object_seconds:.1f}s over "
            f"{passes} object-replicator pass(es): {count / object_seconds:,.1f} objects/s, "
            f"{size / 1e6 / object_seconds:,.1f} MB/s; databases {db_seconds:.1f}s; "
            f"sample checked byte for byte: {'ok' if not bad else f'{len(bad)} BAD'}"
        )
        print(  # the machine is shared: say how busy it was
            f"load average {load_before:.1f} before the rebuild, {os.getloadavg()[0]:.1f} after "
            f"({os.cpu_count()} CPUs)"
        )
        if not whole or bad:
            print("the device is NOT whole again", file=sys.stderr)
            rc = 1
    finally:
        if started_here and not args.keep:
            cluster.down()
            shutil.rmtree(root, ignore_errors=True)
        elif started_here:
            print(f"cluster kept in {root} (haneul down --dir {root})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
