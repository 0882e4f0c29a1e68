"""Objects of an erasure-coded storage policy: k + m fragment archives, any k of which
give the object back.

PUT (``ec_put``) streams the body segment by segment as fragment archives to the k + m
primaries and commits them once a quorum stored them. GET (``ec_get``) decodes the
segments from k archives, only those a byte range needs; HEAD answers from the
fragments' metadata. The object's ETag and length are the whole object's (kept as
``X-Object-Sysmeta-Ec-*`` on every archive): conditional requests are judged here
against them, never by the object servers, which only know their archive.

POST, DELETE and server-side copy are the replicated controller's, unchanged.
"""

import email.utils
import logging
import uuid

from webob import Response

from common.backend import BackendError
from common.byteranges import (
    content_range,
    multipart_body,
    multipart_length,
    parse_range_header,
    ranges_for_length,
)
from common.http import HTTPError, status_line
from proxy.controllers.base import client_headers, plain_response
from proxy.controllers.ec_get import (
    FragmentError,
    FragmentFinder,
    SegmentStream,
    close_all,
    plan,
)
from proxy.controllers.ec_put import (
    SYSMETA_ETAG,
    SYSMETA_LENGTH,
    ECPut,
    chunk_segments,
    input_segments,
)
from proxy.controllers.ec_segments import archive_range_hint
from proxy.controllers.obj_replicated import ObjectController, _Denied
from proxy.controllers.quorum import best_status

LOG = logging.getLogger("haneul.proxy")

# Client headers the object servers must not judge: they only know their archive.
READ_DROPPED = frozenset(
    ("range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range")
)
# Node answer headers that describe the archive, not the object.
ARCHIVE_HEADERS = frozenset(("etag", "content-range", "accept-ranges", "content-length"))
EC_SYSMETA_PREFIX = "x-object-sysmeta-ec-"


class ObjectMeta:
    """What a fragment's headers say about the whole object."""

    __slots__ = ("headers", "length", "etag", "last_modified", "content_type")

    def __init__(self, headers):
        self.headers = headers
        self.length = int(headers[SYSMETA_LENGTH])
        self.etag = (headers.get(SYSMETA_ETAG) or "").strip('"')
        self.last_modified = _http_date(headers.get("Last-Modified"))
        self.content_type = headers.get("Content-Type") or "application/octet-stream"

    def client_headers(self):
        """The object's headers for the client (no archive or EC-internal ones)."""
        out = [
            (key, value)
            for key, value in client_headers(self.headers)
            if key.lower() not in ARCHIVE_HEADERS and not key.lower().startswith(EC_SYSMETA_PREFIX)
        ]
        out.append(("ETag", self.etag))
        out.append(("Accept-Ranges", "bytes"))
        return out


def _http_date(value):
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def check_conditions(req, meta):
    """412, 304 or None: RFC 7232's order, against the whole object's ETag and date."""
    modified = meta.last_modified
    if req.headers.get("If-Match") is not None:
        if meta.etag not in req.if_match:
            return 412
    elif modified is not None and req.if_unmodified_since is not None:
        if modified > req.if_unmodified_since:
            return 412
    if req.headers.get("If-None-Match") is not None:
        if meta.etag in req.if_none_match:
            return 304
    elif modified is not None and req.if_modified_since is not None:
        if modified <= req.if_modified_since:
            return 304
    return None


def range_applies(req, meta):
    """False when an If-Range names another version (then the whole object is sent)."""
    value = (req.headers.get("If-Range") or "").strip()
    if not value:
        return True
    if value.startswith("W/"):
        return False
    if value.startswith('"'):
        return value.strip('"') == meta.etag
    return meta.last_modified is not None and _http_date(value) == meta.last_modified


class SegmentBody:
    """The app_iter of an EC GET: decoded segments trimmed to the ranges served.

    ``close`` frees the node connections even if iteration never started.
    """

    def __init__(self, stream, layout, ranges, boundary, content_type, path, trans_id):
        self.stream = stream
        self.layout = layout
        self.path = path
        self.trans_id = trans_id
        self._gen = self._body(ranges, boundary, content_type)

    def __iter__(self):
        return self._gen

    def close(self):
        self._gen.close()
        self.stream.close()

    def _body(self, ranges, boundary, content_type):
        try:
            if boundary:
                yield from multipart_body(
                    ranges, boundary, content_type, self.layout.length, self._read
                )
            else:
                for start, stop in ranges:
                    yield from self._read(start, stop)
        except (BackendError, FragmentError) as err:
            LOG.error("GET %s: stream broke: %s (%s)", self.path, err, self.trans_id)
        finally:
            self.stream.close()

    def _read(self, start, stop):
        layout = self.layout
        first, last = layout.segments_for(start, stop)
        for index in range(first, last):
            data = self.stream.segment(index)
            cut_from, cut_to = layout.trim(index, start, stop)
            if cut_from == 0 and cut_to == len(data):
                yield data
            else:
                yield data[cut_from:cut_to]


