"""``haneul agent``: a storage node's background daemons (replicators, auditor, updaters,
expirer, reaper), from ``common.daemon``.

    haneul agent --once -c storage.conf [--only a,b]   one pass of each daemon, then exit
    haneul agent --once --dir DIR [--only a,b]         the same on every node of the
                                                       all-in-one cluster in DIR
    haneul agent -c storage.conf                       run them forever, each on its
                                                       interval (= haneul serve agent)

With ``--dir``, nodes come from ``DIR/cluster.json`` (``"nodes": [{"name", "conf"}]``;
without ``conf``, ``DIR/etc/<name>.conf`` or ``DIR/etc/storage-<name>.conf``), and each
daemon runs on every node before the next daemon starts, so that, say, the container
updates of every node are in before any expirer lists the queue.

Exit status: 0 when every pass ran, 1 when a pass failed or a named daemon is not
available, 2 for bad arguments or config.
"""

import argparse
import json
import logging
import os
import signal
import sys
import time

from common.config import ConfigError
from common.daemon import (
    DAEMON_NAMES,
    Agent,
    DaemonRun,
    DaemonUnavailable,
    agent_options,
    build_daemon,
    daemon_conf,
    daemon_interval,
    parse_names,
    read_sections,
)

DEFAULT_CONF = "/etc/haneul/storage.conf"
EXIT_FAILED = 1
EXIT_ERROR = 2
LOG = logging.getLogger("haneul.agent")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="haneul agent",
        description="Run a storage node's background daemons: once, or each on its interval.",
    )
    parser.add_argument("--once", action="store_true", help="one pass of each daemon, then exit")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-c", "--conf", help=f"the node's storage.conf (default {DEFAULT_CONF})")
    where.add_argument("--dir", help="every node of the all-in-one cluster in DIR (with --once)")
    parser.add_argument(
        "--only",
        default="all",
        help=f"comma-separated daemons to run (default all: {','.join(DAEMON_NAMES)})",
    )
    parser.add_argument("--devices", help="comma-separated devices to work on (default all)")
    args = parser.parse_args(argv)
    if args.dir and not args.once:
        parser.error("--dir needs --once (`haneul up` runs each node's agent itself)")
    return args


def main(argv):
    args = parse_args(argv)  # argparse exits 2 itself on bad arguments
    if not args.once:
        return serve_agent(args.conf or DEFAULT_CONF)
    from common.logs import setup_logging

    setup_logging("warning")
    try:
        names = parse_names(args.only)
        nodes = cluster_nodes(args.dir) if args.dir else [("", args.conf or DEFAULT_CONF)]
        devices = args.devices.split(",") if args.devices else None
        return run_once(nodes, names, explicit=args.only.strip() != "all", devices=devices)
    except ConfigError as err:
        print(f"haneul agent: {err}", file=sys.stderr)
        return EXIT_ERROR


def cluster_nodes(root):
    """[(name, storage.conf path)] of the all-in-one cluster in ``root``."""
    path = os.path.join(root, "cluster.json")
    try:
        with open(path, encoding="utf-8") as fp:
            info = json.load(fp)
    except FileNotFoundError:
        raise ConfigError(f"no cluster in {root} ({path} is missing; run `haneul up`)") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    nodes = []
    for node in info.get("nodes") or []:
        name = node.get("name", f"node{len(nodes) + 1}")
        candidates = [node.get("conf")] if node.get("conf") else []
        candidates += [
            os.path.join(root, "etc", f"{name}.conf"),
            os.path.join(root, "etc", f"storage-{name}.conf"),
        ]
        conf = next((c for c in candidates if os.path.exists(c)), None)
        if conf is None:
            raise ConfigError(f"no storage.conf for {name} (looked at {', '.join(candidates)})")
        nodes.append((name, conf))
    if not nodes:
        raise ConfigError(f"{path} lists no nodes")
    return nodes


