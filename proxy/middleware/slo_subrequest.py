"""Requests the SLO filter makes of the pipeline below it, as the client's user.

A subrequest inherits what auth has established on the client's environ (the user's
groups, the authorize hook, an override from a filter further out) and the transaction
id, so segments are read and written with exactly the client's rights and show up in
the logs under the client's transaction.
"""

import io
from urllib.parse import quote

from webob import Request

from common.http import SUBREQUEST_ENVIRON_KEYS

# The client's own keys, plus what auth established on its environ.
INHERITED = SUBREQUEST_ENVIRON_KEYS + (
    "HTTP_X_AUTH_TOKEN",
    "HTTP_X_STORAGE_TOKEN",
    "REMOTE_USER",
    "haneul.authorize",
    "haneul.authorize_override",
    "haneul.clean_acl",
    "haneul.reseller_request",
    "haneul.identity",
)
SOURCE_KEY = "haneul.source"


def to_wsgi(text):
    """A ``str`` as WSGI carries it: UTF-8 bytes mapped through latin-1."""
    return text.encode("utf-8").decode("latin-1")


def object_path(version, account, container, obj):
    return f"/{version}/{account}/{container}/{obj}"


class Target:
    """The object a request names: version, account, container, object (all str)."""

    __slots__ = ("version", "account", "container", "obj")

    def __init__(self, version, account, container, obj):
        self.version = version
        self.account = account
        self.container = container
        self.obj = obj

    @property
    def path(self):
        return object_path(self.version, self.account, self.container, self.obj)


def make_environ(environ, method, path, headers=None, body=None, length=None, query=None):
    """A fresh environ for ``method path`` on behalf of the request ``environ``.

    ``body`` is bytes or a file-like (then ``length`` is its size, or None for a
    chunked body). ``query`` is a dict.
    """
    env = {key: environ[key] for key in INHERITED if key in environ}
    env.update(
        {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": to_wsgi(path),
            "QUERY_STRING": "&".join(
                f"{quote(str(k), safe='')}={quote(str(v), safe='')}"
                for k, v in (query or {}).items()
            ),
            SOURCE_KEY: "SLO",
        }
    )
    for name, value in (headers or {}).items():
        if value is None:
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        env[key] = value if isinstance(value, str) else str(value)
    if body is None or isinstance(body, (bytes, bytearray)):
        body = bytes(body or b"")
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
    else:
        env["wsgi.input"] = body
        if length is None:
            env["HTTP_TRANSFER_ENCODING"] = "chunked"
        else:
            env["CONTENT_LENGTH"] = str(length)
    return env


def call(app, environ):
    """Run ``app`` on ``environ``; a webob Response whose body is still to be read."""
    return Request(environ).get_response(app)


def close_body(resp):
    """Free a response's body (its node connection) without reading it."""
    close = getattr(resp.app_iter, "close", None)
    if close is not None:
        close()


def read_body(resp, limit):
    """A response's body as bytes, at most ``limit`` of them (None if larger)."""
    parts, size = [], 0
    try:
        for chunk in resp.app_iter:
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
    finally:
        close_body(resp)
    return b"".join(parts)
