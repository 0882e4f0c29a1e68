"""One port for a whole storage node: route backend requests to the right app by path.

``/dev/part/a`` goes to the account app, ``/dev/part/a/c`` to the container app and
``/dev/part/a/c/o`` (any deeper path: object names may hold slashes) to the object app.

Some requests between servers have the shape of another app's path, so on one port:

- ``X-Backend-Server-Type: object|container|account`` names the app outright, for any
  method. Senders of updates and replication requests should set it.
- Without it, ``REPLICATE`` and ``SSYNC`` go to the object app; a ``PUT`` of
  ``/dev/part/a/c/o`` carrying ``X-Size`` is an object server's container update and
  goes to the container app; a ``PUT`` of ``/dev/part/a/c`` carrying ``X-Put-Timestamp``
  is a container server's account report and goes to the account app. (A container
  update's ``DELETE`` looks exactly like an object ``DELETE``: it needs the header.)
"""

from common.http import error_response

SERVER_TYPE_HEADER = "HTTP_X_BACKEND_SERVER_TYPE"
REPLICATION_METHODS = frozenset(("REPLICATE", "SSYNC"))


class NodeRouter:
    """A WSGI app dispatching to the object, container and account apps of one node."""

    def __init__(self, object_app, container_app, account_app):
        self.apps = {"object": object_app, "container": container_app, "account": account_app}
        self._by_depth = {3: account_app, 4: container_app, 5: object_app}

    def route(self, environ):
        """The app for this request, or None if nothing names one."""
        kind = environ.get(SERVER_TYPE_HEADER)
        if kind is not None:
            return self.apps.get(kind.strip().lower())
        method = environ.get("REQUEST_METHOD")
        if method in REPLICATION_METHODS:
            return self.apps["object"]
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/"):
            return None
        segments = path.split("/", 5)  # ["", dev, part, a, c, o...]
        if segments[-1] == "":
            segments.pop()  # "/dev/part/a/c/" is the container: object names are never empty
        depth = min(len(segments) - 1, 5)
        if method == "PUT":
            if depth == 5 and "HTTP_X_SIZE" in environ:
                return self.apps["container"]
            if depth == 4 and "HTTP_X_PUT_TIMESTAMP" in environ:
                return self.apps["account"]
        return self._by_depth.get(depth)

    def __call__(self, environ, start_response):
        app = self.route(environ)
        if app is None:
            kind = environ.get(SERVER_TYPE_HEADER)
            reason = f"unknown server type {kind!r}" if kind else "no app for this path"
            return error_response(400, reason)(environ, start_response)
        return app(environ, start_response)
