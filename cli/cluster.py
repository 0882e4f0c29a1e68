"""``haneul up | down | status``: an all-in-one cluster on one machine.

``up`` writes configs and rings into a cluster dir (once; a second ``up`` reuses them and
the data), starts one proxy and N storage nodes as background processes, waits until
they answer, and prints the endpoint and the test users. ``down`` stops them all;
``status`` shows each process and whether it answers.
"""

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import time

from cli.cluster_layout import (
    EC_FRAGMENTS,
    EC_POLICY_INDEX,
    PART_POWER,
    ClusterLayout,
    agent_name,
    cluster_info,
    haneul_conf_text,
    proxy_conf_text,
    read_cluster_json,
    storage_conf_text,
    write_cluster_json,
    write_text,
)
from common.fileops import makedirs

EXIT_ERROR = 2
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def default_dir():
    """``$HANEUL_DIR``, else ``data/`` in the repo (ignored by git)."""
    env = os.environ.get("HANEUL_DIR")
    if env:
        return env
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(repo, "data")


class ClusterError(Exception):
    """Something that stops ``up``/``down`` with one clear line."""


# -- configs and rings ---------------------------------------------------------------


def write_configs(layout):
    """Write haneul.conf (kept if present), proxy.conf and one storage.conf a node."""
    makedirs(layout.etc)
    makedirs(layout.log_dir)
    old = None
    if os.path.exists(layout.haneul_conf):
        with open(layout.haneul_conf, encoding="utf-8") as fp:
            old = fp.read()
    write_text(layout.haneul_conf, haneul_conf_text(old, with_ec=layout.has_ec_policy))
    write_text(layout.proxy_conf, proxy_conf_text(layout))
    for node in layout.nodes():
        for path in node["devices"].values():
            makedirs(path)
        write_text(node["conf"], storage_conf_text(layout, node))


def ring_devices(layout, port_key):
    """The ring devices of every node for the server on ``port_key``."""
    devs = []
    for node in layout.nodes():
        for device in node["devices"]:
            devs.append(
                {
                    "region": 1,
                    "zone": node["zone"],
                    "ip": node["ip"],
                    "port": node[port_key],
                    "device": device,
                    "weight": 100,
                }
            )
    return devs


def build_rings(layout):
    """Build the account, container and object rings unless they already match."""
    from ring.builder import RingBuilder

    plans = [
        ("account", "account_port", layout.replicas),
        ("container", "container_port", layout.replicas),
        ("object", "object_port", layout.replicas),
    ]
    if layout.has_ec_policy:  # the ec42 policy: one replica a fragment
        plans.append((f"object-{EC_POLICY_INDEX}", "object_port", EC_FRAGMENTS))
    for name, port_key, replicas in plans:
        ring_path = os.path.join(layout.etc, f"{name}.ring.gz")
        builder_path = os.path.join(layout.etc, f"{name}.builder")
        devs = ring_devices(layout, port_key)
        if os.path.exists(ring_path) and os.path.exists(builder_path):
            existing = RingBuilder.load(builder_path)
            same = sorted((d["ip"], d["port"], d["device"]) for d in existing.devs if d) == sorted(
                (d["ip"], d["port"], d["device"]) for d in devs
            )
            if same and existing.replicas == replicas:
                continue
            raise ClusterError(
                f"{builder_path} was built for another layout (nodes, ports or replicas); "
                "use the same options as the first `haneul up`, or another --dir"
            )
        if replicas > len(devs):
            raise ClusterError(f"{replicas} replicas need at least {replicas} devices")
        builder = RingBuilder(PART_POWER, replicas, 1)
        for dev in devs:
            builder.add_dev(dev)
        builder.rebalance(seed=1)
        builder.save(builder_path)
        builder.get_ring().save(ring_path)


# -- processes -----------------------------------------------------------------------


def port_in_use(port):
    """True if something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid):
    """True if the process exists (and is not a zombie of ours)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fp:
            return fp.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def start_process(layout, name, args):
    """Start ``haneul <args>`` in the background, its output in DIR/log/<name>.log."""
    log_path = os.path.join(layout.log_dir, f"{name}.log")
    env = dict(os.environ, HANEUL_CONF=layout.haneul_conf, PYTHONUNBUFFERED="1")
    # glibc serves big buffers with fresh mmaps (a page fault per page); keep them in the heap,
    # and keep the heap's free top instead of trimming it after every big free (EC encodes
    # run 4x slower when each segment's fragments land on freshly faulted pages).
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(64 * 1024 * 1024))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(128 * 1024 * 1024))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=layout.root,
            start_new_session=True,
        )
    return proc.pid


