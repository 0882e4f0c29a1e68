"""The agent loop (intervals, errors, run_once), its config layering and /metrics."""

import http.client
import os
import queue
import threading
from array import array

import pytest

from common import concurrency, daemon
from common.config import ConfigError
from common.daemon import Agent, DaemonRun, render_metrics, serve_metrics
from common.hashing import HashSecrets
from ring.ring import Ring
from ring.ringfile import RingData


class FakeDaemon:
    """Counts its passes; fails on the passes listed in ``fail_on``."""

    def __init__(self, fail_on=()):
        self.calls = 0
        self.fail_on = set(fail_on)

    def run_once(self, devices=None):
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("disk on fire")
        return {"calls": self.calls, "rows": 2, "note": "not a number"}


def run_agent_for(agent, seconds):
    agent.start()
    concurrency.sleep(seconds)
    agent.stop()
    agent.wait()


def test_agent_runs_each_daemon_on_its_own_interval():
    fast, slow = FakeDaemon(), FakeDaemon()
    agent = Agent([DaemonRun("fast", fast, 0.05), DaemonRun("slow", slow, 0.3)], jitter=0)

    run_agent_for(agent, 0.75)

    assert 10 <= fast.calls <= 17
    assert slow.calls == 3  # at 0, 0.3 and 0.6 s
    assert agent.runs[0].totals == {"calls": sum(range(1, fast.calls + 1)), "rows": 2 * fast.calls}


def test_jitter_spreads_the_passes_but_keeps_the_rate():
    ticks = FakeDaemon()
    agent = Agent([DaemonRun("jittery", ticks, 0.05)], jitter=0.5)
    run_agent_for(agent, 0.5)
    assert 6 <= ticks.calls <= 16


def test_a_failing_pass_is_logged_and_counted_and_the_loop_goes_on(caplog):
    flaky = FakeDaemon(fail_on={1})
    agent = Agent([DaemonRun("flaky", flaky, 0.05)], jitter=0)

    run_agent_for(agent, 0.22)

    run = agent.runs[0]
    assert run.failures == 1 and run.passes == flaky.calls >= 3
    assert "flaky: pass failed" in caplog.text and "disk on fire" in caplog.text


def test_run_once_runs_every_daemon_once():
    one, two = FakeDaemon(), FakeDaemon(fail_on={1})
    agent = Agent([DaemonRun("one", one, 60), DaemonRun("two", two, 60)])
    results = agent.run_once()
    assert results == {"one": {"calls": 1, "rows": 2, "note": "not a number"}, "two": None}
    assert (one.calls, two.calls) == (1, 1)


def test_metrics_text_has_last_pass_and_totals():
    run = DaemonRun('odd"name', FakeDaemon(fail_on={2}), 1)
    agent = Agent([run])
    agent.run_once()
    agent.run_once()
    agent.run_once()
    text = render_metrics([run])
    lines = text.splitlines()
    assert "# TYPE haneul_agent_passes_total counter" in lines
    assert 'haneul_agent_passes_total{daemon="odd\\"name"} 3' in lines
    assert 'haneul_agent_pass_failures_total{daemon="odd\\"name"} 1' in lines
    assert 'haneul_daemon_last_pass{daemon="odd\\"name",counter="calls"} 3' in lines
    assert 'haneul_daemon_total{daemon="odd\\"name",counter="calls"} 4' in lines
    assert 'haneul_daemon_total{daemon="odd\\"name",counter="rows"} 4' in lines
    assert "note" not in text
    for line in lines:
        assert line.startswith("#") or line.startswith("haneul_")
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_metrics_endpoint_serves_prometheus_text():
    run = DaemonRun("fake", FakeDaemon(), 1)
    agent = Agent([run])
    ports = queue.Queue()
    done = threading.Event()

    def serve():  # the agent's own OS thread, with its own event hub
        _thread, port = serve_metrics(agent, "127.0.0.1", 0)
        agent.run_once()
        ports.put(port)
        while not done.is_set():
            concurrency.sleep(0.01)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = ports.get(timeout=5)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
        assert 'haneul_agent_passes_total{daemon="fake"} 1' in body
        conn.request("GET", "/other")
        other = conn.getresponse()
        other.read()
        assert other.status == 404
        conn.close()
    finally:
        done.set()
        thread.join(5)


