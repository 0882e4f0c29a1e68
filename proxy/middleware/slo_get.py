"""Reading a static large object: its segments streamed in order, ranges across them.

``SegmentReader`` turns byte ranges of the large object into the segments (or parts of
segments) that hold them, found through the manifest and any manifests nested in it,
and reads each with a GET below the SLO filter, as the client's user: only the
segments a range covers are read, the first and last with a Range of their own. The
next segment is opened while the current one streams, so the client never waits for a
segment's first byte between two segments; at most one chunk of each is in memory.

A segment that is missing, answers an error, or is no longer the object the manifest
names (another ETag, another size) stops the large object: before its first byte the
client gets 409 (503 when the segment's servers did not answer), after it the
connection is dropped (SegmentError) and the reason is logged.

``respond`` builds the client's answer to a GET or HEAD of a manifest: conditional
headers judged against the large object's own ETag and Last-Modified, ``Range``
(single, multi, suffix), ``?part-number=N`` (one segment), and the headers Swift gives.
"""

import logging
import uuid

from webob import Response

from common import conditions
from common.byteranges import (
    content_range,
    multipart_body,
    multipart_length,
    parse_range_header,
    ranges_for_length,
    unsatisfiable_content_range,
)
from common.concurrency import spawn
from common.http import status_line
from proxy.middleware import slo_manifest as manifest
from proxy.middleware import slo_subrequest as sub

LOG = logging.getLogger("haneul.proxy.slo")
MAX_DEPTH = 10
# Manifest answer headers that describe the manifest's body, not the large object.
BODY_HEADERS = frozenset(
    ("content-length", "content-range", "etag", "content-type", "accept-ranges", "content-md5")
)


class SegmentError(Exception):
    """A segment can't be served as the manifest describes it."""

    def __init__(self, message, status=409):
        super().__init__(message)
        self.status = 503 if status >= 500 else 409


class Piece:
    """Bytes ``[start, stop)`` of one segment object (a leaf of the manifest tree)."""

    __slots__ = ("entry", "start", "stop")

    def __init__(self, entry, start, stop):
        self.entry = entry
        self.start = start
        self.stop = stop

    @property
    def whole(self):
        return self.start == 0 and self.stop == int(self.entry["bytes"])


