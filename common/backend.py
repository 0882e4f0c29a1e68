"""One HTTP request to a storage node, with the proxy's timeouts and a streamed body.

Built on ``http.client`` so that it is green when the server runner has made sockets
green, and plainly blocking otherwise. Two timeouts apply: ``conn_timeout`` to set up
the TCP connection, ``node_timeout`` to every later send or receive (so it bounds the
wait for the first byte and for each chunk, not the whole transfer).

A write with a body goes in steps, so that one client body can be streamed to several
nodes at once::

    conn = BackendConnection.open(node, "PUT", path, headers, conn_timeout, node_timeout)
    status = conn.await_continue()     # 100, or the node's final answer (e.g. 507)
    conn.send(chunk) ...               # as the client's body arrives
    conn.finish()                      # the last chunk of a chunked body
    resp = conn.getresponse()

``request()`` does a whole bodiless exchange and reads the answer in one call.

Connections are kept alive between requests (``common.backend_pool``): ``open`` takes an
idle connection to the node if there is a live one, and ``close`` gives the connection
back when the exchange ended cleanly (see ``BackendConnection.reusable``); anything else
(an answer abandoned half-read, an error, an early answer to 100-continue) closes it.
A pooled connection the node closed just as we sent a request on it is retried once on
a new connection, as long as no status line came back and no body went out that cannot
be sent again.
"""

import http.client
import socket
from urllib.parse import quote

from common import backend_pool
from common.header_fields import HeaderFields, MalformedHeaders, read_header_fields, request_head

CHUNK_END = b"0\r\n\r\n"
# What counts as "the node did not answer": a refused/reset connection, a timeout, or a
# reply that is not HTTP.
NETWORK_ERRORS = (OSError, http.client.HTTPException)


class BackendError(Exception):
    """A node could not be reached, timed out, or broke the protocol."""

    def __init__(self, node, message, timeout=False):
        super().__init__(f"{node.get('ip')}:{node.get('port')}/{node.get('device')}: {message}")
        self.node = node
        self.timeout = timeout


def backend_path(partition, account, container=None, obj=None):
    """The quoted ``/<part>/<account>[/<container>[/<object>]]``; each node's device goes
    in front of it (``BackendConnection.open`` does that)."""
    parts = [str(partition), account]
    if container is not None:
        parts.append(container)
        if obj is not None:
            parts.append(obj)
    return quote("/" + "/".join(parts), safe="/")


class BackendResponse(http.client.HTTPResponse):
    """An HTTPResponse that can hand back a status line read while awaiting 100-continue,
    and that can tell whether it left its connection ready for another request."""

    _pending_status = None
    status_read = False  # a status line came in (so the request reached the server)
    saw_continue = False  # one of them was ``100 Continue``
    _chunks_done = False  # the last chunk and the trailer of a chunked body were read

    def _read_status(self):
        if self._pending_status is not None:
            status, self._pending_status = self._pending_status, None
            return status
        status = super()._read_status()
        self.status_read = True
        if status[1] == http.client.CONTINUE:
            self.saw_continue = True
        return status

    def begin(self):
        """Read the status line (past any 100 Continue) and the header block.

        As http.client's, but the headers are read by common.header_fields (a
        HeaderFields in ``msg``/``headers``) rather than the email parser.
        """
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            self._read_fields()  # a 100's own (empty) header block
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = self._read_fields()
        encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        length = self.headers.get("content-length")
        self.length = None
        if length and not self.chunked and length.strip().isdigit():
            self.length = int(length)
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # the body ends when the connection does

    def _read_fields(self):
        try:
            return HeaderFields(read_header_fields(self.fp))
        except MalformedHeaders as err:
            raise http.client.HTTPException(f"bad answer headers: {err}") from None

    def _read_and_discard_trailer(self):
        super()._read_and_discard_trailer()
        self._chunks_done = True

    def read_interim(self):
        """Read one status line: 100 (headers skipped, more to come) or the final status.

        A final status is kept for ``begin()``, which then reads its headers and body.
        """
        version, status, reason = self._read_status()
        if status == http.client.CONTINUE:
            while True:
                line = self.fp.readline(http.client._MAXLINE + 1)
                if not line or line in (b"\r\n", b"\n"):
                    break
            return status
        self._pending_status = (version, status, reason)
        return status

    def keeps_alive(self):
        """True once ``begin()`` and the whole body are read and the connection stays open.

        That is an HTTP/1.1 answer without ``Connection: close``, whose body was read to
        its Content-Length or its last chunk (a HEAD, 204 or 304 has none).
        """
        if self.headers is None or self.version != 11 or self.will_close:
            return False
        if self.chunked:
            return self._chunks_done
        return self.length == 0


