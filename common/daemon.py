"""The agent: a storage node's background daemons in one process, each on its own interval.

A daemon is a class built as ``Daemon(conf, logger=None)`` (``conf`` a dict of strings)
whose ``run_once(devices=None)`` makes one pass over the node (or over the named devices)
and returns a dict of counters. The registry below names each daemon by the module and
class that implement it; modules are imported only when a daemon is wanted.

Each daemon's config is ``[DEFAULT]``, overlaid with its server's section (``[object]``,
``[container]`` or ``[account]``), overlaid with its own section (``[container-replicator]``
...) of the node's storage.conf, plus ``port`` (its server's port, ``[storage] port``
when ``single_port``) and ``object_port``/``container_port``/``account_port``. The agent's
own options are in ``[agent]``.

``Agent.run_forever`` runs every daemon in its own green thread: a pass, then a sleep so
that passes start ``interval`` seconds apart, give or take ``jitter`` (so that the nodes
of a cluster drift apart rather than all replicate at once). An exception in a pass is
logged and counted; the daemon runs again next interval. ``/metrics`` on ``metrics_port``
shows each daemon's counters in the Prometheus text format.
"""

import configparser
import importlib
import json
import logging
import os
import random
import socket
import time
import warnings
from urllib.parse import urlencode

from common import concurrency
from common.config import ConfigError, config_float, config_int

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet's maintenance-mode notice (DESIGN 9)
    import eventlet
    import eventlet.wsgi


class DaemonSpec:
    """One registered daemon: where its class lives, its server section, its interval."""

    __slots__ = ("name", "module", "class_name", "section", "interval", "rings")

    def __init__(self, name, module, class_name, section, interval, rings=None):
        self.name = name
        self.module = module
        self.class_name = class_name
        self.section = section
        self.interval = interval
        self.rings = rings or {}  # constructor keyword -> ring name under ring_dir


# In the order one ``--once`` pass runs them: updates reach the containers before the
# containers replicate and report to the accounts, and the expirer finds its queue
# containers listed in the account.
SPECS = (
    DaemonSpec("object-auditor", "object_server.auditor", "ObjectAuditor", "object", 30),
    DaemonSpec("object-replicator", "object_server.replicator", "ObjectReplicator", "object", 30),
    DaemonSpec(
        "object-reconstructor",
        "object_server.reconstructor",
        "ObjectReconstructor",
        "object",
        30,
    ),
    DaemonSpec("object-updater", "object_server.updater", "ObjectUpdater", "object", 300),
    DaemonSpec(
        "container-replicator",
        "container_server.replicator",
        "ContainerReplicator",
        "container",
        30,
    ),
    DaemonSpec(
        "container-updater",
        "container_server.updater",
        "ContainerUpdater",
        "container",
        300,
        rings={"account_ring": "account"},
    ),
    DaemonSpec(
        "account-replicator", "account_server.replicator", "AccountReplicator", "account", 30
    ),
    DaemonSpec("object-expirer", "object_server.expirer", "ObjectExpirer", "object", 300),
    DaemonSpec("account-reaper", "account_server.reaper", "AccountReaper", "account", 3600),
)
REGISTRY = {spec.name: spec for spec in SPECS}
DAEMON_NAMES = tuple(spec.name for spec in SPECS)
DEFAULT_PORTS = {"object": "6200", "container": "6201", "account": "6202"}
WILDCARD_IPS = frozenset(("", "0.0.0.0", "::", "*"))
AGENT_DEFAULTS = {"daemons": "all", "jitter": "0.1", "metrics_ip": "127.0.0.1"}


class DaemonUnavailable(Exception):
    """A daemon's module or class cannot be loaded (not written yet, or broken)."""


# -- finding and building daemons ------------------------------------------------------


