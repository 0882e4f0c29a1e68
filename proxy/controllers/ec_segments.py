"""The arithmetic of an erasure-coded object: segments, fragments and byte ranges.

An object of ``length`` bytes is cut into segments of ``segment_size`` bytes (the last
one shorter, and none at all for an empty object). Each segment is encoded into k + m
fragments; fragment ``i`` of every segment, end to end, is the fragment archive that
node ``i`` stores. Every fragment of a whole segment is ``fragment_size`` bytes (the
pyeclib header included); those of the last segment are ``last_fragment_size``. So::

    segment j   = object bytes   [j * segment_size,  j * segment_size + its length)
    fragment j  = archive bytes  [j * fragment_size, j * fragment_size + its length)

A client's byte range is served by decoding the segments that cover it (read from the
same archive ranges on k nodes) and trimming the first and the last. Pure functions,
no I/O, no pyeclib: the sizes come in as numbers.
"""


def segment_count(length, segment_size):
    """How many segments an object of ``length`` bytes has (0 for an empty object)."""
    return -(-length // segment_size)


class Layout:
    """Where the segments of one object are, in the object and in each fragment archive."""

    __slots__ = (
        "length",
        "segment_size",
        "fragment_size",
        "last_fragment_size",
        "num_segments",
        "last_segment_length",
        "archive_length",
    )

    def __init__(self, length, segment_size, fragment_size, last_fragment_size):
        if length < 0 or segment_size < 1:
            raise ValueError("length must be >= 0 and segment_size >= 1")
        self.length = length
        self.segment_size = segment_size
        self.fragment_size = fragment_size
        self.num_segments = segment_count(length, segment_size)
        if self.num_segments:
            self.last_segment_length = length - (self.num_segments - 1) * segment_size
            self.last_fragment_size = last_fragment_size
            self.archive_length = (self.num_segments - 1) * fragment_size + last_fragment_size
        else:
            self.last_segment_length = 0
            self.last_fragment_size = 0
            self.archive_length = 0

    @classmethod
    def of(cls, length, segment_size, fragment_size_for):
        """The layout of ``length`` bytes; ``fragment_size_for(n)`` sizes an n-byte segment."""
        count = segment_count(length, segment_size)
        whole = fragment_size_for(segment_size)
        if not count:
            return cls(length, segment_size, whole, 0)
        last = length - (count - 1) * segment_size
        last_fragment = whole if last == segment_size else fragment_size_for(last)
        return cls(length, segment_size, whole, last_fragment)

    def segment_length(self, index):
        """Bytes of object data in segment ``index``."""
        if index == self.num_segments - 1:
            return self.last_segment_length
        return self.segment_size

    def fragment_length(self, index):
        """Bytes of each fragment of segment ``index``."""
        if index == self.num_segments - 1:
            return self.last_fragment_size
        return self.fragment_size

    def segment_bounds(self, index):
        """(start, stop) of segment ``index`` in the object."""
        start = index * self.segment_size
        return start, start + self.segment_length(index)

    def segments_for(self, start, stop):
        """(first, stop_segment) of the segments that hold object bytes [start, stop).

        ``0 <= start < stop <= length``; ``stop_segment`` is exclusive.
        """
        if not 0 <= start < stop <= self.length:
            raise ValueError(f"range {start}-{stop} is not inside {self.length} bytes")
        return start // self.segment_size, (stop - 1) // self.segment_size + 1

    def archive_range(self, first, stop_segment):
        """(start, stop) in every fragment archive of segments [first, stop_segment)."""
        if not 0 <= first < stop_segment <= self.num_segments:
            raise ValueError(f"segments {first}-{stop_segment} out of {self.num_segments}")
        start = first * self.fragment_size
        stop = (stop_segment - 1) * self.fragment_size + self.fragment_length(stop_segment - 1)
        return start, stop

    def trim(self, index, start, stop):
        """(from, to) of the bytes of segment ``index`` that fall in object range [start, stop)."""
        seg_start, seg_stop = self.segment_bounds(index)
        return max(start, seg_start) - seg_start, min(stop, seg_stop) - seg_start


def segment_runs(layout, ranges):
    """The segments to decode for ``ranges`` (object (start, stop) pairs), in serving order.

    Returns a list of (first, stop_segment) runs of consecutive segments: one fetch of
    archive bytes each. A segment shared by the end of one range and the start of the
    next is decoded once (the runs join there).
    """
    runs = []
    for start, stop in ranges:
        first, last = layout.segments_for(start, stop)
        if runs and runs[-1][1] - 1 <= first <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(runs[-1][1], last))
        else:
            runs.append((first, last))
    return runs


def archive_range_hint(start, end, segment_size, fragment_size):
    """The archive bytes to ask for when a client wants ``bytes=start-end`` and the
    object's length is not known yet; ``end`` inclusive, or None (to the end).

    Returns (archive_start, archive_end inclusive or None). Whatever the length turns
    out to be, the segments covering the satisfiable part of the range start at
    ``archive_start`` and end at or before ``archive_end`` (a node stops at the end of
    its archive anyway).
    """
    first = start // segment_size
    if end is None:
        return first * fragment_size, None
    last = end // segment_size
    return first * fragment_size, (last + 1) * fragment_size - 1