class BackendConnection:
    """One request to one node: headers sent, then an optional body, then the answer.

    The connection may be one kept from an earlier request to the node
    (``common.backend_pool``); ``close()`` gives it back when the exchange ended cleanly.
    """

    def __init__(self, node, method, conn, framing, node_timeout, reused, head):
        self.node = node
        self.method = method
        self._conn = conn
        self.chunked, self._body_length, self._expect_continue = framing
        self.node_timeout = node_timeout
        self.response = None
        self.bytes_sent = 0
        self._resp_obj = None
        self._reused = reused  # the socket came from the pool (it may have gone stale)
        self._head = head  # (request head bytes, conn_timeout): to send again on a new socket
        self._replay = None  # the whole body, when the caller gave it at once (request())
        self._sent_any = False  # some of the body (or its last chunk) went out
        self._finished = False  # the last chunk went out
        self._broken = False

    @classmethod
    def open(
        cls,
        node,
        method,
        path,
        headers,
        conn_timeout=0.5,
        node_timeout=10.0,
        query_string="",
        body=None,
        body_follows=False,
    ):
        """Connect and send the request line and headers; the body (if any) comes later.

        ``path`` is the part after the device (``backend_path``): the node's device is
        put in front of it here.
        ``headers`` values are WSGI (latin-1) strings or ints. A ``Transfer-Encoding:
        chunked`` header makes ``send`` frame each chunk. A whole (small) ``body`` given
        here goes out in the same write as the headers. ``body_follows`` promises that
        the caller's first ``send`` comes right away (no 100-continue): the headers are
        held back (MSG_MORE) to leave in the same packet as it, so the node wakes once.
        Raises BackendError.
        """
        url = "/" + quote(node["device"], safe="") + path
        if query_string:
            url += "?" + query_string
        framing = _framing(headers)
        if body and framing[0]:
            raise ValueError("a body given whole is not sent chunked")
        ip, port = node["ip"], int(node["port"])
        host = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        head = request_head(method, url, host, headers)
        conn, reused = _dial(
            node, method, head, conn_timeout, node_timeout, True, body=body, more=body_follows
        )
        opened = cls(node, method, conn, framing, node_timeout, reused, (head, conn_timeout))
        if body:
            opened._replay = body  # a stale pooled connection is retried with the body
            opened._sent_any = True
            opened.bytes_sent = len(body)
        return opened

    def _response_object(self):
        if self._resp_obj is None:
            self._resp_obj = BackendResponse(self._conn.sock, method=self.method)
        return self._resp_obj

    def _fail(self, message, timeout=False):
        """Close for good after an error; the BackendError to raise."""
        self._broken = True
        self.close()
        return BackendError(self.node, message, timeout=timeout)

    def _stale(self, err):
        """True if ``err`` shows a pooled socket the node had closed before our request.

        Only a reset or end-of-file before any status line counts: the node then never
        answered, so the request can be sent again on a new connection (once).
        """
        return (
            self._reused
            and isinstance(err, ConnectionError)
            and not (self._resp_obj is not None and self._resp_obj.status_read)
        )

    def _redial(self):
        """Replace a stale pooled socket with a new connection and send the head again."""
        if self._resp_obj is not None:
            self._resp_obj.close()
        self._conn.close()
        self._resp_obj = None
        head, conn_timeout = self._head
        self._conn, self._reused = _dial(
            self.node, self.method, head, conn_timeout, self.node_timeout, False
        )

    def set_timeout(self, seconds):
        """Change the per-operation timeout (e.g. to a first-byte timeout)."""
        if self._conn.sock is not None:
            self._conn.sock.settimeout(seconds)

    def await_continue(self):
        """Wait for ``100 Continue`` (returns 100) or an early final status (returned)."""
        while True:
            try:
                return self._response_object().read_interim()
            except TimeoutError:
                raise self._fail("timeout awaiting 100-continue", timeout=True) from None
            except NETWORK_ERRORS as err:
                if self._stale(err) and not self._sent_any:
                    self._redial()
                    continue
                raise self._fail(f"no 100-continue: {err}") from None

    def send(self, data):
        """Send part of the body (framed as a chunk when chunked). Raises BackendError."""
        if not data:
            return
        size = len(data)
        if self.chunked:
            data = b"%x\r\n%b\r\n" % (size, data)
        while True:
            try:
                self._sent_any = True
                self._conn.sock.sendall(data)
                break
            except TimeoutError:
                raise self._fail("timeout sending body", timeout=True) from None
            except OSError as err:
                if self._stale(err) and self.bytes_sent == 0:
                    self._redial()  # nothing of the body reached the node
                    continue
                raise self._fail(f"cannot send body: {err}") from None
        self.bytes_sent += size

    def finish(self):
        """End the body: the terminating chunk if chunked, nothing otherwise."""
        if self.chunked:
            try:
                self._sent_any = True
                self._conn.sock.sendall(CHUNK_END)
            except TimeoutError:
                raise self._fail("timeout ending body", timeout=True) from None
            except OSError as err:
                raise self._fail(f"cannot end body: {err}") from None
            self._finished = True

    def getresponse(self):
        """Read the status line and headers of the answer; the body stays to be read."""
        if self.response is not None:
            return self.response
        while True:
            resp = self._response_object()
            try:
                resp.begin()
                break
            except TimeoutError:
                raise self._fail("timeout awaiting response", timeout=True) from None
            except NETWORK_ERRORS as err:
                if self._stale(err) and (not self._sent_any or self._replay is not None):
                    self._resend()
                    continue
                raise self._fail(f"bad response: {err}") from None
        self.response = resp
        return resp

    def _resend(self):
        """Redial, then send again the body sent so far (only ever a whole ``_replay``)."""
        self._redial()
        if self._sent_any:
            try:
                self._conn.sock.sendall(self._replay)
            except TimeoutError:
                raise self._fail("timeout sending body", timeout=True) from None
            except OSError as err:
                raise self._fail(f"cannot send body: {err}") from None

    def read(self, size):
        """Up to ``size`` bytes of the answer's body (b"" at the end). Raises BackendError."""
        try:
            data = self.response.read(size)
        except TimeoutError:
            raise self._fail("timeout reading body", timeout=True) from None
        except NETWORK_ERRORS as err:
            raise self._fail(f"cannot read body: {err}") from None
        if not data and size and self.response.length:
            # http.client returns b"" rather than raising when a sized body is cut short.
            unread = self.response.length
            raise self._fail(f"connection closed with {unread} body bytes unread")
        return data

    def reusable(self):
        """True if the exchange ended cleanly, so the connection can serve another request.

        The whole request went out (``Content-Length`` bytes, or the last chunk), a
        ``100 Continue`` came if one was asked for (a node that answers early closes
        the connection, with or without saying so), no error or timeout happened, and
        the answer keeps the connection alive with its body read to the end.
        """
        if self._broken or self._conn.sock is None or self.response is None:
            return False
        if self.chunked:
            sent_all = self._finished
        else:
            sent_all = self._body_length is not None and self.bytes_sent == self._body_length
        if not sent_all or (self._expect_continue and not self.response.saw_continue):
            return False
        return self.response.keeps_alive()

    def close(self):
        """Done with the connection: kept for the next request to the node if the
        exchange ended cleanly (``reusable``), else closed (an unread body is abandoned,
        not drained). Safe to call more than once, and after an error."""
        sock = self._conn.sock
        if sock is not None and self.reusable():
            self._resp_obj.close()  # the response's file object, not the socket
            self._conn.sock = None
            backend_pool.POOL.give((self.node["ip"], int(self.node["port"])), sock)
            return
        if self._resp_obj is not None:
            self._resp_obj.close()
        self._conn.close()


