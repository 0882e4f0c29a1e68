"""HTTP plumbing shared by every WSGI app: errors, path parsing, transaction ids.

Handlers raise ``HTTPError(status, explanation)``; ``WSGIApp`` turns it into a short
plain-text response and turns anything unexpected into a 500 that names the transaction.
Paths are decoded from the WSGI latin-1 form to ``str`` once, here, at the edge.
"""

import logging
import time
import uuid
from urllib.parse import unquote

from webob import Request, Response

from common.timestamp import InvalidTimestamp, Timestamp

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    416: "Requested Range Not Satisfiable",
    422: "Unprocessable Entity",
    499: "Client Disconnect",
    500: "Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    507: "Insufficient Storage",
}


def status_line(code):
    """``"404 Not Found"`` for 404 (our table first, for the non-standard 499)."""
    return f"{code} {STATUS_TEXT.get(code, 'Unknown')}"


class HTTPError(Exception):
    """An error answer: status code, a short explanation, and optional headers."""

    def __init__(self, status, explanation="", headers=None):
        super().__init__(f"{status} {explanation}")
        self.status = status
        self.explanation = explanation
        self.headers = headers or {}

    def response(self, request=None):
        """The plain-text response a client sees."""
        body = self.explanation or STATUS_TEXT.get(self.status, "")
        if request is not None and request.method == "HEAD":
            body = ""
        resp = Response(status=status_line(self.status), content_type="text/plain", charset="utf-8")
        resp.text = (body + "\n") if body else ""
        for key, value in self.headers.items():
            resp.headers[key] = value
        return resp


def error_response(status, explanation="", request=None, headers=None):
    """A plain-text error response without raising."""
    return HTTPError(status, explanation, headers).response(request)


# What a middleware's subrequest copies from the client's environ: the WSGI server's
# keys, the client's address, host and agent, and the transaction id.
SUBREQUEST_ENVIRON_KEYS = (
    "wsgi.version",
    "wsgi.url_scheme",
    "wsgi.errors",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "HTTP_HOST",
    "HTTP_USER_AGENT",
    "haneul.trans_id",
    "HTTP_X_TRANS_ID",
)


def header_items(environ):
    """A WSGI request's headers as ``(Name, value)`` pairs, named as webob names them.

    One pass over the environ: ``req.headers.items()`` translates every environ key once
    per header it yields, which shows on every request of every server.
    """
    items = []
    for key, value in environ.items():
        if key[:5] == "HTTP_":
            items.append((key[5:].replace("_", "-").title(), value))
        elif key == "CONTENT_TYPE":
            items.append(("Content-Type", value))
        elif key == "CONTENT_LENGTH":
            items.append(("Content-Length", value))
    return items


def iter_request_body(stream, length, chunk_size=65536):
    """Yield the ``length`` bytes of a request body in chunks of at most ``chunk_size``.

    HTTPError 408 if the sender times out, 499 if it goes away before the last byte.
    """
    remaining = length
    while remaining > 0:
        try:
            chunk = stream.read(min(chunk_size, remaining))
        except TimeoutError:
            raise HTTPError(408, "timed out reading the request body") from None
        except OSError as err:
            raise HTTPError(499, f"sender went away: {err}") from None
        if not chunk:
            raise HTTPError(499, "sender went away before the whole body")
        remaining -= len(chunk)
        yield chunk


def backend_timestamp_headers(timestamp):
    """``X-Backend-Timestamp`` of what a storage node holds (none if it holds nothing)."""
    return {"X-Backend-Timestamp": timestamp.internal} if timestamp is not None else {}


def new_trans_id(suffix=""):
    """A transaction id: random, with the time it started, unique across the cluster."""
    return f"tx{uuid.uuid4().hex[:21]}-{int(time.time()):010x}{suffix}"


def wsgi_path_to_str(raw_path):
    """Decode a WSGI PATH_INFO (latin-1 mapped bytes) into a UTF-8 ``str``."""
    try:
        return raw_path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise HTTPError(400, "path is not valid UTF-8") from None


def split_path(path, minsegs=1, maxsegs=None, rest_with_last=False):
    """Split ``/a/b/c`` into segments, checking there are between min and max of them.

    With ``rest_with_last`` the last segment keeps any further slashes (object names).
    Missing optional segments are None. Bad paths raise HTTPError(400).
    """
    maxsegs = maxsegs or minsegs
    if not path.startswith("/"):
        raise HTTPError(400, f"invalid path: {path!r}")
    if rest_with_last:
        segs = path[1:].split("/", maxsegs - 1)
        count = len(segs)
        if (
            count < minsegs
            or any(not s for s in segs[:minsegs])
            or (count == maxsegs and not segs[-1] and minsegs == maxsegs)
        ):
            raise HTTPError(400, f"invalid path: {path!r}")
        # An object path may not have an empty middle segment.
        if any(not s for s in segs[1 : max(count - 1, 1)]):
            raise HTTPError(400, f"invalid path: {path!r}")
    else:
        segs = path[1:].split("/")
        if segs and segs[-1] == "" and len(segs) > minsegs:
            segs.pop()  # tolerate a trailing slash
        count = len(segs)
        if count < minsegs or count > maxsegs or any(not s for s in segs):
            raise HTTPError(400, f"invalid path: {path!r}")
    segs = [s if s else None for s in segs]
    segs += [None] * (maxsegs - len(segs))
    return segs


def request_path(req):
    """The request's path as ``str``, percent-decoding already done by the server."""
    return wsgi_path_to_str(req.environ.get("PATH_INFO", "/"))


def request_timestamp(req, header="X-Timestamp", required=True):
    """The request's ``X-Timestamp`` as a Timestamp; missing or bad is 400."""
    value = req.headers.get(header)
    if value is None:
        if required:
            raise HTTPError(400, f"missing {header}")
        return None
    try:
        return Timestamp(value)
    except InvalidTimestamp as err:
        raise HTTPError(400, f"bad {header}: {err}") from None


def quote_free(text):
    """Undo percent-encoding in a query value that arrived still encoded."""
    return unquote(text)


class WSGIApp:
    """A webob-based WSGI app that dispatches on the HTTP method.

    Subclasses define methods named for the verbs they answer (``GET``, ``PUT``, ...)
    taking a webob Request and returning a Response. ``HTTPError`` becomes its response;
    anything else becomes a logged 500 carrying the transaction id.
    """

    allowed_methods = ("GET", "HEAD", "PUT", "POST", "DELETE")
    log_name = "haneul"

    def __init__(self, logger=None):
        self.logger = logger or logging.getLogger(self.log_name)

    def __call__(self, environ, start_response):
        req = Request(environ)
        trans_id = req.headers.get("X-Trans-Id") or new_trans_id()
        environ["haneul.trans_id"] = trans_id
        try:
            resp = self.handle(req)
        except HTTPError as err:
            resp = err.response(req)
        except Exception:
            self.logger.exception(
                "unexpected error on %s %s (%s)", req.method, req.path_info, trans_id
            )
            resp = error_response(500, f"internal error, transaction {trans_id}", req)
        resp.headers["X-Trans-Id"] = trans_id
        return resp(environ, start_response)

    def handle(self, req):
        """Dispatch to the method named like the verb; 405 for verbs we don't answer."""
        if req.method not in self.allowed_methods:
            raise HTTPError(
                405, f"method {req.method} not allowed", {"Allow": ", ".join(self.allowed_methods)}
            )
        return getattr(self, req.method)(req)