def load_class(name):
    """The class implementing daemon ``name``; DaemonUnavailable if it cannot be found.

    The registered class name is tried first; otherwise any class of the module whose
    ``name`` attribute is the daemon's name and that has ``run_once``.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        raise DaemonUnavailable(f"unknown daemon {name!r} (known: {', '.join(DAEMON_NAMES)})")
    try:
        module = importlib.import_module(spec.module)
    except ImportError as err:
        raise DaemonUnavailable(f"{name}: cannot import {spec.module}: {err}") from None
    found = getattr(module, spec.class_name, None)
    if isinstance(found, type) and hasattr(found, "run_once"):
        return found
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and getattr(value, "name", None) == name
            and hasattr(value, "run_once")
        ):
            return value
    raise DaemonUnavailable(f"{name}: no daemon class in {spec.module}")


def build_daemon(name, conf, logger=None):
    """An instance of daemon ``name`` for ``conf`` (see ``daemon_conf``)."""
    cls = load_class(name)
    kwargs = {}
    ring_dir = conf.get("ring_dir", "/etc/haneul")
    for keyword, ring_name in REGISTRY[name].rings.items():
        path = os.path.join(ring_dir, f"{ring_name}.ring.gz")
        if os.path.exists(path):
            kwargs[keyword] = path
    return cls(conf, logger=logger or logging.getLogger(f"haneul.{name}"), **kwargs)


def parse_names(text):
    """Daemon names from ``a,b c`` or ``all``; ConfigError naming an unknown one."""
    names = [n for n in text.replace(",", " ").split() if n]
    if not names or names == ["all"]:
        return list(DAEMON_NAMES)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ConfigError(
            f"unknown daemon(s) {', '.join(unknown)}; known: {', '.join(DAEMON_NAMES)}"
        )
    return [n for n in DAEMON_NAMES if n in names]


# -- configuration -----------------------------------------------------------------------


def read_sections(path):
    """{section: {option: value}} with each section's own options only ("DEFAULT" too)."""
    parser = configparser.ConfigParser(default_section="\x00none", interpolation=None)
    try:
        with open(path, encoding="utf-8") as fp:
            parser.read_file(fp)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except configparser.Error as err:
        raise ConfigError(f"malformed config file {path}: {err}") from None
    return {name: dict(parser.items(name)) for name in parser.sections()}


def server_ports(sections):
    """{"object": port, "container": ..., "account": ...} as the node's servers listen."""
    storage = {**sections.get("DEFAULT", {}), **sections.get("storage", {})}
    single = storage.get("single_port", "false").strip().lower() in ("1", "true", "yes", "on")
    ports = {}
    for kind, default in DEFAULT_PORTS.items():
        if single:
            ports[kind] = storage.get("port", "6200")
        else:
            ports[kind] = sections.get(kind, {}).get("port", default)
    return ports


def daemon_conf(sections, name):
    """The conf dict daemon ``name`` is built with (see the module doc)."""
    spec = REGISTRY[name]
    conf = dict(sections.get("DEFAULT", {}))
    conf.update(sections.get(spec.section, {}))
    conf.update(sections.get(name, {}))
    ports = server_ports(sections)
    for kind, port in ports.items():
        conf.setdefault(f"{kind}_port", port)
    conf["port"] = ports[spec.section]
    return conf


def daemon_interval(sections, name):
    """Seconds between the starts of two passes of ``name``."""
    own = sections.get(name, {}).get("interval")
    agent = sections.get("agent", {}).get("interval")
    value = own or agent or REGISTRY[name].interval
    return config_float(value, f"{name} interval", minimum=0.01)


def agent_options(sections):
    """The ``[agent]`` options over ``[DEFAULT]`` (only the agent's names are read)."""
    merged = dict(AGENT_DEFAULTS)
    defaults = sections.get("DEFAULT", {})
    for key in ("metrics_port", "metrics_ip"):
        if key in defaults:
            merged[key] = defaults[key]
    merged.update(sections.get("agent", {}))
    port = merged.get("metrics_port", "").strip()
    return {
        "daemons": parse_names(merged["daemons"]),
        "jitter": min(config_float(merged["jitter"], "jitter", minimum=0), 1.0),
        "metrics_ip": merged["metrics_ip"].strip(),
        "metrics_port": config_int(port, "metrics_port", minimum=0) if port else None,
    }


# -- which devices are this node's -----------------------------------------------------


def my_ips(bind_ip=""):
    """The addresses this node is known by in the rings: ``bind_ip``, or every local one."""
    bind_ip = (bind_ip or "").strip()
    if bind_ip not in WILDCARD_IPS:
        return {bind_ip}
    ips = {"127.0.0.1", "::1"}
    try:
        ips.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    # The source address towards other hosts (connecting a UDP socket sends nothing).
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                ips.add(sock.getsockname()[0])
        except OSError:
            pass
    return ips


def local_devices(ring, conf, only=None):
    """{device name: ring device} of this node: the ring's devices on this node's address
    and ``port`` whose directory is under ``devices`` (a mount point if ``mount_check``)."""
    root = conf.get("devices", "/srv/node")
    mount_check = conf.get("mount_check", "false").strip().lower() in ("1", "true", "yes", "on")
    port = int(conf.get("port", "0"))
    ips = my_ips(conf.get("ring_ip") or conf.get("bind_ip", ""))
    found = {}
    for dev in ring.devs:
        if dev is None or int(dev["port"]) != port or dev["ip"] not in ips:
            continue
        if only is not None and dev["device"] not in only:
            continue
        path = os.path.join(root, dev["device"])
        if os.path.ismount(path) if mount_check else os.path.isdir(path):
            found[dev["device"]] = dev
    return found


