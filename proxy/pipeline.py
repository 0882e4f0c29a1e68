"""Building the proxy's WSGI pipeline from ``proxy.conf``.

``[pipeline:main] pipeline = catch_errors healthcheck proxy_logging tempauth proxy`` names
filters (``[filter:NAME]`` sections) from the outside in, ending with the app
(``[app:NAME]``). A section's ``use`` says what to load:

- a short name from ``FILTERS`` / ``APPS`` (``use = tempauth``); without ``use``, the
  section's own name is looked up there;
- ``egg:<anything>#<short name>``, so Swift's ``use = egg:swift#tempauth`` lines work;
- ``package.module`` (its ``filter_factory`` / ``app_factory``) or ``package.module:attr``.

A filter factory is ``filter_factory(global_conf, local_conf) -> (app -> wsgi app)`` and an
app factory ``app_factory(global_conf, local_conf) -> wsgi app``; ``global_conf`` holds
``[DEFAULT]`` (plus ``__file__`` and ``here``), ``local_conf`` the section's own options
without ``use``. Option names keep their case (``user64_`` names are base64). Anything
wrong — unknown name, missing section, bad option — is one ConfigError naming the file
and section. Later filters join by adding a line to ``FILTERS`` (or by ``register``).
"""

import configparser
import importlib
import os

from common.config import ConfigError, config_int

FILTERS = {
    "catch_errors": "proxy.middleware.catch_errors:filter_factory",
    "healthcheck": "proxy.middleware.healthcheck:filter_factory",
    "proxy_logging": "proxy.middleware.proxy_logging:filter_factory",
    "tempauth": "proxy.middleware.tempauth:filter_factory",
    "s3api": "proxy.s3api:filter_factory",
    "slo": "proxy.middleware.slo:filter_factory",
}
APPS = {
    "proxy": "proxy.pipeline:app_factory",
    "proxy-server": "proxy.pipeline:app_factory",
}
PIPELINE_SECTION = "pipeline:main"
_NO_DEFAULTS = "\x00no default section"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def register(kind, name, target):
    """Add a short name: ``register("filter", "slo", "proxy.middleware.slo:filter_factory")``."""
    registry = {"filter": FILTERS, "app": APPS}[kind]
    registry[name] = target