# -- config ---------------------------------------------------------------------------


def write_conf(tmp_path, text):
    path = tmp_path / "storage.conf"
    path.write_text(text)
    return str(path)


CONF = """
[DEFAULT]
devices = /srv/node
conn_timeout = 1
[container]
port = 7001
conn_timeout = 0.25
[container-replicator]
per_diff = 50
interval = 12
[account]
port = 7002
[agent]
interval = 99
metrics_port = 9100
daemons = container-replicator, account-reaper
"""


def test_daemon_conf_layers_default_server_and_own_section(tmp_path):
    sections = daemon.read_sections(write_conf(tmp_path, CONF))
    conf = daemon.daemon_conf(sections, "container-replicator")
    assert conf["devices"] == "/srv/node"
    assert conf["conn_timeout"] == "0.25"  # the server's section beats DEFAULT
    assert conf["per_diff"] == "50"
    assert conf["port"] == "7001"
    assert (conf["object_port"], conf["account_port"]) == ("6200", "7002")
    reaper = daemon.daemon_conf(sections, "account-reaper")
    assert reaper["port"] == "7002" and reaper["conn_timeout"] == "1"
    assert daemon.daemon_interval(sections, "container-replicator") == 12
    assert daemon.daemon_interval(sections, "account-reaper") == 99
    options = daemon.agent_options(sections)
    assert options["daemons"] == ["container-replicator", "account-reaper"]
    assert options["metrics_port"] == 9100


def test_single_port_node_puts_every_daemon_on_the_storage_port(tmp_path):
    sections = daemon.read_sections(
        write_conf(tmp_path, "[storage]\nsingle_port = true\nport = 6300\n[object]\nport = 1\n")
    )
    for name in daemon.DAEMON_NAMES:
        assert daemon.daemon_conf(sections, name)["port"] == "6300"
    assert daemon.daemon_interval(sections, "account-reaper") == 3600
    assert daemon.agent_options(sections)["metrics_port"] is None


def test_unknown_daemon_names_are_a_config_error():
    assert daemon.parse_names("all") == list(daemon.DAEMON_NAMES)
    assert daemon.parse_names("account-reaper,object-auditor") == [
        "object-auditor",
        "account-reaper",
    ]
    with pytest.raises(ConfigError, match="bogus"):
        daemon.parse_names("bogus")


def test_daemon_class_found_by_name_when_the_class_name_differs(monkeypatch):
    spec = daemon.DaemonSpec("fake-daemon", __name__, "NotHere", "object", 1)
    monkeypatch.setitem(daemon.REGISTRY, "fake-daemon", spec)
    assert daemon.load_class("fake-daemon") is NamedFake
    missing = daemon.DaemonSpec("gone-daemon", "no_such_module_here", "X", "object", 1)
    monkeypatch.setitem(daemon.REGISTRY, "gone-daemon", missing)
    with pytest.raises(daemon.DaemonUnavailable, match="cannot import"):
        daemon.load_class("gone-daemon")


class NamedFake:
    name = "fake-daemon"

    def run_once(self, devices=None):
        return {}


def test_local_devices_are_the_rings_devices_on_this_address_and_port(tmp_path):
    devs = [
        {"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": 7001, "device": "a"},
        {"id": 1, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": 7002, "device": "b"},
        {"id": 2, "region": 1, "zone": 1, "ip": "10.9.9.9", "port": 7001, "device": "c"},
        {"id": 3, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": 7001, "device": "d"},
    ]
    path = tmp_path / "container.ring.gz"
    RingData(0, devs, [array("H", [0]), array("H", [1])]).save(path)
    ring = Ring(path, hash_secrets=HashSecrets("p", "s"))
    for name in "abc":
        os.makedirs(tmp_path / "srv" / name)  # no directory for "d": not here
    conf = {"devices": str(tmp_path / "srv"), "port": "7001", "bind_ip": "127.0.0.1"}
    assert sorted(daemon.local_devices(ring, conf)) == ["a"]
    assert daemon.local_devices(ring, conf, only=["b"]) == {}
    assert "127.0.0.1" in daemon.my_ips("0.0.0.0")
