"""``haneul serve KIND -c CONF``: run servers in the foreground.

- ``storage`` runs a node's object, container and account apps in one set of processes:
  three ports by default (``[object] port = 6200``, ``[container] port = 6201``,
  ``[account] port = 6202``), or one port for all (``[storage] single_port = true``,
  ``[storage] port``) with requests routed by path (``common.router``).
- ``object``, ``container``, ``account`` run one app alone, on its section's port.
- ``proxy`` runs the proxy pipeline of a ``proxy.conf`` (``proxy.pipeline``), on
  ``[DEFAULT] bind_ip:bind_port``; its ``proxy_logging`` filter logs the requests, so the
  runner's own request line is off unless ``log_requests = true``.
- ``agent`` runs the node's background daemons (``cli.agent``: replicators, auditor,
  updaters, expirer, reaper) until stopped.

Each app's options are ``[DEFAULT]`` overlaid with its own section; the server options
(``bind_ip``, ``workers``, ``max_clients``...) come from ``[DEFAULT]`` and ``[storage]``
(or the app's section when it runs alone). See ``etc/storage.conf`` for every option.
A bad or missing config, or a port already in use, is one line on stderr and exit 2.
"""

import argparse
import importlib
import logging
import os
import sys

from common.config import ConfigError, config_true, haneul_conf_path, read_conf

DEFAULT_CONF = "/etc/haneul/storage.conf"
APP_KINDS = ("object", "container", "account")
DEFAULT_PORTS = {"object": "6200", "container": "6201", "account": "6202", "storage": "6200"}
APP_CLASSES = {
    "object": ("object_server.server", "ObjectApp"),
    "container": ("container_server.server", "ContainerApp"),
    "account": ("account_server.server", "AccountApp"),
}
EXIT_ERROR = 2


class NodePlan:
    """What ``haneul serve`` will run: listeners (with app factories) and server options."""

    def __init__(self, listeners, options, log_level, log_address, devices_roots=()):
        self.listeners = listeners
        self.options = options
        self.log_level = log_level
        self.log_address = log_address
        self.devices_roots = devices_roots


def section(parser, name):
    """A section's options over ``[DEFAULT]``, as a plain dict of strings."""
    if parser.has_section(name):
        return dict(parser.items(name))
    return dict(parser.defaults())


def load_cluster(defaults):
    """The hash secrets and storage policies of the cluster's haneul.conf.

    ``haneul_conf`` in ``[DEFAULT]`` overrides ``$HANEUL_CONF``; the choice is exported
    to the environment so that anything in the apps reading haneul.conf reads the same.
    """
    from common.hashing import load_hash_secrets
    from common.policies import load_policies

    path = defaults.get("haneul_conf", "").strip() or haneul_conf_path()
    os.environ["HANEUL_CONF"] = path
    return load_hash_secrets(path), load_policies(path)


def app_factory(kind, conf, secrets, policies):
    """A callable building a fresh ``kind`` app (one per worker process)."""
    module_name, class_name = APP_CLASSES[kind]
    try:
        app_class = getattr(importlib.import_module(module_name), class_name)
    except ImportError as err:  # an install that predates the package: reinstall
        raise ConfigError(f"cannot load the {kind} app: {err} (pip install -e .?)") from None
    logger = logging.getLogger(f"haneul.{kind}")
    kwargs = {"logger": logger, "hash_secrets": secrets}
    if kind == "object":
        kwargs["policies"] = policies

    def make():
        return app_class(conf, **kwargs)

    return make


