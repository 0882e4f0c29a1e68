"""Change counters shared by a server's forked worker processes.

Each worker keeps its own in-memory caches; when one worker changes a thing (a
container's ACLs, say) the others must stop trusting what they cached. A table of
counters in an anonymous shared mapping, made before the workers fork, lets a worker
bump the counter of what it changed and every worker see the bump on its next lookup,
at the cost of one memory read.
"""

import mmap
import zlib

SLOTS = 1 << 16
_MASK = (1 << 64) - 1


class SharedGenerations:
    """Counters keyed by any ``repr``-able key (hashed into a fixed table of slots).

    Two keys may share a slot; that only makes a cache entry look stale early, never
    fresh when it is not. Create it in the parent process before workers fork.
    """

    def __init__(self, slots=SLOTS):
        self.slots = slots
        # mmap(-1, ...) is anonymous and MAP_SHARED: forked children see the same pages.
        self._map = mmap.mmap(-1, slots * 8)
        self._counters = memoryview(self._map).cast("Q")

    def _slot(self, key):
        return zlib.crc32(repr(key).encode("utf-8")) % self.slots

    def current(self, key):
        """The counter of ``key`` now."""
        return self._counters[self._slot(key)]

    def bump(self, key):
        """Mark ``key`` changed for every process sharing the table."""
        slot = self._slot(key)
        self._counters[slot] = (self._counters[slot] + 1) & _MASK
