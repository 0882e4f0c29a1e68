"""Moving bodies: the client's upload read once, in chunks, and fanned out to nodes.

``client_body`` yields a client's request body chunk by chunk with the HTTP answers a
broken upload deserves (499 when the client went away, 408 when it went quiet, 413
when a chunked body grows too big). ``Putter`` is one node receiving a body;
``send_to_all`` writes each chunk to every putter still alive. Nothing here holds more
than one chunk at a time, so a 5 GiB upload costs what a 64 KiB one does.
"""

import logging

from common.backend import BackendConnection, BackendError
from common.concurrency import Pile, Timeout
from common.http import HTTPError

LOG = logging.getLogger("haneul.proxy")


def request_content_length(req):
    """(length, chunked) of a request body; 411 with neither, 400 when malformed."""
    environ = req.environ
    encoding = environ.get("HTTP_TRANSFER_ENCODING", "").strip().lower()
    if encoding:
        if encoding != "chunked":
            raise HTTPError(501, f"transfer encoding {encoding!r} is not supported")
        return None, True
    raw = environ.get("CONTENT_LENGTH")
    if raw is None or raw == "":
        raise HTTPError(411, "a Content-Length or Transfer-Encoding: chunked is required")
    try:
        length = int(raw)
    except ValueError:
        raise HTTPError(400, f"invalid Content-Length {raw!r}") from None
    if length < 0:
        raise HTTPError(400, f"invalid Content-Length {raw!r}")
    return length, False


def read_client(stream, size, timeout):
    """One ``read(size)`` of the client's body with the 408/499 answers it deserves."""
    timer = Timeout(timeout) if timeout else None
    try:
        return stream.read(size)
    except Timeout as err:
        if err is not timer:
            raise
        raise HTTPError(408, "timed out reading the request body") from None
    except TimeoutError:
        raise HTTPError(408, "timed out reading the request body") from None
    except (OSError, ValueError) as err:
        raise HTTPError(499, f"client disconnected: {err}") from None
    finally:
        if timer is not None:
            timer.cancel()


def client_body(environ, length, chunk_size, timeout, max_size):
    """Yield the request body in chunks of at most ``chunk_size`` bytes.

    ``length`` is the Content-Length, or None for a chunked body (then at most
    ``max_size`` bytes are accepted). Raises HTTPError 499/408/413.
    """
    stream = environ["wsgi.input"]
    remaining = length
    received = 0
    while remaining is None or remaining > 0:
        want = chunk_size if remaining is None else min(chunk_size, remaining)
        chunk = read_client(stream, want, timeout)
        if not chunk:
            if remaining is None:
                return
            raise HTTPError(499, "client disconnected before sending the whole body")
        received += len(chunk)
        if remaining is not None:
            remaining -= len(chunk)
        elif received > max_size:
            raise HTTPError(413, f"object larger than {max_size} bytes")
        yield chunk


def iter_body(app_iter, length, max_size):
    """Chunks of another response's body (a server-side copy), checked against ``length``."""
    received = 0
    try:
        for chunk in app_iter:
            if not chunk:
                continue
            received += len(chunk)
            if received > max_size:
                raise HTTPError(413, f"object larger than {max_size} bytes")
            yield chunk
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    if length is not None and received != length:
        raise HTTPError(503, "the copy source ended early")


class Putter:
    """One node receiving a body: a BackendConnection that has been told to go ahead."""

    __slots__ = ("slot", "node", "conn", "failed")

    def __init__(self, slot, node, conn):
        self.slot = slot
        self.node = node
        self.conn = conn
        self.failed = None

    def send(self, chunk):
        self.conn.send(chunk)

    def close(self):
        self.conn.close()


class EarlyAnswer:
    """A node's final answer before any body was sent (412, 409, 507, ...)."""

    __slots__ = ("slot", "node", "status", "headers")

    def __init__(self, slot, node, status, headers):
        self.slot = slot
        self.node = node
        self.status = status
        self.headers = headers


def open_putter(
    slot, node, method, path, headers, expect, conn_timeout, node_timeout, body_in_hand=False
):
    """Connect to ``node`` and wait for its go-ahead: a Putter or an EarlyAnswer.

    With ``expect`` the request carries ``Expect: 100-continue``, so a node that will
    refuse (exists already, disk full) says so before the body is streamed.
    ``body_in_hand`` (never with ``expect``): the whole body will be sent as soon as
    enough nodes are connected, so the headers wait to leave with it.
    Raises BackendError when the node cannot be reached.
    """
    if expect:
        headers = dict(headers, Expect="100-continue")
    conn = BackendConnection.open(
        node, method, path, headers, conn_timeout, node_timeout, body_follows=body_in_hand
    )
    if not expect:
        return Putter(slot, node, conn)
    status = conn.await_continue()
    if status == 100:
        return Putter(slot, node, conn)
    try:
        resp = conn.getresponse()
        return EarlyAnswer(slot, node, resp.status, resp.msg)
    finally:
        conn.close()


def send_to_all(chunks, putters, quorum, on_failure):
    """Write every chunk to every live putter; drop failing ones (``on_failure(putter)``).

    Returns the putters still alive. Raises HTTPError(503) as soon as fewer than
    ``quorum`` remain; client-side HTTPErrors from ``chunks`` propagate unchanged.
    """
    live = list(putters)
    for chunk in chunks:
        for putter in list(live):
            try:
                putter.send(chunk)
            except BackendError as err:
                putter.failed = err
                live.remove(putter)
                on_failure(putter)
        if len(live) < quorum:
            raise HTTPError(503, "too few object servers kept up with the upload")
    for putter in list(live):
        try:
            putter.conn.finish()
        except BackendError as err:
            putter.failed = err
            live.remove(putter)
            on_failure(putter)
    if len(live) < quorum:
        raise HTTPError(503, "too few object servers took the whole upload")
    return live


def collect_answers(putters, max_body=65536):
    """Read every putter's final answer side by side: [(putter, status, headers) or error]."""
    pile = Pile(max(len(putters), 1))

    def answer(putter):
        try:
            resp = putter.conn.getresponse()
            putter.conn.read(max_body)
            return putter, resp.status, resp.msg
        except BackendError as err:
            putter.failed = err
            return putter, None, None
        finally:
            putter.close()

    for putter in putters:
        pile.spawn(answer, putter)
    return [r for r in pile if not isinstance(r, Exception)]
