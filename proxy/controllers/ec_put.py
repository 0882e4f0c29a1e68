"""Writing an erasure-coded object: the client's body in, k + m fragment archives out.

Two phases, over plain HTTP to the object servers:

1. ``PUT`` with ``X-Backend-Ec-Frag-Index: i`` to primary ``i`` (a handoff standing in
   for one that cannot be reached). The body is read one segment at a time, each
   segment encoded into k + m fragments and fragment ``i`` sent to node ``i``, so an
   upload of any size holds about two segments. On the way the proxy takes the MD5 of
   the whole object (its ETag) and a CRC32 of each archive as sent (common.crc32: it
   only has to catch a transfer gone wrong, at a sixth of MD5's cost). A node stores
   ``<ts>#<i>.data``, not yet durable, and answers 201 with the CRC32 of what it
   stored.
2. When at least ``policy.quorum_size`` nodes stored an archive whose CRC32 matches and
   the client's ETag (if any) matches, ``POST`` with ``X-Backend-Ec-Commit: true`` to
   each of them carries what was only known at the end (whole-object ETag and length,
   the archive's CRC32) and the container update; the node makes its archive durable
   (``#d``) and updates the container. Nothing is readable before that.

An empty object has empty archives (pyeclib has nothing to encode) and is committed
with length 0.
"""

import hashlib
import logging
from email.utils import formatdate

from common.backend import BackendError
from common.concurrency import Pile
from common.crc32 import CRC32
from common.http import HTTPError
from proxy.controllers.base import plain_response
from proxy.controllers.ec_segments import Layout
from proxy.controllers.quorum import best_status, status_class
from proxy.controllers.streaming import collect_answers, read_client

LOG = logging.getLogger("haneul.proxy")

FRAG_INDEX = "X-Backend-Ec-Frag-Index"
COMMIT = "X-Backend-Ec-Commit"
SYSMETA_ETAG = "X-Object-Sysmeta-Ec-Etag"
SYSMETA_LENGTH = "X-Object-Sysmeta-Ec-Content-Length"
SYSMETA_SEGMENT_SIZE = "X-Object-Sysmeta-Ec-Segment-Size"
SYSMETA_ARCHIVE_ETAG = "X-Object-Sysmeta-Ec-Frag-Archive-Etag"


# -- the body, one segment at a time ---------------------------------------------------


def _read_full(stream, size, timeout):
    """``size`` bytes of the body (fewer only at its end), as one bytes object.

    A WSGI input normally hands back the whole amount in one read, straight into a
    fresh bytes object; a short read is topped up in a bytearray.
    """
    data = read_client(stream, size, timeout)
    if not data or len(data) >= size:
        return data
    buf = bytearray(data)
    while len(buf) < size:
        more = read_client(stream, size - len(buf), timeout)
        if not more:
            break
        buf += more
    return bytes(buf)


def input_segments(environ, length, segment_size, timeout, max_size):
    """Yield the client's body in segments of ``segment_size`` bytes (the last shorter).

    ``length`` is the Content-Length, or None for a chunked body (then at most
    ``max_size`` bytes are accepted). Raises HTTPError 499/408/413.
    """
    stream = environ["wsgi.input"]
    remaining = length
    received = 0
    while remaining is None or remaining > 0:
        want = segment_size if remaining is None else min(segment_size, remaining)
        data = _read_full(stream, want, timeout)
        if remaining is not None and len(data) < want:
            raise HTTPError(499, "client disconnected before sending the whole body")
        if not data:
            return
        received += len(data)
        if remaining is not None:
            remaining -= len(data)
        elif received > max_size:
            raise HTTPError(413, f"object larger than {max_size} bytes")
        yield data
        if len(data) < want:
            return


def chunk_segments(chunks, segment_size):
    """Regroup a body given in chunks of any size into segments of ``segment_size``.

    A chunk that is exactly one segment (and nothing is pending) passes unchanged.
    """
    pending = bytearray()
    for chunk in chunks:
        if not pending and len(chunk) == segment_size:
            yield bytes(chunk)
            continue
        pending += chunk
        while len(pending) >= segment_size:
            with memoryview(pending) as view:
                segment = bytes(view[:segment_size])
            del pending[:segment_size]
            yield segment
    if pending:
        yield bytes(pending)


# -- the two phases ---------------------------------------------------------------------