def healthy(url, timeout=1.0):
    """True if GET <url>/healthcheck answers 200."""
    host_port = url.split("://", 1)[1]
    conn = http.client.HTTPConnection(host_port, timeout=timeout)
    try:
        conn.request("GET", "/healthcheck")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_until_up(layout, pids, timeout=START_TIMEOUT, ports=None):
    """Wait until the proxy's healthcheck and every port (default: all the layout's)
    answer; ClusterError if not."""
    deadline = time.monotonic() + timeout
    waiting = set(layout.ports() if ports is None else ports)
    while time.monotonic() < deadline:
        for name, pid in pids.items():
            if not pid_alive(pid):
                raise ClusterError(
                    f"{name} exited during start; see {os.path.join(layout.log_dir, name)}.log"
                )
        waiting = {port for port in waiting if not port_in_use(port)}
        if not waiting and healthy(layout.proxy_url):
            return
        time.sleep(0.2)
    raise ClusterError(f"cluster did not answer within {timeout:.0f} s (ports {sorted(waiting)})")


def stop_pids(pids, timeout=STOP_TIMEOUT):
    """SIGTERM every process group, wait, then SIGKILL what is left. Returns names stopped."""
    stopped = []
    for name, pid in pids.items():
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return stopped


def running_pids(info):
    """name -> pid of the processes recorded in a cluster.json."""
    pids = {}
    if not info:
        return pids
    if info.get("proxy", {}).get("pid"):
        pids["proxy"] = info["proxy"]["pid"]
    for node in info.get("nodes", []):
        if node.get("pid"):
            pids[node["name"]] = node["pid"]
        if node.get("agent", {}).get("pid"):
            pids[agent_name(node["name"])] = node["agent"]["pid"]
    return pids


# -- commands ------------------------------------------------------------------------


def cmd_up(args):
    layout = ClusterLayout(args.dir, args.nodes, args.replicas, args.port, args.base_port)
    old = read_cluster_json(layout.root)
    alive = {n: p for n, p in running_pids(old).items() if pid_alive(p)}
    if old and alive:
        # Keep the recorded layout: restart only what is down (e.g. a node a test killed).
        layout = layout_of(old, layout)
    processes = cluster_processes(layout)
    if args.no_agents:  # probe tests run the daemons themselves (haneul agent --once)
        agents = {agent_name(node["name"]) for node in layout.nodes()}
        processes = {name: spec for name, spec in processes.items() if name not in agents}
    missing = [name for name in processes if name not in alive]
    if not missing:
        print(f"cluster in {layout.root} is already running")
        print_summary(old)
        return 0
    busy = [port for name in missing for port in processes[name][1] if port_in_use(port)]
    if busy:
        raise ClusterError(
            f"ports already in use: {', '.join(map(str, busy))} "
            "(another cluster? use --port/--base-port or `haneul down`)"
        )
    if not alive:
        write_configs(layout)
        build_rings(layout)
    pids = dict(alive)
    started = {}
    try:
        for name in missing:
            started[name] = pids[name] = start_process(layout, name, processes[name][0])
        wait_until_up(layout, pids, ports=[p for _argv, ports in processes.values() for p in ports])
    except BaseException:
        stop_pids(started)
        raise
    info = cluster_info(layout, pids)
    write_cluster_json(layout, info)
    print_summary(info)
    return 0


def layout_of(info, fallback):
    """The layout a running cluster was started with, from its cluster.json."""
    nodes = info.get("nodes") or []
    if not nodes:
        return fallback
    port = int(info["proxy"]["url"].rsplit(":", 1)[1])
    return ClusterLayout(
        fallback.root, len(nodes), fallback.replicas, port, nodes[0]["object_port"]
    )


