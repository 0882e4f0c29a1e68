"""``haneul agent``: one pass of the named daemons on a node or a whole cluster dir, and
the long-running agent with its /metrics."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from test_db_replicator import Cluster, listing, make_container, put_row

from cli import agent as agent_cli
from common import daemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path)
    yield made
    made.stop()


def write_storage_conf(node, path, extra=""):
    """The node's storage.conf, as `haneul up` writes one."""
    text = (
        "[DEFAULT]\n"
        f"devices = {node.devices_root}\n"
        "mount_check = false\n"
        f"haneul_conf = {node.cluster.haneul_conf}\n"
        f"ring_dir = {node.cluster.ring_dir}\n"
        "bind_ip = 127.0.0.1\n\n"
        f"[object]\nport = {node.ports['object']}\n\n"
        f"[container]\nport = {node.ports['container']}\n\n"
        f"[account]\nport = {node.ports['account']}\n\n"
        f"{extra}"
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fp:
        fp.write(text)
    return str(path)


def test_once_only_runs_exactly_the_named_daemons(cluster, tmp_path, capsys):
    node0, node1, _ = cluster.nodes
    make_container(node0)
    put_row(node0, "o")
    conf = write_storage_conf(node0, tmp_path / "etc" / "node0.conf")

    code = agent_cli.main(
        ["--once", "-c", conf, "--only", "account-replicator,container-replicator"]
    )

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split(":")[0] for line in out] == ["container-replicator", "account-replicator"]
    assert "whole_copies=1" in out[0]
    assert listing(node1) == [("o", 1)]


def test_once_dir_runs_the_daemons_on_every_node(cluster, tmp_path, capsys):
    node0, node1, node2 = cluster.nodes
    make_container(node2)  # a handoff: node2 pushes it and drops it
    root = tmp_path / "aio"
    nodes = [{"name": "n0", "conf": write_storage_conf(node0, root / "etc" / "x.conf")}]
    write_storage_conf(node1, root / "etc" / "n1.conf")
    write_storage_conf(node2, root / "etc" / "storage-n2.conf")
    nodes += [{"name": "n1"}, {"name": "n2"}]
    (root / "cluster.json").write_text(json.dumps({"nodes": nodes}))

    code = agent_cli.main(["--once", "--dir", str(root), "--only", "container-replicator"])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split(":")[0] for line in out] == [
        "n0 container-replicator",
        "n1 container-replicator",
        "n2 container-replicator",
    ]
    assert "handoffs_removed=1" in out[2]
    assert listing(node0) == listing(node1) == []
    assert not os.path.exists(node2.db_file("a", "c"))


def test_a_daemon_that_is_not_there_is_skipped_unless_named(cluster, tmp_path, capsys, monkeypatch):
    spec = daemon.DaemonSpec("object-auditor", "no_such_module_here", "X", "object", 30)
    monkeypatch.setitem(daemon.REGISTRY, "object-auditor", spec)
    conf = write_storage_conf(cluster.nodes[0], tmp_path / "node0.conf")
    nodes = [("", conf)]

    assert agent_cli.run_once(nodes, ["object-auditor", "account-replicator"]) == 0
    out = capsys.readouterr().out
    assert "object-auditor: skipped" in out and "account-replicator: " in out

    assert agent_cli.run_once(nodes, ["object-auditor"], explicit=True) == 1
    assert "not available" in capsys.readouterr().out


def test_bad_arguments_and_configs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        agent_cli.main(["--dir", str(tmp_path)])
    assert exc.value.code == 2
    assert agent_cli.main(["--once", "-c", str(tmp_path / "missing.conf")]) == 2
    assert agent_cli.main(["--once", "--dir", str(tmp_path)]) == 2
    conf = tmp_path / "s.conf"
    conf.write_text("[DEFAULT]\n")
    assert agent_cli.main(["--once", "-c", str(conf), "--only", "nope"]) == 2
    assert "unknown daemon" in capsys.readouterr().err


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_agent_loops_serves_metrics_and_stops_on_sigterm(cluster, tmp_path):
    node0, node1, _ = cluster.nodes
    make_container(node0)
    port = free_port()
    agent_section = (
        f"[agent]\ndaemons = container-replicator\ninterval = 0.2\nmetrics_port = {port}\n"
    )
    conf = write_storage_conf(node0, tmp_path / "node0.conf", agent_section)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "agent", "-c", conf],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        passes = 0
        while passes < 2:
            assert time.monotonic() < deadline, "no two passes in time"
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/metrics")
                body = conn.getresponse().read().decode()
                conn.close()
            except OSError:
                time.sleep(0.05)
                continue
            for line in body.splitlines():
                if line.startswith('haneul_agent_passes_total{daemon="container-replicator"}'):
                    passes = int(line.rsplit(" ", 1)[1])
            time.sleep(0.05)
        assert listing(node1) == []  # the loop did replicate
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
