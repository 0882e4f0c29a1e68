"""Error limiting: stop asking a storage node that keeps failing, for a while.

A node that errors or times out ``limit`` times within ``interval`` seconds is skipped
until ``interval`` seconds have passed since its last error; a node that answers 507
(Insufficient Storage: the device is unmounted or full) is skipped at once. The state is
per proxy process, keyed by ``ip:port/device``.
"""

import threading
import time


def node_key(node):
    """``ip:port/device``: what identifies a storage node's device."""
    return f"{node['ip']}:{node['port']}/{node['device']}"


class ErrorLimiter:
    """Counts recent errors per node and says which nodes to skip."""

    def __init__(self, interval=60.0, limit=10, clock=time.monotonic):
        self.interval = float(interval)
        self.limit = int(limit)
        self.clock = clock
        self._stats = {}  # key -> [error count, time of last error]
        self._lock = threading.Lock()

    def is_limited(self, node):
        """True while ``node`` is being skipped; forgets it once ``interval`` has passed."""
        key = node_key(node)
        stats = self._stats.get(key)
        if stats is None:
            return False
        if self.clock() - stats[1] >= self.interval:
            with self._lock:
                self._stats.pop(key, None)
            return False
        return stats[0] >= self.limit

    def error(self, node):
        """Record one error (a failed connect, a timeout, a 5xx) from ``node``.

        Returns True if this error put the node over the limit.
        """
        key = node_key(node)
        now = self.clock()
        with self._lock:
            stats = self._stats.get(key)
            if stats is None or now - stats[1] >= self.interval:
                stats = self._stats[key] = [0, now]
            stats[0] += 1
            stats[1] = now
            return stats[0] == self.limit

    def limit_now(self, node):
        """Skip ``node`` for the next ``interval`` seconds (it answered 507)."""
        with self._lock:
            self._stats[node_key(node)] = [max(self.limit, 1), self.clock()]

    def errors(self, node):
        """How many recent errors count against ``node`` (for tests and logs)."""
        stats = self._stats.get(node_key(node))
        if stats is None or self.clock() - stats[1] >= self.interval:
            return 0
        return stats[0]
