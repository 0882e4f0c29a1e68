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
"""

import http.client
from urllib.parse import quote

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
    """An HTTPResponse that can hand back a status line read while awaiting 100-continue."""

    _pending_status = None

    def _read_status(self):
        if self._pending_status is not None:
            status, self._pending_status = self._pending_status, None
            return status
        return super()._read_status()

    def read_interim(self):
        """Read one status line: 100 (headers skipped, more to come) or the final status.

        A final status is kept for ``begin()``, which then reads its headers and body.
        """
        version, status, reason = super()._read_status()
        if status == http.client.CONTINUE:
            while True:
                line = self.fp.readline(http.client._MAXLINE + 1)
                if not line or line in (b"\r\n", b"\n"):
                    break
            return status
        self._pending_status = (version, status, reason)
        return status


class BackendConnection:
    """One request to one node: headers sent, then an optional body, then the answer."""

    def __init__(self, node, method, conn, chunked, node_timeout):
        self.node = node
        self.method = method
        self._conn = conn
        self.chunked = chunked
        self.node_timeout = node_timeout
        self.response = None
        self.bytes_sent = 0
        self._resp_obj = None

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
    ):
        """Connect and send the request line and headers; the body (if any) comes later.

        ``path`` is the part after the device (``backend_path``): the node's device is
        put in front of it here.
        ``headers`` values are WSGI (latin-1) strings or ints. A ``Transfer-Encoding:
        chunked`` header makes ``send`` frame each chunk. Raises BackendError.
        """
        url = "/" + quote(node["device"], safe="") + path
        if query_string:
            url += "?" + query_string
        conn = http.client.HTTPConnection(node["ip"], int(node["port"]), timeout=conn_timeout)
        chunked = False
        try:
            conn.connect()
            conn.sock.settimeout(node_timeout)
            conn.putrequest(method, url, skip_accept_encoding=True)
            for key, value in headers.items():
                if value is None:
                    continue
                if key.lower() == "transfer-encoding" and value.lower() == "chunked":
                    chunked = True
                conn.putheader(key, str(value))
            conn.endheaders()
        except TimeoutError:
            conn.close()
            raise BackendError(node, f"timeout connecting for {method}", timeout=True) from None
        except NETWORK_ERRORS as err:
            conn.close()
            raise BackendError(node, f"cannot send {method}: {err}") from None
        return cls(node, method, conn, chunked, node_timeout)

    def _response_object(self):
        if self._resp_obj is None:
            self._resp_obj = BackendResponse(self._conn.sock, method=self.method)
        return self._resp_obj

    def set_timeout(self, seconds):
        """Change the per-operation timeout (e.g. to a first-byte timeout)."""
        if self._conn.sock is not None:
            self._conn.sock.settimeout(seconds)

    def await_continue(self):
        """Wait for ``100 Continue`` (returns 100) or an early final status (returned)."""
        try:
            status = self._response_object().read_interim()
        except TimeoutError:
            self.close()
            raise BackendError(self.node, "timeout awaiting 100-continue", timeout=True) from None
        except NETWORK_ERRORS as err:
            self.close()
            raise BackendError(self.node, f"no 100-continue: {err}") from None
        return status

    def send(self, data):
        """Send part of the body (framed as a chunk when chunked). Raises BackendError."""
        if not data:
            return
        try:
            if self.chunked:
                self._conn.sock.sendall(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                self._conn.sock.sendall(data)
        except TimeoutError:
            self.close()
            raise BackendError(self.node, "timeout sending body", timeout=True) from None
        except OSError as err:
            self.close()
            raise BackendError(self.node, f"cannot send body: {err}") from None
        self.bytes_sent += len(data)

    def finish(self):
        """End the body: the terminating chunk if chunked, nothing otherwise."""
        if self.chunked:
            try:
                self._conn.sock.sendall(CHUNK_END)
            except TimeoutError:
                self.close()
                raise BackendError(self.node, "timeout ending body", timeout=True) from None
            except OSError as err:
                self.close()
                raise BackendError(self.node, f"cannot end body: {err}") from None

    def getresponse(self):
        """Read the status line and headers of the answer; the body stays to be read."""
        if self.response is not None:
            return self.response
        resp = self._response_object()
        try:
            resp.begin()
        except TimeoutError:
            self.close()
            raise BackendError(self.node, "timeout awaiting response", timeout=True) from None
        except NETWORK_ERRORS as err:
            self.close()
            raise BackendError(self.node, f"bad response: {err}") from None
        self.response = resp
        return resp

    def read(self, size):
        """Up to ``size`` bytes of the answer's body (b"" at the end). Raises BackendError."""
        try:
            data = self.response.read(size)
        except TimeoutError:
            self.close()
            raise BackendError(self.node, "timeout reading body", timeout=True) from None
        except NETWORK_ERRORS as err:
            self.close()
            raise BackendError(self.node, f"cannot read body: {err}") from None
        if not data and size and self.response.length:
            # http.client returns b"" rather than raising when a sized body is cut short.
            unread = self.response.length
            self.close()
            raise BackendError(self.node, f"connection closed with {unread} body bytes unread")
        return data

    def close(self):
        """Drop the connection (an unread body is abandoned, not drained)."""
        if self._resp_obj is not None:
            self._resp_obj.close()
        self._conn.close()


class BackendResult:
    """A whole, small answer: status, reason, headers (an HTTPMessage) and body bytes."""

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
        node, method, path, headers, conn_timeout, node_timeout, query_string
    )
    try:
        if body:
            conn.send(body)
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
