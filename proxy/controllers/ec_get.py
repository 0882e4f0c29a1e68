"""Reading an erasure-coded object: find k fragment archives, decode, stream.

``FragmentFinder`` asks k nodes at once (primaries first, data fragments first) and
more when some fail, answer 404, or hold another version: the object is the newest
timestamp for which k distinct fragment indexes answered, unless a tombstone is newer.
Only durable fragments are ever served by the object servers.

``SegmentStream`` then reads, for each segment, one fragment from each of the k
sources and decodes them. A source that breaks mid-stream or sends a fragment pyeclib
refuses is replaced by another node holding the same version, asked for the archive
bytes from that segment on. A byte range is served by decoding only the segments that
cover it (asking the nodes for those archive bytes) and trimming.
"""

import logging

from common.backend import BackendConnection, BackendError
from common.concurrency import Pile, spawn
from proxy.controllers.ec_put import FRAG_INDEX, SYSMETA_LENGTH
from proxy.controllers.ec_segments import Layout, segment_runs
from proxy.controllers.obj_get import CONTENT_RANGE_RE, answer_timestamp

LOG = logging.getLogger("haneul.proxy")


class FragmentError(Exception):
    """Too few good fragment archives to go on decoding."""


def node_key(node):
    return (node["ip"], node["port"], node["device"])


class Fragment:
    """A node's answer about its fragment archive; for a GET, the body still to read.

    ``offset`` is the archive offset of the next body byte, ``stop`` where the body ends.
    """

    __slots__ = (
        "node",
        "conn",
        "status",
        "headers",
        "timestamp",
        "frag_index",
        "offset",
        "stop",
        "primary",
    )

    def __init__(self, node, conn, primary=False):
        resp = conn.response
        self.node = node
        self.conn = conn
        self.status = resp.status
        self.headers = resp.msg
        self.timestamp = answer_timestamp(resp.msg)
        self.primary = primary
        self.frag_index = None
        self.offset = self.stop = 0
        if 200 <= self.status < 300:
            self._read_position()

    def _read_position(self):
        try:
            self.frag_index = int(self.headers.get(FRAG_INDEX, ""))
            int(self.headers.get(SYSMETA_LENGTH, ""))
        except ValueError:
            self.frag_index = None  # not a fragment archive: unusable
            return
        length = self.headers.get("Content-Length")
        match = CONTENT_RANGE_RE.match(self.headers.get("Content-Range") or "")
        if self.status == 206 and match:
            self.offset, self.stop = int(match.group(1)), int(match.group(2)) + 1
        elif self.status == 200 and length is not None:
            self.offset, self.stop = 0, int(length)
        else:
            self.frag_index = None  # multipart or unsized: not what was asked for

    @property
    def usable(self):
        return 200 <= self.status < 300 and self.frag_index is not None

    def read_exact(self, size):
        """The next ``size`` body bytes as bytes; BackendError if the body ends first."""
        data = self.conn.read(size)
        if len(data) != size:
            self.conn.close()
            raise BackendError(self.node, f"archive ended after {len(data)} of {size} bytes")
        self.offset += size
        return data

    def close(self):
        self.conn.close()


def close_all(fragments):
    for fragment in fragments:
        if fragment is not None:
            fragment.close()


def _close_late(pile):
    """Close the answers that arrive after a decision was made (run in the background)."""
    for answer in pile:
        if isinstance(answer, Fragment):
            answer.close()