class ECObjectController(ObjectController):
    """GET, HEAD and PUT of one object in an erasure-coded policy (the rest inherited)."""

    # -- GET and HEAD ----------------------------------------------------------------

    def _get_or_head(self):
        try:
            _info, policy, ring = self._container_and_ring("read_acl")
        except _Denied as denied:
            return denied.response
        part = ring.get_part(self.account, self.container, self.obj)
        headers = self._object_headers(policy)
        for key in [k for k in headers if k.lower() in READ_DROPPED]:
            del headers[key]
        finder = FragmentFinder(self, policy, ring, part, self._path(part), headers)
        if self.req.method == "HEAD":
            return self._head(finder, policy)
        return self._get(finder, policy)

    def _head(self, finder, policy):
        timestamp, fragments = finder.find("HEAD", policy.ec_ndata, 1)
        close_all(fragments)
        if timestamp is None:
            return self._missing(finder, policy)
        meta = ObjectMeta(fragments[0].headers)
        resp = self._preconditions(meta)
        if resp is None:
            resp = Response(status=status_line(200), headerlist=meta.client_headers())
            resp.app_iter = []
            resp.content_length = meta.length
        return resp

    def _get(self, finder, policy):
        req = self.req
        k = policy.ec_ndata
        spec = parse_range_header(req.headers.get("Range"))
        method, hint = "GET", None
        if spec is not None:
            start, end = spec[0]
            if start is None:
                method = "HEAD"  # a suffix: where it starts depends on the length
            else:
                hint = archive_range_hint(start, end, policy.ec_segment_size, policy.fragment_size)
        timestamp, fragments = finder.find(method, k, k, archive_range=hint)
        if timestamp is None and finder.range_refused and not finder.found_any():
            # The range starts past every archive's end; the 416 needs the length.
            method = "HEAD"
            timestamp, fragments = finder.find("HEAD", k, 1)
        if timestamp is None:
            return self._missing(finder, policy)
        meta = ObjectMeta(fragments[0].headers)
        if method == "HEAD":
            close_all(fragments)
            finder.spares[:0] = [f.node for f in fragments]
            fragments = []
        try:
            resp = self._preconditions(meta)
            if resp is not None:
                close_all(fragments)
                return resp
            ranges = None
            if spec is not None and range_applies(req, meta):
                ranges = ranges_for_length(spec, meta.length)
                if not ranges:
                    raise HTTPError(
                        416,
                        "requested range not satisfiable",
                        {"Content-Range": f"bytes */{meta.length}"},
                    )
        except BaseException:
            close_all(fragments)
            raise
        return self._stream_response(finder, policy, meta, timestamp, fragments, ranges)

    def _stream_response(self, finder, policy, meta, timestamp, fragments, ranges):
        layout, runs = plan(policy, meta.length, ranges)
        stream = SegmentStream(finder, policy, layout, timestamp, runs, fragments)
        headers = meta.client_headers()
        boundary = None
        if ranges is None:
            status, length = 200, meta.length
            ranges = [(0, meta.length)] if meta.length else []
        elif len(ranges) == 1:
            start, stop = ranges[0]
            status, length = 206, stop - start
            headers.append(("Content-Range", content_range(start, stop, meta.length)))
        else:
            status = 206
            boundary = uuid.uuid4().hex
            length = multipart_length(ranges, boundary, meta.content_type, meta.length)
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", f"multipart/byteranges;boundary={boundary}"))
        resp = Response(status=status_line(status), headerlist=headers)
        resp.app_iter = SegmentBody(
            stream, layout, ranges, boundary, meta.content_type, finder.path, self.trans_id
        )
        resp.content_length = length
        return resp

    def _preconditions(self, meta):
        """A 304 response, a raised 412, or None when the request goes ahead."""
        outcome = check_conditions(self.req, meta)
        if outcome == 412:
            raise HTTPError(412, "precondition failed", {"ETag": meta.etag})
        if outcome == 304:
            resp = Response(status=status_line(304), headerlist=meta.client_headers())
            resp.app_iter = []
            return resp
        return None

    def _missing(self, finder, policy):
        """No version with enough fragments: 404 when it is gone, else 503."""
        empty = self.req.method == "HEAD"
        if finder.found_any():
            return plain_response(503, body=b"" if empty else b"too few fragments available\n")
        not_found = finder.statuses.count(404)
        if not_found and (
            finder.tombstone is not None
            or not_found > policy.ec_nparity
            or not_found == len(finder.statuses)
        ):
            return plain_response(404, body=b"" if empty else b"Not Found\n")
        return plain_response(503, body=b"" if empty else b"no object server answered\n")

    # -- POST and DELETE (inherited) ---------------------------------------------------

    def write_response(self, results, quorum=None, status_fn=best_status):
        """POST and DELETE reach every fragment's node and need a majority of them, as
        for replicas; the policy's k + 1 is the quorum of a PUT's commit only."""
        return super().write_response(results, len(results) // 2 + 1, status_fn)

    # -- PUT -------------------------------------------------------------------------

    def _client_body(self, policy, length):
        """The client's body cut into the policy's segments, for encoding."""
        return input_segments(
            self.req.environ,
            length,
            policy.ec_segment_size,
            self.app.client_timeout,
            self.app.max_object_size,
        )

    def _store(self, policy, ring, headers, body, length, extra_resp_headers=None):
        """Store ``body`` (chunks of any size; whole segments pass through as they are)."""
        client_etag = None
        for key in [k for k in headers if k.lower() == "etag"]:
            client_etag = headers.pop(key)
        timestamp = self._timestamp()
        part = ring.get_part(self.account, self.container, self.obj)
        writer = ECPut(self, policy, ring, part, timestamp)
        expires = headers.get("X-Delete-At")
        updates = self._container_updates(len(writer.primaries), expires)
        if expires:
            updates = [dict(u, **{"X-Delete-At": expires}) for u in updates]
        segments = chunk_segments(body, policy.ec_segment_size)
        return writer.run(headers, segments, length, client_etag, updates, extra_resp_headers)