class SegmentReader:
    """Reads the segments of one manifest for one client request."""

    def __init__(self, app, environ, version, account, entries, path, max_manifest_size):
        self.app = app
        self.environ = environ
        self.version = version
        self.account = account
        self.entries = entries
        self.path = path  # the manifest's, for log lines
        self.max_manifest_size = max_manifest_size
        self.trans_id = environ.get("haneul.trans_id", "-")

    # -- which segments ------------------------------------------------------------------

    def leaf_pieces(self, entries, start, stop, depth=1):
        """Pieces of segment objects holding bytes ``[start, stop)`` of ``entries``."""
        lengths = [manifest.entry_length(e) for e in entries]
        for index, seg_start, seg_stop in manifest.pieces(lengths, start, stop):
            entry = entries[index]
            offset = manifest.entry_span(entry)[0]
            if entry.get("sub_slo"):
                if depth >= MAX_DEPTH:
                    raise SegmentError(f"manifests nested deeper than {MAX_DEPTH}")
                nested = self.sub_manifest(entry)
                yield from self.leaf_pieces(
                    nested, offset + seg_start, offset + seg_stop, depth + 1
                )
            else:
                yield Piece(entry, offset + seg_start, offset + seg_stop)

    def sub_manifest(self, entry):
        """The entries of a manifest nested in this one (checked against the entry)."""
        resp = self._get(entry["name"])
        if not 200 <= resp.status_int < 300:
            sub.close_body(resp)
            raise SegmentError(
                f"GET of nested manifest {entry['name']} answered {resp.status_int}",
                resp.status_int,
            )
        if not manifest.is_slo(resp.headers):
            sub.close_body(resp)
            raise SegmentError(f"{entry['name']} is no longer a manifest")
        body = sub.read_body(resp, self.max_manifest_size)
        try:
            entries = manifest.parse_manifest(body)
        except (TypeError, ValueError):
            raise SegmentError(f"nested manifest {entry['name']} is not valid JSON") from None
        if manifest.total_size(entries) != int(entry["bytes"]):
            raise SegmentError(f"nested manifest {entry['name']} changed size")
        return entries

    # -- reading -------------------------------------------------------------------------

    def _get(self, name, headers=None):
        container, obj = manifest.split_segment_path(name)
        path = sub.object_path(self.version, self.account, container, obj)
        env = sub.make_environ(self.environ, "GET", path, headers=headers)
        return sub.call(self.app, env)

    def open_piece(self, piece):
        """The checked GET answer for ``piece``; SegmentError if it isn't what we want."""
        entry = piece.entry
        size = int(entry["bytes"])
        headers = None if piece.whole else {"Range": f"bytes={piece.start}-{piece.stop - 1}"}
        resp = self._get(entry["name"], headers)
        status = resp.status_int
        problem = None
        if not 200 <= status < 300:
            problem = f"answered {status}"
        elif entry.get("hash") and (resp.headers.get("ETag") or "").strip('"') != entry["hash"]:
            problem = "has another ETag than the manifest names"
        elif status == 200 and resp.content_length != size:
            problem = f"is {resp.content_length} bytes, the manifest says {size}"
        elif status == 206 and resp.headers.get("Content-Range") != content_range(
            piece.start, piece.stop, size
        ):
            problem = f"answered the range {resp.headers.get('Content-Range')!r}"
        if problem is not None:
            sub.close_body(resp)
            raise SegmentError(f"segment {entry['name']} {problem}", status)
        return resp

    def piece_chunks(self, piece, resp):
        """The bytes of ``piece`` from its open answer (a 200 is cut to the piece)."""
        skip = piece.start if resp.status_int == 200 else 0
        want = piece.stop - piece.start
        try:
            for chunk in resp.app_iter:
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk = chunk[skip:]
                    skip = 0
                if len(chunk) > want:
                    chunk = chunk[:want]
                want -= len(chunk)
                if chunk:
                    yield chunk
                if not want:
                    break
        finally:
            sub.close_body(resp)
        if want:
            raise SegmentError(f"segment {piece.entry['name']} ended {want} bytes short")

    def _next(self, pieces):
        piece = next(pieces, None)
        if piece is None:
            return None
        return piece, self.open_piece(piece)

    def first(self, start, stop):
        """Open the first segment of a range (errors here can still change the status)."""
        pieces = self.leaf_pieces(self.entries, start, stop)
        return pieces, self._next(pieces)

    def range_body(self, start, stop, opened=None):
        """The bytes ``[start, stop)`` of the large object, segment after segment."""
        pieces, current = opened if opened is not None else self.first(start, stop)
        pending = None
        try:
            while current is not None:
                pending = spawn(self._next, pieces)
                yield from self.piece_chunks(*current)
                current = None
                thread, pending = pending, None
                current = thread.wait()
        except SegmentError as err:
            LOG.error("GET %s: large object cut short: %s (%s)", self.path, err, self.trans_id)
            raise
        finally:
            if current is not None:
                sub.close_body(current[1])
            if pending is not None:
                try:
                    opened_next = pending.wait()
                except SegmentError:
                    opened_next = None
                if opened_next is not None:
                    sub.close_body(opened_next[1])


# -- the client's answer ---------------------------------------------------------------


def large_object_headers(manifest_headers, etag, total):
    """The client's headers of a large object from its manifest's answer."""
    headers = [
        (key, value)
        for key, value in manifest_headers.items()
        if key.lower() not in BODY_HEADERS and key.lower() != manifest.SLO_HEADER.lower()
    ]
    content_type = manifest.client_content_type(manifest_headers.get("Content-Type"))
    headers += [
        ("Content-Type", content_type or "application/octet-stream"),
        ("ETag", f'"{etag}"'),
        (manifest.SLO_HEADER, "True"),
        ("Accept-Ranges", "bytes"),
    ]
    return headers