class FragmentFinder:
    """Finds which version of an object to serve, and k nodes that hold it."""

    def __init__(self, controller, policy, ring, part, path, headers):
        self.controller = controller
        self.app = controller.app
        self.policy = policy
        self.ring = ring
        self.part = part
        self.path = path
        self.headers = headers
        self.nodes = controller.node_iter(ring, part)
        self.primary_keys = {node_key(n) for n in self.nodes.primaries}
        self.found = []  # timestamps of the versions nodes answered with
        self.statuses = []
        self.tombstone = None
        self.not_found_primaries = 0
        self.range_refused = False  # a node answered 416 to the archive range asked
        self.bad = set()  # node keys that failed us
        self.spares = []  # nodes known to hold the chosen version, not in use

    def open(self, node, method, headers):
        """A Fragment for ``node``, or None (after feeding the error limiter)."""
        try:
            conn = BackendConnection.open(
                node,
                method,
                self.path,
                headers,
                self.app.conn_timeout,
                self.app.recoverable_node_timeout,
            )
            conn.getresponse()
        except BackendError as err:
            self.controller.note_node_result(node, error=err)
            self.bad.add(node_key(node))
            return None
        self.controller.note_node_result(node, status=conn.response.status)
        return Fragment(node, conn, node_key(node) in self.primary_keys)

    def _best(self, buckets):
        """The newest version (timestamp, {frag index: Fragment}) not hidden by a tombstone."""
        for timestamp in sorted(buckets, reverse=True):
            if self.tombstone is None or timestamp > self.tombstone:
                return timestamp, buckets[timestamp]
            break
        return None, {}

    def find(self, method, need, enough, archive_range=None):
        """Ask nodes until the newest version has ``need`` fragments (or, once nothing
        is in flight, ``enough``). Returns (timestamp, [Fragment]) or (None, [])."""
        self.nodes = self.controller.node_iter(self.ring, self.part)
        self.not_found_primaries = 0
        self.range_refused = False
        headers = dict(self.headers)
        if archive_range is not None:
            start, end = archive_range
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        pile = Pile(max(need, len(self.nodes.primaries), 1))
        in_flight = 0
        buckets = {}
        extras = []

        def launch():
            node = next(self.nodes, None)
            if node is None:
                return False
            pile.spawn(self.open, node, method, headers)
            return True

        for _ in range(need):
            if not launch():
                break
            in_flight += 1
        chosen = None
        if in_flight:
            for answer in pile:
                in_flight -= 1
                self._sort(answer, buckets, extras)
                timestamp, best = self._best(buckets)
                if len(best) >= need or (not in_flight and best and len(best) >= enough):
                    chosen = timestamp
                    break
                # A GET wants k fragments of one version; a HEAD settles for what the
                # nodes asked say once one of them has the object.
                want = (need if len(best) < enough else 0) - len(best) - in_flight
                if not buckets and self.not_found_primaries >= len(self.nodes.primaries):
                    want = 0  # every primary said 404: not worth asking handoffs
                while want > 0 and launch():
                    in_flight += 1
                    want -= 1
                if not in_flight:
                    break
        if in_flight:
            spawn(_close_late, pile)
        if chosen is None:
            chosen = self._fallback(buckets, need, enough)
        fragments = []
        for timestamp, bucket in buckets.items():
            for fragment in bucket.values():
                if timestamp == chosen and len(fragments) < need:
                    fragments.append(fragment)
                else:
                    if timestamp == chosen:
                        self.spares.append(fragment.node)
                    fragment.close()
        close_all(extras)
        if chosen is not None and method == "GET":
            fragments.sort(key=lambda f: f.frag_index)
        return chosen, fragments

    def _sort(self, answer, buckets, extras):
        if isinstance(answer, Exception):
            LOG.error("GET %s failed: %r (%s)", self.path, answer, self.controller.trans_id)
            self.statuses.append(503)
            return
        if answer is None:
            self.statuses.append(503)
            return
        self.statuses.append(answer.status)
        if answer.status == 404:
            if answer.primary:
                self.not_found_primaries += 1
            if answer.timestamp is not None and (
                self.tombstone is None or answer.timestamp > self.tombstone
            ):
                self.tombstone = answer.timestamp
            answer.close()
            return
        if answer.status == 416:
            self.range_refused = True
            answer.close()
            return
        if not answer.usable or answer.timestamp is None:
            if 200 <= answer.status < 300:
                LOG.error(
                    "%s:%s/%s answered %s without fragment headers (%s)",
                    answer.node["ip"],
                    answer.node["port"],
                    answer.node["device"],
                    self.path,
                    self.controller.trans_id,
                )
            self.bad.add(node_key(answer.node))
            answer.close()
            return
        self.found.append(answer.timestamp)
        bucket = buckets.setdefault(answer.timestamp, {})
        if answer.frag_index in bucket:
            extras.append(answer)  # a second copy of one fragment index (a handoff)
            return
        bucket[answer.frag_index] = answer

    def _fallback(self, buckets, need, enough):
        """When the newest version is short of fragments: the newest one that has
        ``min(need, enough)`` (k for a GET, any for a HEAD)."""
        minimum = min(need, enough)
        for timestamp in sorted(buckets, reverse=True):
            if self.tombstone is not None and timestamp <= self.tombstone:
                break
            if len(buckets[timestamp]) >= minimum:
                return timestamp
        return None

    def found_any(self):
        """Whether some node holds a version newer than any tombstone seen."""
        return any(self.tombstone is None or t > self.tombstone for t in self.found)

    def replacement(self, timestamp, start, stop, taken):
        """A Fragment of version ``timestamp`` open at archive ``start`` (to ``stop``),
        from a node not in use whose fragment index is not in ``taken``; or None."""
        headers = dict(self.headers, Range=f"bytes={start}-{stop - 1}")
        while True:
            if self.spares:
                node = self.spares.pop(0)
            else:
                node = next(self.nodes, None)
                if node is None:
                    return None
            if node_key(node) in self.bad:
                continue
            fragment = self.open(node, "GET", headers)
            if fragment is None:
                continue
            if (
                fragment.usable
                and fragment.timestamp == timestamp
                and fragment.frag_index not in taken
                and fragment.offset == start
            ):
                return fragment
            fragment.close()