def load_plan(conf_path, kind):
    """Read ``conf_path`` and build what ``haneul serve kind`` runs; ConfigError if bad.

    Every app is built once here, so that a bad option fails now (naming its file and
    section) rather than in a worker; the workers build their own.
    """
    from common.logs import parse_level
    from common.router import NodeRouter
    from common.wsgi import Listener, ServerOptions

    if kind == "proxy":
        return load_proxy_plan(conf_path)
    parser = read_conf(conf_path)
    secrets, policies = load_cluster(dict(parser.defaults()))
    kinds = APP_KINDS if kind == "storage" else (kind,)
    factories = {}
    devices_roots = set()
    for name in kinds:
        conf = section(parser, name)
        with _blame(conf_path, name):
            factories[name] = app_factory(name, conf, secrets, policies)
            factories[name]()  # fail now on a bad option
        devices_roots.add(conf.get("devices", "/srv/node"))

    server_conf = section(parser, kind)
    with _blame(conf_path, kind):
        options = ServerOptions(server_conf)
        log_level = parse_level(server_conf.get("log_level", "info"))
        log_address = server_conf.get("log_address", "").strip()
        if kind != "storage":
            port = server_conf.get("port", DEFAULT_PORTS[kind])
            listeners = [Listener(kind, port, factories[kind], is_factory=True)]
        elif config_true(server_conf.get("single_port", "false")):
            port = server_conf.get("port", DEFAULT_PORTS["storage"])
            make = _router_factory(NodeRouter, factories)
            listeners = [Listener("storage", port, make, is_factory=True)]
        else:
            listeners = []
            for name in APP_KINDS:
                app_conf = section(parser, name)
                port = app_conf.get("port", DEFAULT_PORTS[name])
                bind_ip = options.bind_ip  # unless the app's own section names another
                if app_conf.get("bind_ip") != parser.defaults().get("bind_ip"):
                    bind_ip = app_conf["bind_ip"].strip() or options.bind_ip
                listeners.append(Listener(name, port, factories[name], bind_ip, is_factory=True))
        _check_distinct_ports(listeners, options.bind_ip)
    return NodePlan(listeners, options, log_level, log_address, sorted(devices_roots))


class _blame:
    """Prefix a ConfigError raised inside with the config file and section it came from."""

    def __init__(self, conf_path, section_name):
        self.where = f"{conf_path} [{section_name}]"

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, _tb):
        if exc_type is not None and issubclass(exc_type, ConfigError):
            raise ConfigError(f"{self.where}: {exc}") from None
        return False


def load_proxy_plan(conf_path):
    """What ``haneul serve proxy`` runs: the pipeline of ``conf_path`` on one listener."""
    from common.logs import parse_level
    from common.wsgi import Listener, ServerOptions
    from proxy.pipeline import build_pipeline, load_server_conf

    conf = load_server_conf(conf_path)  # ConfigErrors name the file and section
    build_pipeline(conf_path)  # fail now on a bad filter or app option
    with _blame(conf_path, "DEFAULT"):
        server_conf = {key: str(value) for key, value in conf.items()}
        server_conf.setdefault("log_requests", "false")  # proxy_logging logs each request
        options = ServerOptions(server_conf)
        listener = Listener(
            "proxy",
            conf["bind_port"],
            lambda: build_pipeline(conf_path),
            bind_ip=conf["bind_ip"],
            is_factory=True,
        )
        log_level = parse_level(conf["log_level"])
    return NodePlan([listener], options, log_level, conf.get("log_address", "").strip())


def _router_factory(router_class, factories):
    def make():
        return router_class(factories["object"](), factories["container"](), factories["account"]())

    return make


def _check_distinct_ports(listeners, default_ip):
    seen = {}
    for listener in listeners:
        key = (listener.bind_ip or default_ip, listener.port)
        if listener.port and key in seen:
            raise ConfigError(
                f"{seen[key]} and {listener.name} both use port {listener.port}; "
                "give each its own port or set single_port = true in [storage]"
            )
        seen[key] = listener.name


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="haneul serve",
        description="Run servers in the foreground (SIGTERM stops, SIGHUP reloads).",
    )
    parser.add_argument(
        "kind",
        choices=("storage", *APP_KINDS, "proxy", "agent"),
        help="storage (object+container+account), one app alone, proxy or agent",
    )
    parser.add_argument(
        "-c", "--conf", default=DEFAULT_CONF, help=f"config file (default {DEFAULT_CONF})"
    )
    return parser.parse_args(argv)


def main(argv):
    """Run the server; returns the exit code (0 after a graceful stop, 2 on bad config)."""
    args = parse_args(argv)  # argparse exits 2 itself on bad arguments
    prog = f"haneul serve {args.kind}"
    if args.kind == "agent":
        from cli.agent import serve_agent

        return serve_agent(args.conf)

    from common.wsgi import prepare_process

    prepare_process()  # before any app module is imported: every socket is green

    from common.logs import setup_logging
    from common.wsgi import serve

    setup_logging("info")
    try:
        plan = load_plan(args.conf, args.kind)
        setup_logging(plan.log_level, plan.log_address)
        for root in plan.devices_roots:
            if not os.path.isdir(root):
                logging.getLogger("haneul.serve").warning("devices root %s is missing", root)
        return serve(
            plan.listeners, plan.options, reload_check=lambda: load_plan(args.conf, args.kind)
        )
    except ConfigError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as err:  # e.g. a log socket that cannot be opened, an unreadable dir
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_ERROR