def _framing(headers):
    """``(chunked, declared length, expects 100-continue)`` of a request's headers, in
    one pass; the length is 0 without a Content-Length and None if it is unreadable."""
    chunked = expect = False
    length = 0
    for key, value in headers.items():
        if value is None:
            continue
        lower = key.lower()
        if lower == "transfer-encoding":
            chunked = str(value).lower() == "chunked"
        elif lower == "content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif lower == "expect":
            expect = str(value).lower() == "100-continue"
    return chunked, length, expect


def _dial(node, method, head, conn_timeout, node_timeout, pooled, body=None, more=False):
    """An ``HTTPConnection`` with the request ``head`` (and ``body``, if given) sent, and
    whether its socket was pooled.

    The head goes in the same write as a whole ``body``; with ``more`` (the body follows
    at once) it is sent with MSG_MORE, so the kernel holds it for the body's write. Each
    write that reaches a peer costs a wake-up on both sides. A pooled socket that fails
    while the head goes out is dropped for a new one.
    """
    ip, port = node["ip"], int(node["port"])
    sock = backend_pool.POOL.take((ip, port)) if pooled else None
    while True:
        conn = http.client.HTTPConnection(ip, port, timeout=conn_timeout)
        try:
            if sock is not None:
                conn.sock = sock
            else:
                conn.connect()
            conn.sock.settimeout(node_timeout)
            if body:
                conn.sock.sendall(head + body)
            elif more:
                conn.sock.sendall(head, socket.MSG_MORE)
            else:
                conn.sock.sendall(head)
            return conn, sock is not None
        except TimeoutError:
            conn.close()
            raise BackendError(node, f"timeout connecting for {method}", timeout=True) from None
        except NETWORK_ERRORS as err:
            conn.close()
            if sock is None or not isinstance(err, ConnectionError):
                raise BackendError(node, f"cannot send {method}: {err}") from None
            sock = None  # the pooled socket had gone stale: once more on a new one


