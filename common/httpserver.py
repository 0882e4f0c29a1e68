"""The HTTP side of the runner: eventlet's HTTP/1.1 protocol under our own accept loop.

- ``GreenServer`` serves one listening socket in one process: a green thread per
  connection (at most ``max_clients``), ``Connection: close`` and a short grace for
  just-accepted connections when it drains, and fair accepting between workers.
- ``AcceptBalance`` shares the workers' connection counts (an anonymous mmap) so that
  a burst of keep-alive connections spreads over the workers instead of landing on the
  first one awake.
- ``ServedApp`` is the app as served: the request body guarded (``ClientDisconnect``
  instead of a short read), a response body that ends short of its Content-Length
  closing the connection, then the request log line.

eventlet is imported in ``common/`` only (DESIGN 9); this module leans on the pieces of
``eventlet.wsgi`` that its own ``server()`` function uses (``Server``, its
``process_request`` and the ``[address, socket, state]`` connection lists).
"""

import errno
import logging
import mmap
import time
import warnings

from common import concurrency
from common.header_fields import (
    HeaderFields,
    MalformedHeaders,
    parse_request_line,
    read_header_fields,
)
from common.logs import RequestLog

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet's maintenance-mode notice (DESIGN 9)
    import eventlet
    import eventlet.greenio
    import eventlet.wsgi

MINIMUM_WRITE_CHUNK = 65536  # coalesce small body chunks into writes of this size
FRESH_GRACE = 0.5  # seconds a connection accepted just before a stop has to send a request
DRAIN_POLL = 0.02  # seconds between checks of a draining server's connections
MAX_ACCEPT_DEFER = 0.02  # seconds a busier worker leaves a new connection to idler ones
ACCEPT_DEFER_STEP = 0.0005
ACCEPT_RETRY = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.EAGAIN, errno.EINTR))
ACCEPT_BACKOFF = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
CLOSE_AFTER_RESPONSE = "haneul.close_after_response"  # environ key: a call that does so

logger = logging.getLogger("haneul.wsgi")


class ClientDisconnect(OSError):
    """The client closed the connection before sending the whole request body."""


class GuardedInput:
    """``wsgi.input`` that raises ClientDisconnect instead of returning a short body."""

    def __init__(self, wsgi_input, content_length):
        self._input = wsgi_input
        self._remaining = content_length
        self.bytes_read = 0

    def _count(self, data, size):
        self.bytes_read += len(data)
        if self._remaining is not None:
            self._remaining -= len(data)
            if not data and self._remaining > 0 and size != 0:
                raise ClientDisconnect(
                    errno.ECONNRESET,
                    f"client disconnected with {self._remaining} body bytes unsent",
                )
        return data

    def read(self, size=-1):
        if size is None or size < 0:
            return self._count(self._input.read(), None)
        return self._count(self._input.read(size), size)

    def readline(self, size=None):
        return self._count(self._input.readline(size), size)

    def readlines(self, hint=None):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")

    def __getattr__(self, name):
        return getattr(self._input, name)


class ServedApp:
    """The app as the runner serves it: guarded input and output, then the request log."""

    def __init__(self, app, log_requests, name):
        self.inner = app
        self.app = RequestLog(app, logging.getLogger(f"haneul.{name}")) if log_requests else app

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH")
        chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        guarded = GuardedInput(
            environ["wsgi.input"], None if chunked or not length else int(length)
        )
        environ["wsgi.input"] = environ["haneul.client_input"] = guarded
        answer = []

        def keep_answer(status, headers, exc_info=None):
            answer[:] = (status, headers)
            return start_response(status, headers, exc_info)

        body = self.app(environ, keep_answer)
        if hasattr(body, "__len__") or environ["REQUEST_METHOD"] == "HEAD":
            return body  # a list of chunks in hand (eventlet uses its length): not cut short
        return _whole_body(body, answer, environ)


