"""The proxy's WSGI middlewares, each a module with ``filter_factory(global_conf, local_conf)``.

``proxy.pipeline`` builds the chain from ``proxy.conf``. A filter's own section options
arrive in ``local_conf``, the ``[DEFAULT]`` ones in ``global_conf``; ``filter_conf``
merges them (section wins) and ``check_options`` refuses options a filter does not know,
so a typo in ``proxy.conf`` stops the proxy instead of being ignored.
"""

from common.config import ConfigError


def filter_conf(global_conf, local_conf):
    """One dict of a filter's settings: ``[DEFAULT]`` overlaid with its own section."""
    conf = dict(global_conf or {})
    conf.update(local_conf or {})
    return conf


def check_options(local_conf, known, prefixes=()):
    """Raise ConfigError naming any option in ``local_conf`` that the filter doesn't read."""
    unknown = sorted(
        name
        for name in (local_conf or {})
        if name not in known and not any(name.startswith(prefix) for prefix in prefixes)
    )
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        allowed = ", ".join(sorted(known) + [f"{prefix}*" for prefix in prefixes])
        raise ConfigError(f"unknown option {names} (known: {allowed})")