def cluster_processes(layout):
    """name -> (haneul argv, ports it listens on) for every process of the cluster."""
    processes = {}
    for node in layout.nodes():
        ports = [node["object_port"], node["container_port"], node["account_port"]]
        processes[node["name"]] = (["serve", "storage", "-c", node["conf"]], ports)
        processes[agent_name(node["name"])] = (
            ["serve", "agent", "-c", node["conf"]],
            [node["metrics_port"]],
        )
    processes["proxy"] = (["serve", "proxy", "-c", layout.proxy_conf], [layout.proxy_port])
    return processes


def print_summary(info):
    print(f"Haneul all-in-one cluster is up: {info['proxy']['url']}")
    print(f"  auth URL: {info['auth_url']}")
    print(f"  user: {info['user']}  key: {info['key']}  (admin of its account)")
    for user in info["users"]:
        print(f"  user: {user['user']}  key: {user['key']}")
    print(f"  try:  swift -A {info['auth_url']} -U {info['user']} -K {info['key']} stat")
    s3 = info.get("s3")
    if s3:
        print(f"  S3 endpoint: {s3['endpoint']}  region: {s3['region']}")
        for pair in [s3, *info.get("s3_users", [])]:
            print(
                f"  S3 {pair['user']}: access key {pair['access_key']}  "
                f"secret key {pair['secret_key']}"
            )
    print(f"  configs and rings: {info['etc']}")


def cmd_down(args):
    root = os.path.abspath(args.dir)
    info = read_cluster_json(root)
    if info is None:
        print(f"no cluster in {root} (no cluster.json)")
        return 0
    stopped = stop_pids(running_pids(info))
    print(f"stopped {len(stopped)} process(es)" + (f": {', '.join(stopped)}" if stopped else ""))
    return 0


def cmd_status(args):
    root = os.path.abspath(args.dir)
    info = read_cluster_json(root)
    if info is None:
        print(f"no cluster in {root} (no cluster.json)")
        return 1
    all_ok = True
    proxy = info["proxy"]
    ok = pid_alive(proxy.get("pid")) and healthy(proxy["url"])
    all_ok &= ok
    print(f"proxy   pid {proxy.get('pid')}  {proxy['url']}  {'ok' if ok else 'DOWN'}")
    for node in info["nodes"]:
        ports = (node["object_port"], node["container_port"], node["account_port"])
        ok = pid_alive(node.get("pid")) and all(port_in_use(p) for p in ports)
        all_ok &= ok
        state = "ok" if ok else "DOWN"
        ports_text = "/".join(map(str, ports))
        print(f"{node['name']:<7} pid {node.get('pid')}  ports {ports_text}  {state}")
        agent = node.get("agent") or {}
        ok = pid_alive(agent.get("pid"))
        all_ok &= ok
        state = "ok" if ok else "DOWN"
        print(f"{'  agent':<7} pid {agent.get('pid')}  {agent.get('metrics')}  {state}")
    return 0 if all_ok else 1


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="haneul", description="the all-in-one cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="write configs and rings, start the cluster")
    up.add_argument("--dir", default=default_dir(), help="cluster dir (default: %(default)s)")
    up.add_argument("--nodes", type=int, default=4, help="storage nodes (default 4)")
    up.add_argument("--replicas", type=int, default=3, help="replicas (default 3)")
    up.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    up.add_argument("--base-port", type=int, default=6200, help="first node port (6200)")
    up.add_argument(
        "--no-agents",
        action="store_true",
        help="start no background agents (tests run `haneul agent --once` themselves)",
    )
    for name in ("down", "status"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--dir", default=default_dir(), help="cluster dir")
    args = parser.parse_args(argv)
    if args.command == "up":
        if args.nodes < 1 or args.replicas < 1:
            parser.error("--nodes and --replicas must be at least 1")
        for port in (args.port, args.base_port):
            if not 1 <= port <= 65535:
                parser.error(f"port out of range: {port}")
    return args


COMMANDS = {"up": cmd_up, "down": cmd_down, "status": cmd_status}


def main(argv):
    """``haneul up|down|status``; exit 0 done, 1 (status) something is down, 2 error."""
    args = parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ClusterError as err:
        print(f"haneul {args.command}: {err}", file=sys.stderr)
        return EXIT_ERROR


def up_main(argv):
    return main(["up", *argv])


def down_main(argv):
    return main(["down", *argv])


def status_main(argv):
    return main(["status", *argv])
