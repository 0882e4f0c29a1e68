"""The proxy: the WSGI app clients talk to, its controllers, and its middleware.

Middlewares that add a capability tell clients about it through ``/info``::

    from proxy import register_capability
    register_capability("tempurl", methods=["GET", "HEAD", "PUT"])

Registration is per process and idempotent (a later call replaces the section).
"""

_CAPABILITIES = {}


def register_capability(name, **values):
    """Add (or replace) the ``name`` section of ``/info``."""
    _CAPABILITIES[name] = dict(values)


def unregister_capability(name):
    """Remove a section of ``/info`` (tests, or a middleware turned off)."""
    _CAPABILITIES.pop(name, None)


def capabilities():
    """A copy of every registered section, by name."""
    return {name: dict(values) for name, values in _CAPABILITIES.items()}