def respond(reader, req, manifest_headers, entries):
    """The answer to a GET or HEAD of a large object; body streamed from ``reader``
    (None for a HEAD, which never touches the segments)."""
    total = (
        manifest.total_size(entries)
        if entries is not None
        else _int(manifest_headers.get(manifest.SYSMETA_SIZE))
    )
    etag = (manifest_headers.get(manifest.SYSMETA_ETAG) or "").strip('"')
    if not etag and entries is not None:
        etag = manifest.slo_etag(entries)
    headers = large_object_headers(manifest_headers, etag, total)
    etags = {etag}
    alt = (manifest_headers.get(manifest.ALT_ETAG) or "").strip('"')
    if alt:
        etags.add(alt)
    last_modified = conditions.parse_http_date(manifest_headers.get("Last-Modified"))
    outcome = conditions.evaluate(req.headers, etags, last_modified)
    if outcome == 304:
        return _answer(304, headers, content_length=None)
    if outcome == 412:
        return _answer(412, [("ETag", f'"{etag}"')], body=b"Precondition Failed\n")
    part_number = req.GET.get("part-number")
    if part_number is not None:
        return _part_answer(reader, req, headers, entries, total, part_number)
    ranges = None
    spec = parse_range_header(req.headers.get("Range"))
    if spec is not None and conditions.range_applies(req.headers, etags, last_modified):
        ranges = ranges_for_length(spec, total)
        if not ranges:
            return _answer(
                416,
                [("Content-Range", unsatisfiable_content_range(total))],
                body=b"Requested Range Not Satisfiable\n",
            )
    if ranges is None:
        return _body_answer(reader, req, 200, headers, [(0, total)], total)
    if len(ranges) == 1:
        start, stop = ranges[0]
        headers.append(("Content-Range", content_range(start, stop, total)))
        return _body_answer(reader, req, 206, headers, ranges, total)
    return _multipart_answer(reader, req, headers, ranges, total)


def _part_answer(reader, req, headers, entries, total, part_number):
    """``?part-number=N``: just the N-th segment, as S3's partNumber asks (``entries``
    are needed, so the caller reads the manifest even for a HEAD)."""
    if not part_number.isascii() or not part_number.isdigit() or int(part_number) < 1:
        return _answer(400, [], body=b"part-number must be a positive integer\n")
    number = int(part_number)
    parts_count = ("X-Parts-Count", str(len(entries)))
    headers.append(parts_count)
    if number > len(entries):
        return _answer(
            416,
            [("Content-Range", unsatisfiable_content_range(total)), parts_count],
            body=b"Requested Range Not Satisfiable\n",
        )
    start = manifest.total_size(entries[: number - 1])
    stop = start + manifest.entry_length(entries[number - 1])
    headers.append(("Content-Range", content_range(start, stop, total)))
    return _body_answer(reader, req, 206, headers, [(start, stop)], total)


def _body_answer(reader, req, status, headers, ranges, total):
    start, stop = ranges[0]
    if req.method == "HEAD" or stop == start:
        return _answer(status, headers, content_length=stop - start)
    try:
        opened = reader.first(start, stop)
    except SegmentError as err:
        LOG.error("GET %s: %s (%s)", reader.path, err, reader.trans_id)
        return _answer(err.status, [], body=f"{err}\n".encode())
    app_iter = reader.range_body(start, stop, opened)
    return _answer(status, headers, content_length=stop - start, app_iter=app_iter)


def _multipart_answer(reader, req, headers, ranges, total):
    boundary = uuid.uuid4().hex
    content_type = dict((k.lower(), v) for k, v in headers)["content-type"]
    headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
    headers.append(("Content-Type", f"multipart/byteranges;boundary={boundary}"))
    length = multipart_length(ranges, boundary, content_type, total)
    if req.method == "HEAD":
        return _answer(206, headers, content_length=length)
    try:
        first_opened = reader.first(*ranges[0])
    except SegmentError as err:
        LOG.error("GET %s: %s (%s)", reader.path, err, reader.trans_id)
        return _answer(err.status, [], body=f"{err}\n".encode())
    opened = {ranges[0]: first_opened}

    def read_range(start, stop):
        return reader.range_body(start, stop, opened.pop((start, stop), None))

    app_iter = multipart_body(ranges, boundary, content_type, total, read_range)
    return _answer(206, headers, content_length=length, app_iter=app_iter)


def _answer(status, headers, content_length=0, body=None, app_iter=None):
    resp = Response(status=status_line(status), headerlist=[])
    for key, value in headers:
        resp.headers.add(key, value)
    if body is not None:
        resp.content_type = "text/plain"
        resp.body = body
        return resp
    resp.app_iter = app_iter if app_iter is not None else []
    if content_length is not None:
        resp.content_length = content_length
    return resp


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