def read_pipeline_conf(conf_path):
    """Parse proxy.conf keeping option case, with ``[DEFAULT]`` as a section of its own."""
    parser = configparser.ConfigParser(interpolation=None, default_section=_NO_DEFAULTS)
    parser.optionxform = str
    try:
        with open(conf_path, encoding="utf-8") as fp:
            parser.read_file(fp)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {conf_path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {conf_path}: {err}") from None
    except configparser.Error as err:
        raise ConfigError(f"malformed config file {conf_path}: {err}") from None
    return parser


def _section(parser, name):
    return dict(parser.items(name)) if parser.has_section(name) else {}


def global_conf_of(parser, conf_path):
    """``[DEFAULT]`` as a dict, with ``__file__`` and ``here`` as Paste gives them."""
    conf = _section(parser, "DEFAULT")
    conf.setdefault("__file__", os.path.abspath(conf_path))
    conf.setdefault("here", os.path.dirname(os.path.abspath(conf_path)))
    return conf


def resolve(use, kind, registry):
    """The ``(module, attribute)`` a ``use`` value points at; unknown names are ConfigError."""
    default_attr = f"{kind}_factory"
    if use.startswith("egg:"):
        use = use.partition("#")[2] or use
    if use in registry:
        use = registry[use]
    elif ":" not in use and "." not in use:
        known = ", ".join(sorted(registry))
        raise ConfigError(f"unknown {kind} {use!r} (known: {known}; or use = module:factory)")
    module, _, attr = use.partition(":")
    return module, attr or default_attr


def load_factory(use, kind, registry):
    """Import and return the factory a ``use`` value names."""
    module_name, attr = resolve(use, kind, registry)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"cannot import {module_name!r}: {err}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"{module_name!r} has no callable {attr!r}")
    return factory


def pipeline_names(parser, conf_path):
    """The names on the ``pipeline`` line, checked: filters first, then one app."""
    if not parser.has_section(PIPELINE_SECTION):
        raise ConfigError(f"{conf_path}: missing [{PIPELINE_SECTION}] section")
    names = parser.get(PIPELINE_SECTION, "pipeline", fallback="").split()
    if not names:
        raise ConfigError(f"{conf_path}: [{PIPELINE_SECTION}] has an empty 'pipeline'")
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{conf_path}: {name!r} appears twice in the pipeline")
        seen.add(name)
    *filters, app = names
    for name in filters:
        if not parser.has_section(f"filter:{name}"):
            hint = ""
            if parser.has_section(f"app:{name}"):
                hint = " (only the last name may be an app)"
            raise ConfigError(f"{conf_path}: no [filter:{name}] section for {name!r}{hint}")
    if not parser.has_section(f"app:{app}"):
        hint = " (the last name must be an app)" if parser.has_section(f"filter:{app}") else ""
        raise ConfigError(f"{conf_path}: no [app:{app}] section for {app!r}{hint}")
    return filters, app


def _build(section, kind, registry, name, global_conf, parser, conf_path, *args):
    local_conf = _section(parser, section)
    use = local_conf.pop("use", name).strip()
    try:
        factory = load_factory(use, kind, registry)
        return factory(global_conf, local_conf, *args)
    except ConfigError as err:
        raise ConfigError(f"{conf_path} [{section}]: {err}") from None


def build_pipeline(conf_path):
    """The WSGI app that ``proxy.conf``'s ``[pipeline:main]`` describes."""
    parser = read_pipeline_conf(conf_path)
    filters, app_name = pipeline_names(parser, conf_path)
    global_conf = global_conf_of(parser, conf_path)
    # Every filter's factory runs (and checks its options) before the app is built.
    makers = []
    for name in filters:
        section = f"filter:{name}"
        maker = _build(section, "filter", FILTERS, name, global_conf, parser, conf_path)
        if not callable(maker):
            raise ConfigError(f"{conf_path} [{section}]: filter factory returned {maker!r}")
        makers.append((section, maker))
    app = _build(f"app:{app_name}", "app", APPS, app_name, global_conf, parser, conf_path)
    for section, maker in reversed(makers):
        try:
            app = maker(app)
        except ConfigError as err:
            raise ConfigError(f"{conf_path} [{section}]: {err}") from None
    return app


def app_factory(global_conf, local_conf):
    """``[app:proxy]``: the proxy app with ``[DEFAULT]`` and its section merged."""
    from proxy import server  # the proxy app is only imported when a pipeline needs it

    own_factory = getattr(server, "app_factory", None)
    if own_factory is not None:
        return own_factory(global_conf, local_conf)
    conf = dict(global_conf)
    conf.update(local_conf)
    return server.ProxyApp(conf)


def load_server_conf(conf_path):
    """What the runner needs from ``[DEFAULT]``: ``bind_ip``, ``bind_port``, ``workers``...

    Returns every ``[DEFAULT]`` option as a string, with these typed and defaulted:
    ``bind_ip`` ("0.0.0.0"), ``bind_port`` (int, 8080), ``workers`` (int; "auto" is the
    CPU count; 0 serves in the runner's own process), ``log_level`` ("INFO"), and
    ``conf_path``.
    """
    parser = read_pipeline_conf(conf_path)
    conf = _section(parser, "DEFAULT")
    try:
        conf["bind_ip"] = conf.get("bind_ip", "0.0.0.0").strip() or "0.0.0.0"
        port = config_int(conf.get("bind_port", 8080), "bind_port", minimum=0)
        if port > 65535:
            raise ConfigError(f"bind_port must be <= 65535, got {port}")
        conf["bind_port"] = port
        workers = str(conf.get("workers", "auto")).strip().lower()
        if workers == "auto":
            conf["workers"] = os.cpu_count() or 1
        else:
            conf["workers"] = config_int(workers, "workers", minimum=0)
        level = conf.get("log_level", "INFO").strip().upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        conf["log_level"] = level
    except ConfigError as err:
        raise ConfigError(f"{conf_path} [DEFAULT]: {err}") from None
    conf["conf_path"] = os.path.abspath(conf_path)
    return conf