class BackendResult:
    """A whole, small answer: status, reason, headers (HeaderFields) and body bytes."""

    __slots__ = ("node", "status", "reason", "headers", "body")

    def __init__(self, node, status, reason, headers, body):
        self.node = node
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"BackendResult({self.status}, node={self.node.get('ip')}:{self.node.get('port')})"


def request(
    node,
    method,
    path,
    headers,
    body=b"",
    conn_timeout=0.5,
    node_timeout=10.0,
    query_string="",
    max_body=None,
):
    """Send one request with a small (or no) body and read the whole answer.

    Raises BackendError when the node cannot be reached or times out; a body longer
    than ``max_body`` is a BackendError too.
    """
    headers = dict(headers)
    if body or method in ("PUT", "POST"):
        headers["Content-Length"] = str(len(body))
    conn = BackendConnection.open(
        node, method, path, headers, conn_timeout, node_timeout, query_string, body=body
    )
    try:
        resp = conn.getresponse()
        if max_body is not None:
            data = conn.read(max_body + 1)
            if len(data) > max_body:
                raise BackendError(node, f"answer to {method} longer than {max_body} bytes")
        else:
            data = conn.read(None) if method != "HEAD" else b""
        return BackendResult(node, resp.status, resp.reason, resp.msg, data)
    finally:
        conn.close()