class ECPut:
    """One erasure-coded PUT: connect, stream fragments, check, commit, answer."""

    def __init__(self, controller, policy, ring, part, timestamp):
        self.controller = controller
        self.policy = policy
        self.ring = ring
        self.part = part
        self.timestamp = timestamp
        self.path = controller._path(part)
        self.primaries = ring.get_part_nodes(part)
        self.quorum = policy.quorum_size(len(self.primaries))
        self.archive_crc = {}  # frag index -> CRC32 of the archive as sent
        self.object_md5 = hashlib.md5()
        self.length = 0

    def put_headers(self, headers, length):
        """The phase-1 headers of each slot (fragment index)."""
        headers = {k: v for k, v in headers.items() if k.lower() not in ("etag", "content-md5")}
        headers["X-Timestamp"] = self.timestamp.internal
        headers[SYSMETA_SEGMENT_SIZE] = str(self.policy.ec_segment_size)
        headers.pop("Content-Length", None)
        headers.pop("Transfer-Encoding", None)
        if length is None:
            headers["Transfer-Encoding"] = "chunked"
        else:
            layout = Layout.of(length, self.policy.ec_segment_size, self.policy.fragment_size_for)
            headers["Content-Length"] = str(layout.archive_length)
        return [dict(headers, **{FRAG_INDEX: str(slot)}) for slot in range(len(self.primaries))]

    def run(self, headers, segments, length, client_etag, commit_extra, extra_resp_headers):
        """Store ``segments`` (an iterable of segment-sized bytes) and answer the client.

        ``commit_extra[slot]`` holds the container (and expiring queue) update headers
        of the node of each slot.
        """
        controller = self.controller
        slot_headers = self.put_headers(headers, length)
        putters, answers = controller._connect(
            self.ring, self.part, self.primaries, slot_headers, length != 0
        )
        try:
            early = [a.status for a in answers]
            if 412 in early:
                raise HTTPError(412, "the object already exists (If-None-Match: *)")
            if len(putters) < self.quorum:
                if early.count(409) >= self.quorum or (409 in early and not putters):
                    return plain_response(202)
                raise HTTPError(503, f"only {len(putters)} object servers could take the PUT")
            live = self._send(segments, putters)
        except BaseException:
            for putter in putters:
                putter.close()
            close = getattr(segments, "close", None)
            if close is not None:
                close()
            raise
        etag = self.object_md5.hexdigest()
        stored, statuses = self._stored(collect_answers(live))
        if client_etag and client_etag.strip('"').lower() != etag:
            raise HTTPError(422, "the body does not match the ETag given")
        if len(stored) < self.quorum:
            status = best_status(statuses, self.quorum)
            if status == 409:
                return plain_response(202)
            if status in (412, 413):
                raise HTTPError(status, "the object was not stored")
            raise HTTPError(503, f"only {len(stored)} fragment archives were stored")
        committed = self._commit(stored, commit_extra)
        if committed < self.quorum:
            raise HTTPError(503, f"only {committed} fragment archives were committed")
        resp_headers = [("Last-Modified", _http_date(self.timestamp)), ("ETag", etag)]
        resp_headers += list((extra_resp_headers or {}).items())
        return plain_response(201, resp_headers)

    def _send(self, segments, putters):
        """Encode every segment and send fragment ``i`` to the putter of slot ``i``.

        The object's MD5 and each archive's CRC32 are taken on the way, inline.
        (Hashing in an OS thread beside the sending was measured on this 2-core
        machine: no faster for a lone upload, more CPU for several.)
        """
        driver = self.policy.driver
        live = list(putters)
        for putter in live:
            self.archive_crc[putter.slot] = CRC32()
        object_md5 = self.object_md5
        archive_crc = self.archive_crc
        for segment in segments:
            self.length += len(segment)
            object_md5.update(segment)
            fragments = driver.encode(segment)
            for putter in list(live):
                fragment = fragments[putter.slot]
                archive_crc[putter.slot].update(fragment)
                try:
                    # A memoryview: a socket that takes part of it is sent the rest
                    # without the remainder being copied each time.
                    putter.send(memoryview(fragment))
                except BackendError as err:
                    self._drop(live, putter, err)
            if len(live) < self.quorum:
                raise HTTPError(503, "too few object servers kept up with the upload")
        for putter in list(live):
            try:
                putter.conn.finish()
            except BackendError as err:
                self._drop(live, putter, err)
        if len(live) < self.quorum:
            raise HTTPError(503, "too few object servers took the whole upload")
        return live

    def _drop(self, live, putter, err):
        putter.failed = err
        live.remove(putter)
        putter.close()
        self.controller._putter_failed(putter)

    def _stored(self, answers):
        """The putters whose node stored exactly what was sent, and every slot's status."""
        controller = self.controller
        stored, statuses = [], []
        for putter, status, headers in answers:
            if status is None:
                controller._putter_failed(putter)
                statuses.append(503)
                continue
            controller.note_node_result(putter.node, status=status)
            if status_class(status) == 2:
                sent = self.archive_crc[putter.slot].hexdigest()
                got = (headers.get("ETag") or "").strip('"')
                if got != sent:
                    LOG.error(
                        "PUT %s: %s:%s/%s stored archive %s with checksum %s, sent %s (%s)",
                        self.path,
                        putter.node["ip"],
                        putter.node["port"],
                        putter.node["device"],
                        putter.slot,
                        got,
                        sent,
                        controller.trans_id,
                    )
                    statuses.append(503)
                    continue
                stored.append(putter)
            statuses.append(status)
        statuses += [503] * (len(self.primaries) - len(statuses))
        return stored, statuses

    def _commit(self, stored, commit_extra):
        """Phase 2: make the stored archives durable; returns how many nodes did."""
        controller = self.controller
        base = controller.backend_headers(
            timestamp=self.timestamp,
            X_Backend_Storage_Policy_Index=str(self.policy.index),
        )
        base[COMMIT] = "true"
        base[SYSMETA_ETAG] = self.object_md5.hexdigest()
        base[SYSMETA_LENGTH] = str(self.length)
        pile = Pile(len(stored))
        for putter in stored:
            headers = dict(base, **commit_extra[putter.slot])
            headers[FRAG_INDEX] = str(putter.slot)
            headers[SYSMETA_ARCHIVE_ETAG] = self.archive_crc[putter.slot].hexdigest()
            pile.spawn(controller.call_node, putter.node, "POST", self.path, headers)
        committed = 0
        for result in pile:
            if isinstance(result, Exception):
                LOG.error("commit of %s failed: %r (%s)", self.path, result, controller.trans_id)
            elif result is not None and status_class(result.status) == 2:
                committed += 1
            elif result is not None:
                LOG.warning(
                    "commit of %s on %s:%s/%s answered %s (%s)",
                    self.path,
                    result.node["ip"],
                    result.node["port"],
                    result.node["device"],
                    result.status,
                    controller.trans_id,
                )
        return committed


def _http_date(timestamp):
    return formatdate(int(timestamp.timestamp), usegmt=True)
