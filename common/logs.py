"""Logging for servers: where log lines go, and the one line written per request.

``setup_logging`` points the ``haneul`` loggers at stderr (the default: a supervisor
or journald collects it) or at syslog. ``RequestLog`` wraps any WSGI app and writes,
once the response has been sent::

    127.0.0.1 PUT /sdb1/123/AUTH_test/c/o 201 0 16777216 0.0842 tx5f1c...-0065a1b2c3

that is: client, method, path (as sent, still percent-encoded), status, bytes sent,
bytes received, seconds, transaction id (the response's ``X-Trans-Id``, or ``-``).
"""

import logging
import logging.handlers
import sys
import time

from common.config import ConfigError

LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s: %(message)s"
SYSLOG_FORMAT = "%(name)s[%(process)d] %(levelname)s: %(message)s"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LEVELS.update({"error": logging.ERROR, "critical": logging.CRITICAL})


def parse_level(value):
    """``log_level`` as a logging level; unknown names are a ConfigError."""
    level = LEVELS.get(str(value).strip().lower())
    if level is None:
        raise ConfigError(f"log_level must be one of {', '.join(LEVELS)}, got {value!r}")
    return level


def setup_logging(level="info", syslog_address="", stream=None):
    """Send every ``haneul.*`` logger to stderr (or syslog) at ``level``; returns the root.

    Calling it again replaces the handler, so a reloaded config takes effect.
    """
    root = logging.getLogger("haneul")
    root.setLevel(parse_level(level) if isinstance(level, str) else level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if syslog_address:
        address = syslog_address
        if ":" in syslog_address and not syslog_address.startswith("/"):
            host, _, port = syslog_address.rpartition(":")
            address = (host, int(port))
        handler = logging.handlers.SysLogHandler(address=address)
        handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.propagate = False
    return root


def get_logger(name):
    """The logger for one part of the system: ``get_logger("object")`` → ``haneul.object``."""
    return logging.getLogger(name if name.startswith("haneul") else f"haneul.{name}")


class RequestLog:
    """WSGI middleware writing one line per request to ``logger`` at INFO.

    The line is written when the response body has been sent (or the app failed), so the
    duration covers the whole exchange. Errors raised by the app while it streams a body
    are logged with their traceback (they are bugs: expected errors are HTTP answers).
    """

    def __init__(self, app, logger):
        self.app = app
        self.logger = logger

    def __call__(self, environ, start_response):
        record = _Exchange(self.logger, environ)

        def logging_start_response(status, headers, exc_info=None):
            record.status = status.split(" ", 1)[0]
            for key, value in headers:
                if len(key) == 10 and key.lower() == "x-trans-id":
                    record.trans_id = value
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, logging_start_response)
        except Exception:
            record.status = "500"
            record.finish()
            raise
        if isinstance(body, (list, tuple)):
            return _LoggedList(body, record)
        return _LoggedBody(body, record)


class _Exchange:
    """What the request log line needs to know about one request."""

    __slots__ = ("logger", "environ", "start", "status", "trans_id", "sent", "logged")

    def __init__(self, logger, environ):
        self.logger = logger
        self.environ = environ
        self.start = time.monotonic()
        self.status = "-"
        self.trans_id = environ.get("HTTP_X_TRANS_ID") or "-"
        self.sent = 0
        self.logged = False

    def finish(self):
        if self.logged:
            return
        self.logged = True
        env = self.environ
        path = env.get("RAW_PATH_INFO") or env.get("PATH_INFO", "")
        query = env.get("QUERY_STRING")
        if query:
            path = f"{path}?{query}"
        # The runner's guarded input counts what was read; else trust Content-Length.
        received = getattr(env.get("haneul.client_input"), "bytes_read", None)
        if received is None:
            received = env.get("CONTENT_LENGTH") or 0
        self.logger.info(
            "%s %s %s %s %d %s %.4f %s",
            env.get("REMOTE_ADDR", "-"),
            env.get("REQUEST_METHOD", "-"),
            path,
            self.status,
            self.sent,
            received,
            time.monotonic() - self.start,
            self.trans_id,
        )


class _LoggedBody:
    """The app's response body, counted as it is sent; logs the line on ``close``."""

    __slots__ = ("body", "record")

    def __init__(self, body, record):
        self.body = body
        self.record = record

    def __iter__(self):
        record = self.record
        try:
            for chunk in self.body:
                record.sent += len(chunk)
                yield chunk
        except Exception:
            record.logger.exception(
                "error while sending the body of %s %s (%s)",
                record.environ.get("REQUEST_METHOD"),
                record.environ.get("PATH_INFO"),
                record.trans_id,
            )
            raise

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.record.finish()


class _LoggedList(_LoggedBody):
    """A body that is a list of chunks: it keeps its length (the server may use it)."""

    __slots__ = ()

    def __len__(self):
        return len(self.body)

    def __iter__(self):
        return iter(self.body)

    def close(self):
        self.record.sent = sum(map(len, self.body))
        super().close()