def load_ring(conf, ring_name, hash_secrets=None):
    """The ring ``<ring_dir>/<ring_name>.ring.gz``; ConfigError if it is missing."""
    from ring.ring import Ring  # only daemons that need a ring load one

    ring_dir = conf.get("ring_dir", "/etc/haneul")
    path = os.path.join(ring_dir, f"{ring_name}.ring.gz")
    if not os.path.exists(path):
        raise ConfigError(f"ring file not found: {path} (ring_dir = {ring_dir})")
    return Ring(path, hash_secrets=hash_secrets)


def hash_secrets_of(conf):
    """The cluster's hash secrets: ``haneul_conf`` of the conf, else $HANEUL_CONF."""
    from common.hashing import load_hash_secrets

    return load_hash_secrets(conf.get("haneul_conf", "").strip() or None)


class RingCache:
    """The rings a daemon asks for by name (``account``, ``object-1``...), each loaded once.

    ``rings`` preloads some (tests hand in their own); the hash secrets are read on the
    first ring loaded."""

    def __init__(self, conf, rings=None):
        self.conf = conf
        self._rings = dict(rings or {})
        self._secrets = None

    def __call__(self, name):
        if name not in self._rings:
            if self._secrets is None:
                self._secrets = hash_secrets_of(self.conf)
            self._rings[name] = load_ring(self.conf, name, self._secrets)
        return self._rings[name]


# -- the loop ----------------------------------------------------------------------------


class DaemonRun:
    """One daemon in the agent, with what its passes did."""

    def __init__(self, name, daemon, interval):
        self.name = name
        self.daemon = daemon
        self.interval = interval
        self.passes = 0
        self.failures = 0
        self.last = {}
        self.totals = {}
        self.last_duration = 0.0
        self.last_end = 0.0

    def record(self, counters, duration, failed):
        self.passes += 1
        self.failures += 1 if failed else 0
        self.last_duration = duration
        self.last_end = time.time()
        self.last = {k: v for k, v in (counters or {}).items() if _is_number(v)}
        for key, value in self.last.items():
            self.totals[key] = self.totals.get(key, 0) + value


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


class Agent:
    """Runs daemons on their intervals in green threads (``run_forever``) or once each."""

    def __init__(self, runs, jitter=0.1, logger=None):
        self.runs = list(runs)
        self.jitter = jitter
        self.logger = logger or logging.getLogger("haneul.agent")
        self._stopping = concurrency.Event()
        self._threads = []

    def run_pass(self, run, devices=None):
        """One pass of one daemon: its counters, or None if it raised (logged)."""
        started = time.monotonic()
        try:
            counters = run.daemon.run_once(devices=devices)
        except Exception:
            self.logger.exception("%s: pass failed", run.name)
            run.record(None, time.monotonic() - started, failed=True)
            return None
        run.record(counters, time.monotonic() - started, failed=False)
        self.logger.info(
            "%s pass done in %.2fs: %s",
            run.name,
            run.last_duration,
            " ".join(f"{key}={value}" for key, value in run.last.items()),
        )
        return counters or {}

    def run_once(self, devices=None):
        """One pass of every daemon in turn: {name: counters or None}."""
        return {run.name: self.run_pass(run, devices) for run in self.runs}

    def _loop(self, run):
        delay = random.uniform(0, run.interval * self.jitter)
        while not self._wait(delay):
            started = time.monotonic()
            self.run_pass(run)
            spread = random.uniform(1 - self.jitter, 1 + self.jitter)
            delay = max(run.interval * spread - (time.monotonic() - started), 0)

    def _wait(self, seconds):
        """Sleep (green) up to ``seconds``; True if the agent is stopping."""
        if seconds <= 0:
            concurrency.sleep(0)
            return self._stopping.ready()
        return self._stopping.wait(seconds) is not None or self._stopping.ready()

    def start(self):
        """Start every daemon's loop in its own green thread."""
        for run in self.runs:
            self._threads.append(concurrency.spawn(self._loop, run))

    def wait(self):
        """Block (green) until ``stop`` is called and every loop has ended its pass."""
        self._stopping.wait()
        for thread in self._threads:
            thread.wait()

    def run_forever(self):
        self.start()
        self.wait()

    def stop(self):
        """Stop after the passes running now (a loop waiting for its next pass stops)."""
        if not self._stopping.ready():
            self._stopping.send(True)


# -- /metrics ----------------------------------------------------------------------------


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value):
    return repr(float(value)) if isinstance(value, float) else str(value)


