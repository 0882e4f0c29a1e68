"""One access-log line per request, written once the response body is done.

The line is logged at INFO through ``logging`` (logger ``haneul.proxy.access`` unless
``access_log_name`` says otherwise) when the body iterator runs out or is closed,
whichever comes first, so the byte counts and the duration are what really went over
the wire. Fields,
space separated, each percent-quoted so that none holds a space, ``-`` when unknown:

    client_ip remote_addr method path status bytes_in bytes_out duration_ms trans_id user_agent

``client_ip`` is the first ``X-Forwarded-For`` (or ``X-Cluster-Client-Ip``) address when
a load balancer sent one, else the peer address; ``path`` carries the query string with
signatures (``temp_url_sig``, S3 ``Signature``...) masked. A response whose body is
abandoned part way (the client went away) is logged as 499; one whose app raised, as 500.
"""

import logging
import time
from urllib.parse import quote

from proxy.middleware import check_options, filter_conf
from proxy.middleware.body import PassThroughBody

OPTIONS = {"access_log_name"}
DEFAULT_LOG_NAME = "haneul.proxy.access"
SENSITIVE_PARAMS = {"temp_url_sig", "signature", "x-amz-signature", "x-amz-security-token"}
FIELD_SAFE = "!#$&'()*+,/:;=?@[]~"


def quote_field(value):
    """A log field without spaces or control characters; ``-`` for nothing."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bytes):
        return quote(value, safe=FIELD_SAFE)
    return quote(str(value), safe=FIELD_SAFE)


def masked_query(query):
    """The raw query string with the values of signature-like parameters replaced by ``...``."""
    if not query:
        return ""
    parts = []
    for pair in query.split("&"):
        key, sep, _value = pair.partition("=")
        if sep and key.lower() in SENSITIVE_PARAMS:
            pair = f"{key}=..."
        parts.append(pair)
    return "&".join(parts)


def logged_path(environ):
    """The request path as the client sent it (quoted), with its masked query string.

    The server's ``RAW_PATH_INFO`` (still percent-encoded) is used when there is one.
    """
    raw = environ.get("RAW_PATH_INFO")
    if raw:
        path = quote(raw.encode("latin-1"), safe=FIELD_SAFE + "%")
    else:
        raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        path = quote(raw.encode("latin-1"), safe="/")
    query = masked_query(environ.get("QUERY_STRING", ""))
    if query:
        path += "?" + quote(query, safe=FIELD_SAFE + "%")
    return path


def client_ip(environ):
    """The client's address: the load balancer's word for it if present, else the peer."""
    forwarded = environ.get("HTTP_X_CLUSTER_CLIENT_IP") or environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded:
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return environ.get("REMOTE_ADDR")


class _CountingInput:
    """Wraps ``wsgi.input`` to count the request bytes the app reads."""

    def __init__(self, wrapped):
        self.wrapped = wrapped
        self.bytes_read = 0

    def read(self, *args):
        data = self.wrapped.read(*args)
        self.bytes_read += len(data)
        return data

    def readline(self, *args):
        data = self.wrapped.readline(*args)
        self.bytes_read += len(data)
        return data

    def readlines(self, *args):
        lines = self.wrapped.readlines(*args)
        self.bytes_read += sum(len(line) for line in lines)
        return lines

    def __iter__(self):
        for line in self.wrapped:
            self.bytes_read += len(line)
            yield line

    def __getattr__(self, name):
        # Server extras (eventlet's 100-continue hooks, ...) pass straight through.
        return getattr(self.wrapped, name)


class _Transaction:
    """What is known about one request while it is served."""

    def __init__(self, environ):
        self.environ = environ
        self.started = time.monotonic()
        self.status = None
        self.content_length = None
        self.bytes_out = 0
        self.input = None
        if environ.get("wsgi.input") is not None:
            self.input = _CountingInput(environ["wsgi.input"])
            environ["wsgi.input"] = self.input


class ProxyLogging:
    """WSGI filter writing the access log."""

    def __init__(self, app, conf=None, logger=None):
        conf = conf or {}
        self.app = app
        self.logger = logger or logging.getLogger(conf.get("access_log_name") or DEFAULT_LOG_NAME)

    def __call__(self, environ, start_response):
        txn = _Transaction(environ)

        def recording_start_response(status, headers, exc_info=None):
            txn.status = int(status.split(" ", 1)[0])
            txn.content_length = None
            for key, value in headers:
                if key.lower() == "content-length" and value.strip().isdigit():
                    txn.content_length = int(value)
            return start_response(status, headers, exc_info)

        try:
            app_iter = self.app(environ, recording_start_response)
        except BaseException:
            self.log(txn, 500)
            raise
        return _LoggedBody(app_iter, self, txn)

    def log(self, txn, status=None):
        """Write the access-log line for a finished transaction."""
        environ = txn.environ
        duration_ms = (time.monotonic() - txn.started) * 1000
        self.logger.info(
            "%s %s %s %s %s %d %d %.3f %s %s",
            quote_field(client_ip(environ)),
            quote_field(environ.get("REMOTE_ADDR")),
            quote_field(environ.get("REQUEST_METHOD")),
            logged_path(environ),
            status or txn.status or "-",
            txn.input.bytes_read if txn.input is not None else 0,
            txn.bytes_out,
            duration_ms,
            quote_field(environ.get("haneul.trans_id")),
            quote_field(environ.get("HTTP_USER_AGENT")),
        )


class _LoggedBody(PassThroughBody):
    """Counts the response bytes and logs the request when the server closes the body."""

    def __init__(self, app_iter, logging_filter, txn):
        super().__init__(app_iter)
        self.filter = logging_filter
        self.txn = txn
        self.exhausted = False
        self.failed = False
        self.logged = False

    def __next__(self):
        try:
            chunk = super().__next__()
        except StopIteration:
            self.exhausted = True
            self._log()
            raise
        except BaseException:
            self.failed = True
            raise
        self.txn.bytes_out += len(chunk)
        return chunk

    def close(self):
        try:
            super().close()
        finally:
            self._log()

    def _all_sent(self):
        length = self.txn.content_length
        return length is not None and self.txn.bytes_out >= length

    def _log(self):
        """Log once: when the body runs out, or when it is closed, whichever comes first."""
        if self.logged:
            return
        self.logged = True
        status = None
        if self.failed:
            status = 500
        elif self.iterator is not None and not self.exhausted and not self._all_sent():
            status = 499
        self.filter.log(self.txn, status)


def filter_factory(global_conf, local_conf):
    """``[filter:proxy_logging]``: option ``access_log_name``."""
    check_options(local_conf, OPTIONS)
    conf = filter_conf(global_conf, local_conf)

    def make_filter(app):
        return ProxyLogging(app, conf)

    return make_filter