class SegmentStream:
    """The decoded segments of one object version, fetched run by run from k nodes."""

    def __init__(self, finder, policy, layout, timestamp, runs, sources):
        self.finder = finder
        self.driver = policy.driver
        self.k = policy.ec_ndata
        self.layout = layout
        self.timestamp = timestamp
        self.runs = list(runs)
        self.run = None
        self.sources = list(sources)  # open at the start of the first run, or empty
        self.next_segment = None
        self.cached_index = None
        self.cached = b""

    def close(self):
        close_all(self.sources)
        self.sources = []

    def segment(self, index):
        """The decoded bytes of segment ``index`` (asked for in the order of the runs)."""
        if index == self.cached_index:
            return self.cached
        if self.run is None or index != self.next_segment or index >= self.run[1]:
            self._start_run(index)
        data = self._decode(index)
        self.next_segment = index + 1
        self.cached_index, self.cached = index, data
        return data

    def _start_run(self, index):
        while self.runs and self.runs[0][0] != index:
            self.runs.pop(0)
        if not self.runs:
            raise FragmentError(f"segment {index} was not planned")
        self.run = self.runs.pop(0)
        start, stop = self.layout.archive_range(*self.run)
        if self.sources and all(s.offset == start and s.stop >= stop for s in self.sources):
            return  # the sources found the version are already where this run begins
        nodes = [s.node for s in self.sources]
        self.close()
        self.finder.spares[:0] = nodes
        self.sources = self._open_sources(start, stop)

    def _open_sources(self, start, stop):
        """k sources of distinct fragment indexes open at archive bytes [start, stop)."""
        finder = self.finder
        candidates = []
        while finder.spares and len(candidates) < self.k:
            node = finder.spares.pop(0)
            if node_key(node) not in finder.bad:
                candidates.append(node)
        headers = dict(finder.headers, Range=f"bytes={start}-{stop - 1}")
        pile = Pile(max(len(candidates), 1))
        for node in candidates:
            pile.spawn(finder.open, node, "GET", headers)
        sources, taken = [], set()
        for answer in pile:
            if isinstance(answer, Fragment):
                if (
                    answer.usable
                    and answer.timestamp == self.timestamp
                    and answer.frag_index not in taken
                    and answer.offset == start
                ):
                    sources.append(answer)
                    taken.add(answer.frag_index)
                    continue
                answer.close()
        while len(sources) < self.k:
            fragment = finder.replacement(self.timestamp, start, stop, taken)
            if fragment is None:
                close_all(sources)
                raise FragmentError(f"fewer than {self.k} fragment archives at byte {start}")
            sources.append(fragment)
            taken.add(fragment.frag_index)
        sources.sort(key=lambda s: s.frag_index)
        return sources

    def _decode(self, index):
        layout = self.layout
        size = layout.fragment_length(index)
        seg_length = layout.segment_length(index)
        start = layout.archive_range(index, index + 1)[0]
        run_stop = layout.archive_range(*self.run)[1]
        fragments = [None] * len(self.sources)
        for _attempt in range(len(self.sources) + 8):
            for slot, source in enumerate(self.sources):
                if fragments[slot] is not None:
                    continue
                try:
                    fragment = source.read_exact(size)
                except BackendError as err:
                    self.finder.controller.note_node_result(source.node, error=err)
                    self._replace(slot, start, run_stop)
                    break
                if not self._valid(fragment, source.frag_index, seg_length):
                    self._replace(slot, start, run_stop)
                    break
                fragments[slot] = fragment
            else:
                try:
                    data = self.driver.decode(fragments)
                except Exception as err:  # pyeclib's errors share no narrower base
                    raise FragmentError(
                        f"cannot decode segment {index}: {_pyeclib_message(err)}"
                    ) from None
                if len(data) != seg_length:
                    raise FragmentError(f"segment {index} decoded to {len(data)} bytes")
                return data
        raise FragmentError(f"segment {index}: too many bad fragment archives")

    def _valid(self, fragment, frag_index, seg_length):
        """Whether a fragment's pyeclib header is sound and says what it should."""
        try:
            meta = self.driver.get_metadata(fragment, formatted=True)
        except Exception as err:  # ECInvalidFragmentMetadata and its kin
            LOG.warning(
                "%s: bad fragment %s: %s (%s)",
                self.finder.path,
                frag_index,
                _pyeclib_message(err),
                self.finder.controller.trans_id,
            )
            return False
        if meta.get("index") != frag_index or meta.get("orig_data_size") != seg_length:
            LOG.warning(
                "%s: fragment says index %s size %s, expected %s and %s (%s)",
                self.finder.path,
                meta.get("index"),
                meta.get("orig_data_size"),
                frag_index,
                seg_length,
                self.finder.controller.trans_id,
            )
            return False
        return True

    def _replace(self, slot, start, stop):
        """Put another node's source in ``slot``, open at archive ``start``; or raise."""
        finder = self.finder
        gone = self.sources[slot]
        finder.bad.add(node_key(gone.node))
        gone.close()
        taken = {s.frag_index for i, s in enumerate(self.sources) if i != slot}
        fragment = finder.replacement(self.timestamp, start, stop, taken)
        if fragment is None:
            raise FragmentError(f"no other node has a fragment from archive byte {start}")
        LOG.info(
            "%s: fragment %s from %s:%s/%s replaces %s at archive byte %d (%s)",
            finder.path,
            fragment.frag_index,
            fragment.node["ip"],
            fragment.node["port"],
            fragment.node["device"],
            gone.frag_index,
            start,
            finder.controller.trans_id,
        )
        self.sources[slot] = fragment


def _pyeclib_message(err):
    """pyeclib's error text without its advice to read syslog."""
    return str(err).splitlines()[0].split(". Please inspect syslog")[0]


def plan(policy, length, ranges):
    """(layout, runs) to serve ``ranges`` (or the whole object) of ``length`` bytes."""
    layout = Layout.of(length, policy.ec_segment_size, policy.fragment_size_for)
    wanted = ranges if ranges else ([(0, length)] if length else [])
    return layout, segment_runs(layout, wanted) if wanted else []