def render_metrics(runs):
    """The agent's counters in the Prometheus text exposition format (version 0.0.4)."""
    families = (
        ("haneul_agent_passes_total", "counter", "Passes each daemon has run.", "passes"),
        (
            "haneul_agent_pass_failures_total",
            "counter",
            "Passes that ended with an exception.",
            "failures",
        ),
        (
            "haneul_agent_last_pass_duration_seconds",
            "gauge",
            "How long the last pass took.",
            "last_duration",
        ),
        (
            "haneul_agent_last_pass_end_timestamp_seconds",
            "gauge",
            "When the last pass ended (Unix time).",
            "last_end",
        ),
    )
    lines = []
    for metric, kind, text, attr in families:
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}"]
        for run in runs:
            lines.append(f'{metric}{{daemon="{_label(run.name)}"}} {_number(getattr(run, attr))}')
    for metric, kind, text, attr in (
        ("haneul_daemon_last_pass", "gauge", "A daemon's counters in its last pass.", "last"),
        ("haneul_daemon_total", "counter", "A daemon's counters over every pass.", "totals"),
    ):
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}"]
        for run in runs:
            for key, value in sorted(getattr(run, attr).items()):
                labels = f'daemon="{_label(run.name)}",counter="{_label(key)}"'
                lines.append(f"{metric}{{{labels}}} {_number(value)}")
    return "\n".join(lines) + "\n"


class MetricsApp:
    """A WSGI app answering ``GET /metrics`` for an agent."""

    def __init__(self, agent):
        self.agent = agent

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/metrics" or environ["REQUEST_METHOD"] not in (
            "GET",
            "HEAD",
        ):
            start_response(
                "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")]
            )
            return [b"not found\n"]
        body = render_metrics(self.agent.runs).encode("utf-8")
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


def serve_metrics(agent, ip, port):
    """Serve ``/metrics`` in a green thread; returns (thread, the port bound)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = eventlet.listen((ip, port), family=family)
    bound = sock.getsockname()[1]
    thread = concurrency.spawn(
        eventlet.wsgi.server, sock, MetricsApp(agent), log_output=False, debug=False
    )
    return thread, bound


# -- direct requests the daemons share ---------------------------------------------------


def direct_timeouts(conf):
    """``conn_timeout``/``node_timeout`` of a daemon's conf, as keywords for its requests."""
    return {
        "conn_timeout": config_float(conf.get("conn_timeout", "0.5"), "conn_timeout", 0),
        "node_timeout": config_float(conf.get("node_timeout", "10"), "node_timeout", 0),
    }


def direct_listing(nodes, part, account, container=None, marker="", limit=1000, **timeouts):
    """One page of an account or container listing straight from its servers.

    The nodes are asked in turn until one answers 200. Returns ``(entries, headers)``,
    ``([], None)`` when the nodes that answered all said 404, or None if none answered.
    ``timeouts`` are ``conn_timeout``/``node_timeout`` for ``common.backend.request``.
    """
    from common.backend import BackendError, backend_path, request

    query = urlencode({"format": "json", "marker": marker, "limit": str(limit)})
    not_found = False
    for node in nodes:
        try:
            result = request(
                node,
                "GET",
                backend_path(part, account, container),
                {"X-Backend-Server-Type": "container" if container else "account"},
                query_string=query,
                **timeouts,
            )
        except BackendError:
            continue
        if result.status == 200:
            try:
                return json.loads(result.body), result.headers
            except ValueError:
                continue
        not_found = not_found or result.status == 404
    return ([], None) if not_found else None


def direct_request(node, method, part, names, headers, **timeouts):
    """One bodiless request to a node: its status, or None if it could not be reached."""
    from common.backend import BackendError, backend_path, request

    try:
        return request(node, method, backend_path(part, *names), headers, **timeouts).status
    except BackendError:
        return None


def direct_delete_everywhere(nodes, part, names, headers, updates, **timeouts):
    """DELETE ``names`` on every node; the statuses (None for a node not reached).

    ``updates`` is ``(kind, nodes, part)`` of the servers each DELETE should update:
    the request to the node in slot *n* carries the ``update_headers`` of slot *n*."""
    kind, update_nodes, update_part = updates
    return [
        direct_request(
            node,
            "DELETE",
            part,
            names,
            {**headers, **update_headers(kind, update_nodes, update_part, slot)},
            **timeouts,
        )
        for slot, node in enumerate(nodes)
    ]


def update_headers(kind, nodes, part, slot):
    """``X-<kind>-Host/-Partition/-Device`` naming the node a write in ``slot`` updates."""
    node = nodes[slot % len(nodes)]
    ip = f"[{node['ip']}]" if ":" in node["ip"] else node["ip"]
    return {
        f"X-{kind}-Host": f"{ip}:{node['port']}",
        f"X-{kind}-Partition": str(part),
        f"X-{kind}-Device": node["device"],
    }


def object_ring_name(policy_index):
    """The object ring of a storage policy: ``object`` or ``object-<index>``."""
    return "object" if int(policy_index) == 0 else f"object-{int(policy_index)}"
