"""Reading a replicated object: find a node that has it, stream it, resume on failure.

Primaries are asked in ring order, each with the first-byte timeout
(``recoverable_node_timeout``), then handoffs. The first node with the object serves
it; a node that answers 404 is passed over, and its tombstone's timestamp is kept so
that an older copy found later is not served as if the delete never happened.

If the connection dies while the body is streaming, the rest is asked of the next node
with a Range starting at the first byte the client has not had, and used only if it is
the same object (same ETag and timestamp). Multi-range (multipart) answers are not
resumed: the client sees a short body, as it would from Swift.
"""

import logging
import re

from webob import Response

from common.backend import BackendConnection, BackendError
from common.concurrency import Pile
from common.http import status_line
from common.timestamp import InvalidTimestamp, Timestamp
from proxy.controllers.base import client_headers, plain_response

LOG = logging.getLogger("haneul.proxy")
CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# Dropped from the request that resumes a broken stream: the first node already judged
# them, and the resumed part must be a plain range of the same object.
RESUME_DROPPED = frozenset(
    ("range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
)


def answer_timestamp(headers):
    """The object's timestamp from a node answer (X-Backend-Timestamp, else X-Timestamp)."""
    value = headers.get("X-Backend-Timestamp") or headers.get("X-Timestamp")
    if not value:
        return None
    try:
        return Timestamp(value)
    except InvalidTimestamp:
        return None


def _etag(headers):
    return (headers.get("ETag") or "").strip('"')


class Source:
    """An open GET (or HEAD) answer from one node whose body is still to be read."""

    __slots__ = ("node", "conn", "status", "headers", "timestamp")

    def __init__(self, node, conn):
        self.node = node
        self.conn = conn
        resp = conn.response
        self.status = resp.status
        self.headers = resp.msg
        self.timestamp = answer_timestamp(resp.msg)

    def read(self, size):
        return self.conn.read(size)

    def close(self):
        self.conn.close()


class StreamBody:
    """The app_iter of a GET: iterates the (resuming) stream; ``close`` frees the node
    connection even if iteration never started (a client gone, a copy abandoned)."""

    def __init__(self, reader, source):
        self._reader = reader
        self._source = source
        self._gen = reader._stream(source)

    def __iter__(self):
        return self._gen

    def close(self):
        self._gen.close()
        current = getattr(self._reader, "current", None) or self._source
        current.close()
        self._source.close()


class ObjectReader:
    """GET or HEAD of one replicated object for one client request."""

    def __init__(self, controller, ring, part, path, headers):
        self.controller = controller
        self.app = controller.app
        self.ring = ring
        self.part = part
        self.path = path
        self.headers = headers
        self.method = controller.req.method
        self.nodes = controller.node_iter(ring, part)
        self.statuses = []
        self.tombstone = None  # newest timestamp of a 404 that came with one

    # -- asking nodes ----------------------------------------------------------------

    def _open(self, node, headers, method=None):
        """A Source for ``node``, or None (after feeding the error limiter) on failure."""
        try:
            conn = BackendConnection.open(
                node,
                method or self.method,
                self.path,
                headers,
                self.app.conn_timeout,
                self.app.recoverable_node_timeout,
            )
            conn.getresponse()
        except BackendError as err:
            self.controller.note_node_result(node, error=err)
            self.statuses.append(503)
            return None
        source = Source(node, conn)
        self.controller.note_node_result(node, status=source.status)
        self.statuses.append(source.status)
        return source

    def _note_missing(self, source):
        if source.timestamp is not None and (
            self.tombstone is None or source.timestamp > self.tombstone
        ):
            self.tombstone = source.timestamp

    def _is_stale(self, source):
        """True if a node deleted this object after the copy ``source`` holds was made."""
        return (
            self.tombstone is not None
            and source.timestamp is not None
            and source.timestamp < self.tombstone
        )

    def find_source(self):
        """Walk the nodes: the first good Source, or a final answer Source (304/412/416)."""
        for node in self.nodes:
            source = self._open(node, self.headers)
            if source is None:
                continue
            if source.status >= 500:
                source.close()
                continue
            if source.status == 404:
                self._note_missing(source)
                source.close()
                continue
            if 200 <= source.status < 300 and self._is_stale(source):
                source.close()
                continue
            return source
        return None

    def find_newest(self):
        """X-Newest: ask every primary at once and keep the newest copy."""
        pile = Pile(max(len(self.nodes.primaries), 1))
        for node in self.nodes.take(len(self.nodes.primaries)):
            pile.spawn(self._open, node, self.headers)
        best = None
        found = []
        for source in pile:
            if isinstance(source, Exception) or source is None:
                continue
            found.append(source)
            if source.status == 404:
                self._note_missing(source)
            elif source.status < 500 and (
                best is None
                or (source.timestamp or Timestamp(0)) > (best.timestamp or Timestamp(0))
            ):
                best = source
        for source in found:
            if source is not best:
                source.close()
        if best is not None and 200 <= best.status < 300 and self._is_stale(best):
            best.close()
            return None
        return best

    # -- answering the client --------------------------------------------------------

    def response(self, newest=False):
        """The client's response: the streamed object, a node's refusal, 404 or 503."""
        source = self.find_newest() if newest else self.find_source()
        if source is None:
            return self._not_found_or_unavailable()
        resp = Response(status=status_line(source.status), headerlist=[])
        for key, value in client_headers(source.headers):
            resp.headers.add(key, value)
        length = source.headers.get("Content-Length")
        if self.method == "HEAD" or not (200 <= source.status < 300):
            body = b"" if self.method == "HEAD" else source.read(65536)
            source.close()
            if self.method == "HEAD":
                resp.app_iter = []
                if length is not None:
                    resp.content_length = int(length)
            else:
                resp.body = body
            return resp
        resp.app_iter = StreamBody(self, source)
        if length is not None:
            resp.content_length = int(length)
        return resp

    def _not_found_or_unavailable(self):
        statuses = self.statuses
        not_found = statuses.count(404)
        replicas = len(self.nodes.primaries) or 1
        if not_found and (not_found >= replicas // 2 + 1 or not_found == len(statuses)):
            return plain_response(404, body=b"" if self.method == "HEAD" else b"Not Found\n")
        if self.tombstone is not None and not_found:
            return plain_response(404, body=b"" if self.method == "HEAD" else b"Not Found\n")
        return plain_response(503, body=b"no object server answered\n")

    # -- streaming and resuming ------------------------------------------------------

    def _stream(self, source):
        chunk_size = self.app.client_chunk_size
        first = source
        self.current = source
        sent = 0
        try:
            while True:
                try:
                    chunk = source.read(chunk_size)
                except BackendError as err:
                    self.controller.note_node_result(source.node, error=err)
                    replacement = self._resume(first, sent)
                    if replacement is None:
                        LOG.error(
                            "GET %s: stream broke after %d bytes and no node could resume it (%s)",
                            self.path,
                            sent,
                            self.controller.trans_id,
                        )
                        return
                    source = self.current = replacement
                    continue
                if not chunk:
                    return
                sent += len(chunk)
                yield chunk
        finally:
            source.close()
            if first is not source:
                first.close()

    def _resume_range(self, first, sent):
        """The ``Range`` that asks for what is left, or None if this answer can't resume."""
        if first.status == 200:
            length = first.headers.get("Content-Length")
            if length is None or sent >= int(length):
                return None
            return f"bytes={sent}-{int(length) - 1}"
        if first.status == 206:
            match = CONTENT_RANGE_RE.match(first.headers.get("Content-Range") or "")
            if not match:
                return None  # multipart/byteranges: not resumable
            start, end = int(match.group(1)), int(match.group(2))
            if start + sent > end:
                return None
            return f"bytes={start + sent}-{end}"
        return None

    def _resume(self, first, sent):
        """A Source for the rest of ``first``'s body from another node, or None."""
        wanted = self._resume_range(first, sent)
        if wanted is None:
            return None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in RESUME_DROPPED}
        headers["Range"] = wanted
        want_start = int(wanted[6:].split("-")[0])
        for node in self.nodes:
            source = self._open(node, headers)
            if source is None:
                continue
            if (
                source.status == 206
                and _etag(source.headers) == _etag(first.headers)
                and source.timestamp == first.timestamp
                and (source.headers.get("Content-Range") or "").startswith(f"bytes {want_start}-")
            ):
                LOG.info(
                    "GET %s: resumed at byte %d from %s:%s (%s)",
                    self.path,
                    sent,
                    node["ip"],
                    node["port"],
                    self.controller.trans_id,
                )
                return source
            source.close()
        return None
