"""Idle keep-alive connections to storage nodes, kept between backend requests.

A new TCP connection costs about 0.1 ms of CPU on each side, and one small object PUT
makes six backend requests. The servers speak HTTP/1.1 keep-alive, so
``common.backend`` gives a socket back here once an exchange ended cleanly, and takes
one from here before dialling. This module only holds sockets: whether an exchange
ended cleanly is for ``common.backend`` to say.

- Sockets are kept per (ip, port), at most ``max_idle`` of them; the most recently used
  one is handed out first, so that the others age out when traffic drops.
- A socket idle for more than ``max_age`` seconds is closed, not reused: that is well
  under the servers' idle timeout (``client_timeout``, 60 s by default), so we do not
  race a server that is closing it.
- Before reuse, a socket that became readable while idle (the peer closed or reset it,
  as a restarted or killed node does, or sent bytes nobody asked for) is closed.
- A forked child starts with an empty pool: the sockets it inherited are its parent's.
- ``HANEUL_BACKEND_KEEPALIVE=0`` in the environment, or ``POOL.enabled = False``, turns
  pooling off: every request then has a connection of its own, as before.
"""

import os
import socket
import threading
import time
from collections import deque

MAX_IDLE = 16  # idle sockets kept per node
MAX_AGE = 5.0  # seconds a socket may sit idle and still be reused
OFF_VALUES = ("0", "false", "no", "off")


def still_idle(sock):
    """True if nothing (no bytes, no end-of-file, no reset) arrived on ``sock`` while idle.

    A non-blocking peek: it never waits, so it is as safe in a green thread as in a
    plain one (eventlet's green ``select`` would switch to the hub even with a zero
    timeout, and it drops ``poll``). Leaves ``sock`` non-blocking: set a timeout before
    using it.
    """
    try:
        sock.settimeout(0.0)
        sock.recv(1, socket.MSG_PEEK)  # b"" at end-of-file, or bytes we did not ask for
    except BlockingIOError:
        return True
    except OSError:
        return False  # reset, or already closed
    return False


class BackendPool:
    """Idle sockets to storage nodes, keyed by (ip, port); see the module docstring.

    A socket is checked out (removed) while in use, so no two requests share one. The
    lock is only held around dict and deque operations, never across a yield, so a
    plain ``threading.Lock`` serves green and OS threads alike.
    """

    def __init__(self, max_idle=MAX_IDLE, max_age=MAX_AGE, enabled=None, clock=time.monotonic):
        if enabled is None:
            enabled = os.environ.get("HANEUL_BACKEND_KEEPALIVE", "1").lower() not in OFF_VALUES
        self.enabled = enabled
        self.max_idle = max_idle
        self.max_age = max_age
        self.clock = clock
        self._idle = {}  # (ip, port) -> deque of (socket, idle since), oldest first
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._next_sweep = clock() + max_age

    def take(self, key):
        """A live idle socket to ``key`` = (ip, port), or None (then dial a new one)."""
        if not self.enabled:
            return None
        stale = []
        try:
            while True:
                with self._lock:
                    stale.extend(self._check_pid())
                    idle = self._idle.get(key)
                    if not idle:
                        return None
                    sock, since = idle.pop()
                    if self.clock() - since > self.max_age:
                        # The newest is too old, so all older ones are: drop the lot.
                        stale.append(sock)
                        stale.extend(s for s, _ in idle)
                        del self._idle[key]
                        return None
                if still_idle(sock):
                    return sock
                stale.append(sock)
        finally:
            _close_all(stale)

    def give(self, key, sock):
        """Keep ``sock`` for the next request to ``key`` (closed if the pool is full or off)."""
        stale = []
        with self._lock:
            stale.extend(self._check_pid())
            now = self.clock()
            if not self.enabled or self.max_idle <= 0:
                stale.append(sock)
            else:
                idle = self._idle.setdefault(key, deque())
                idle.append((sock, now))
                while len(idle) > self.max_idle:
                    stale.append(idle.popleft()[0])
            if now >= self._next_sweep:
                self._next_sweep = now + self.max_age
                stale.extend(self._sweep(now))
        _close_all(stale)

    def idle_count(self, key=None):
        """How many idle sockets are kept (to ``key``, or to every node)."""
        with self._lock:
            if key is not None:
                return len(self._idle.get(key, ()))
            return sum(len(idle) for idle in self._idle.values())

    def clear(self):
        """Close every idle socket."""
        with self._lock:
            idle, self._idle = self._idle, {}
        _close_all(sock for entries in idle.values() for sock, _ in entries)

    def _check_pid(self):
        """In a forked child: forget the parent's sockets (returned, to be closed)."""
        pid = os.getpid()
        if pid == self._pid:
            return []
        self._pid = pid
        idle, self._idle = self._idle, {}
        # Closing the child's copy of a descriptor leaves the parent's connection alone.
        return [sock for entries in idle.values() for sock, _ in entries]

    def _sweep(self, now):
        """Pop every socket idle too long, so nodes no longer asked do not hold them."""
        expired = []
        for key in list(self._idle):
            idle = self._idle[key]
            while idle and now - idle[0][1] > self.max_age:
                expired.append(idle.popleft()[0])
            if not idle:
                del self._idle[key]
        return expired


def _close_all(socks):
    for sock in socks:
        sock.close()


POOL = BackendPool()