def _whole_body(body, answer, environ):
    """Yield ``body``; if it ends short of its Content-Length, close the connection.

    A body that simply stops (a data file found truncated, a backend stream that broke
    with no node to resume it) would otherwise leave a keep-alive client waiting for
    bytes that never come until its timeout; closing tells it at once, after what the
    body did hold has been written.
    """
    sent = 0
    try:
        for chunk in body:
            sent += len(chunk)
            yield chunk
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    if not answer or answer[0][:1] == "1" or answer[0][:3] in ("204", "304"):
        return
    for key, value in answer[1]:
        if len(key) == 14 and key.lower() == "content-length":
            close = environ.get(CLOSE_AFTER_RESPONSE)
            if close is not None and value.isdigit() and sent < int(value):
                logger.warning(
                    "%s %s: body ended after %d of %s bytes; closing the connection",
                    environ["REQUEST_METHOD"],
                    environ.get("PATH_INFO", ""),
                    sent,
                    value,
                )
                close()
            return


class _HttpProtocol(eventlet.wsgi.HttpProtocol):
    """eventlet's protocol with a leaner request parser, and no made-up Content-Type.

    The standard library reads headers through the email parser, several times the
    cost of the plain split done here (this runs for every request of every server).
    A request without Content-Type has no CONTENT_TYPE: eventlet fills in ``text/plain``
    (the email parser's default), which would hide the absence from the proxy's
    guess-by-extension.
    """

    def parse_request(self):
        self.command = None
        # Not the standard library's HTTP/0.9 default: an error answer gets a status line.
        self.request_version = "HTTP/1.0"
        self.close_connection = True
        self.requestline = self.raw_requestline.decode("latin-1").rstrip("\r\n")
        try:
            method, target, version = parse_request_line(self.raw_requestline)
            self.headers = HeaderFields(read_header_fields(self.rfile))
        except MalformedHeaders as err:
            self.send_error(err.status, str(err))
            return False
        self.command = method
        # As the standard library does: a leading "//" would read as a host to clients.
        self.path = "/" + target.lstrip("/") if target.startswith("//") else target
        self.request_version = f"HTTP/{version[0]}.{version[1]}"
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" or version >= (1, 1):
            self.close_connection = False
        return True

    def get_environ(self):
        environ = super().get_environ()
        if self.headers.get("content-type") is None:
            environ.pop("CONTENT_TYPE", None)
        environ[CLOSE_AFTER_RESPONSE] = self.close_after_response
        return environ

    def close_after_response(self):
        """Close the connection once the response being written is out."""
        self.close_connection = 1


