"""Open SQLite connections kept between requests, so that a write is one short transaction."""

import threading
from collections import OrderedDict


class ConnectionPool:
    """Open connections kept between requests, least recently used dropped first.

    Closing the last connection to a WAL database checkpoints the WAL into the file with
    an fsync: opening and closing per request caps a container at ~130 updates/s here.
    Keeping connections open makes an object-row update cost one short transaction.
    A connection is checked out (removed) while in use, so no two users ever share one;
    it is only reused if the path still names the same file (device, inode), so a
    database that was replaced, moved or unlinked is opened afresh. (SQLite notices that
    the file of a closing connection has moved and then leaves the WAL at the old path
    alone, so dropping such a stale connection cannot harm a new database there.)

    Whoever moves or replaces a database file must move its ``-wal``/``-shm`` with it or
    checkpoint first (``DatabaseBroker.checkpoint``): a stale WAL left at a path would be
    read as part of whatever database is put there next.
    """

    def __init__(self, size=64):
        self.size = size
        self._conns = OrderedDict()
        self._lock = threading.Lock()  # never held across a yield

    def take(self, path, file_id):
        """A pooled connection to ``path`` if it is still the same file, else None."""
        with self._lock:
            entry = self._conns.pop(path, None)
        if entry is None:
            return None
        conn, pooled_id = entry
        if pooled_id != file_id:
            conn.close()
            return None
        return conn

    def give(self, path, conn, file_id):
        """Keep ``conn`` for the next user of ``path`` (close it if the pool is full)."""
        evicted = []
        with self._lock:
            if self.size <= 0 or path in self._conns:
                evicted.append(conn)
            else:
                self._conns[path] = (conn, file_id)
                while len(self._conns) > self.size:
                    evicted.append(self._conns.popitem(last=False)[1][0])
        for old in evicted:
            old.close()

    def discard(self, path):
        """Close the pooled connection to ``path``, if any (before moving the file)."""
        with self._lock:
            entry = self._conns.pop(path, None)
        if entry is not None:
            entry[0].close()

    def clear(self):
        """Close every pooled connection."""
        with self._lock:
            entries, self._conns = list(self._conns.values()), OrderedDict()
        for conn, _id in entries:
            conn.close()


POOL = ConnectionPool()