def _use_cluster_conf(sections):
    """Point $HANEUL_CONF at the node's haneul.conf, for whatever reads it from there."""
    haneul_conf = sections.get("DEFAULT", {}).get("haneul_conf", "").strip()
    if haneul_conf:
        os.environ["HANEUL_CONF"] = haneul_conf


def run_once(nodes, names, explicit=False, devices=None, out=None):
    """One pass of each daemon in ``names`` on each node; returns the exit status.

    ``nodes`` is [(label, conf path)]. A daemon whose code is not there is skipped
    (noted once) unless it was asked for by name, which is a failure.
    """
    out = out or sys.stdout
    sections = {label: read_sections(path) for label, path in nodes}
    status = 0
    for name in names:
        for label, _path in nodes:
            prefix = f"{label} {name}" if label else name
            _use_cluster_conf(sections[label])
            try:
                daemon = build_daemon(name, daemon_conf(sections[label], name))
            except DaemonUnavailable as err:
                if explicit:
                    print(f"{prefix}: not available: {err}", file=out)
                    status = EXIT_FAILED
                else:
                    print(f"{name}: skipped ({err})", file=out)
                break
            except (ConfigError, ValueError) as err:
                print(f"{prefix}: cannot start: {err}", file=out)
                status = EXIT_FAILED
                continue
            run = DaemonRun(name, daemon, 0)
            counters = Agent([run], logger=LOG).run_pass(run, devices)
            if counters is None:
                print(f"{prefix}: pass failed (see the log above)", file=out)
                status = EXIT_FAILED
                continue
            shown = " ".join(f"{key}={value}" for key, value in counters.items())
            print(f"{prefix}: {shown} ({run.last_duration:.2f}s)", file=out)
    return status


def build_agent(conf_path):
    """The Agent for a node's storage.conf, and its ``[agent]`` options."""
    sections = read_sections(conf_path)
    options = agent_options(sections)
    _use_cluster_conf(sections)
    runs = []
    for name in options["daemons"]:
        try:
            daemon = build_daemon(name, daemon_conf(sections, name))
        except DaemonUnavailable as err:
            LOG.warning("%s not started: %s", name, err)
            continue
        except ValueError as err:
            raise ConfigError(f"{conf_path} [{name}]: {err}") from None
        runs.append(DaemonRun(name, daemon, daemon_interval(sections, name)))
    if not runs:
        raise ConfigError(f"{conf_path}: no daemon to run")
    return Agent(runs, jitter=options["jitter"], logger=LOG), options, sections


def serve_agent(conf_path):
    """``haneul serve agent -c CONF``: run the node's daemons until SIGTERM/SIGINT.

    Returns the exit status: 0 after a stop, 2 for a bad config.
    """
    from common import concurrency
    from common.daemon import serve_metrics
    from common.logs import setup_logging

    concurrency.patch_process()  # before any daemon opens a socket: everything green
    setup_logging("info")
    try:
        agent, options, sections = build_agent(conf_path)
        defaults = sections.get("DEFAULT", {})
        setup_logging(defaults.get("log_level", "info"), defaults.get("log_address", "").strip())
        if options["metrics_port"] is not None:
            _thread, port = serve_metrics(agent, options["metrics_ip"], options["metrics_port"])
            LOG.info("metrics on http://%s:%d/metrics", options["metrics_ip"], port)
    except (ConfigError, OSError) as err:
        print(f"haneul agent: {err}", file=sys.stderr)
        return EXIT_ERROR
    stopping = []

    def on_signal(signum):
        if stopping:
            LOG.warning("second stop signal: exiting without waiting for the passes")
            os._exit(EXIT_FAILED)
        stopping.append(signum)
        LOG.info("stopping after the passes running now")
        agent.stop()

    concurrency.on_signals((signal.SIGTERM, signal.SIGINT), on_signal)
    LOG.info(
        "agent running %s",
        ", ".join(f"{run.name} every {run.interval:g}s" for run in agent.runs),
    )
    started = time.monotonic()
    agent.run_forever()
    LOG.info("agent stopped after %.0fs", time.monotonic() - started)
    return 0