class GreenServer:
    """eventlet's HTTP/1.1 protocol on one listening socket, with our accept loop.

    Our own loop (rather than ``eventlet.wsgi.server``) decides how a stop drains: once
    accepting stops, responses say ``Connection: close``; a keep-alive connection idle
    between requests is closed at once, but one accepted just before the stop gets
    ``FRESH_GRACE`` seconds to send its request, which is then served, not dropped.
    """

    def __init__(self, listener, app, options):
        self.name = listener.name
        self.address = listener.address
        self.sock = listener.sock
        self.protocol = eventlet.wsgi.Server(
            self.sock,
            self.sock.getsockname(),
            app,
            logger,
            log_output=False,
            debug=False,
            keepalive=True,
            minimum_chunk_size=MINIMUM_WRITE_CHUNK,
            socket_timeout=options.client_timeout or None,
            protocol=_HttpProtocol,
            # Send header names as the app wrote them (S3 clients read x-amz-meta-* keys
            # in lower case).
            capitalize_response_headers=False,
        )
        self.pool = eventlet.GreenPool(options.max_clients)
        self.connections = {}  # id -> (eventlet's [addr, socket, state], accepted at)
        self.acceptor = None
        self.stopped = False
        self.balance = None  # an AcceptBalance when there are several workers
        self.index = 0  # this listener's index in it

    def start(self, on_failure):
        self.acceptor = concurrency.spawn(self._accept_forever)

        def failed(acceptor):
            if not self.stopped:
                try:
                    acceptor.wait()
                except Exception:
                    logger.exception("%s server stopped accepting", self.name)
                on_failure()

        self.acceptor.link(failed)

    def _accept_forever(self):
        self.sock.settimeout(0.0)  # accept() below never waits: we wait for readability
        while True:
            concurrency.wait_readable(self.sock.fileno())
            if self.balance is not None:
                self._let_idler_workers_accept()
            try:
                raw, address = self.sock.accept()
            except BlockingIOError:
                continue  # another worker took it
            except OSError as err:
                if err.errno in ACCEPT_RETRY:
                    continue
                if err.errno in ACCEPT_BACKOFF:  # out of fds or memory: let some close
                    logger.error("%s server cannot accept: %s", self.name, err)
                    concurrency.sleep(0.1)
                    continue
                raise
            client = eventlet.greenio.GreenSocket(raw)
            client.settimeout(self.protocol.socket_timeout)
            conn = [address, client, eventlet.wsgi.STATE_IDLE]
            self.connections[id(conn)] = (conn, time.monotonic())
            if self.balance is not None:
                self.balance.add(self.index, 1)
            self.pool.spawn(self.protocol.process_request, conn).link(self._closed, conn)

    def _let_idler_workers_accept(self):
        waited = 0.0
        while waited < MAX_ACCEPT_DEFER and self.balance.busier_than_others(self.index):
            concurrency.sleep(ACCEPT_DEFER_STEP)
            waited += ACCEPT_DEFER_STEP

    def _closed(self, _thread, conn):
        if self.connections.pop(id(conn), None) is not None and self.balance is not None:
            self.balance.add(self.index, -1)
        conn[2] = eventlet.wsgi.STATE_CLOSE
        eventlet.greenio.shutdown_safe(conn[1])
        conn[1].close()

    def stop_accepting(self):
        self.stopped = True
        if self.acceptor is not None:
            self.acceptor.kill()
        self.protocol.keepalive = False  # every response from now on closes its connection

    def drain(self, deadline):
        """Wait for in-flight requests until ``deadline``; True if none are left."""
        while self.connections:
            now = time.monotonic()
            if now >= deadline:
                return False
            for conn, accepted in list(self.connections.values()):
                if conn[2] == eventlet.wsgi.STATE_IDLE and now - accepted > FRESH_GRACE:
                    eventlet.greenio.shutdown_safe(conn[1])
            concurrency.sleep(DRAIN_POLL)
        return True


class AcceptBalance:
    """Open connections per worker and listener, shared by the workers (anonymous mmap).

    Every worker is woken for every new connection, and the first to call accept() gets
    it: left alone, one worker can take a whole burst of keep-alive connections while
    the others idle. So before taking a pending connection, a worker holding more
    connections on that listener than the least loaded live worker waits a moment (at
    most ``MAX_ACCEPT_DEFER``) for that one to take it. Each worker writes only its own
    counters; the supervisor marks the slot of a dead worker absent.
    """

    ABSENT = -1

    def __init__(self, workers, listeners):
        self.workers = workers
        self.listeners = listeners
        self._map = mmap.mmap(-1, 8 * workers * listeners)
        self.counts = memoryview(self._map).cast("q")
        for i in range(len(self.counts)):
            self.counts[i] = self.ABSENT
        self.slot = None

    def join(self, slot):
        """In a new worker: take ``slot``, with no connections yet."""
        self.slot = slot
        for index in range(self.listeners):
            self.counts[slot * self.listeners + index] = 0

    def leave(self, slot):
        """In the supervisor: the worker in ``slot`` is gone."""
        for index in range(self.listeners):
            self.counts[slot * self.listeners + index] = self.ABSENT

    def add(self, index, delta):
        self.counts[self.slot * self.listeners + index] += delta

    def busier_than_others(self, index):
        counts = self.counts[index :: self.listeners]
        mine = counts[self.slot]
        return any(0 <= count < mine for count in counts)
