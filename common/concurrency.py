"""Running calls side by side: with the runner (``common.wsgi``, ``common.httpserver``),
the only code that imports eventlet.

Servers and tools call these helpers instead of eventlet itself, so that the green-thread
library could be swapped without touching them:

- ``patch_process()`` makes sockets, ``time.sleep``, threads and ``select`` cooperative;
  the server runner calls it first thing, so ``http.client`` in the apps is green.
- ``spawn``, ``sleep``, ``Timeout`` and ``Event`` are the basic green-thread verbs.
- ``Pile`` runs calls side by side and hands back their results as they finish
  (a proxy writing to three object servers, a replicator asking its peers).
- ``run_in_thread`` runs a blocking call (a long fsync, a big SQLite query) in a real OS
  thread, so that other requests keep flowing while it blocks.
- ``on_signals``, ``wait_readable``, ``fresh_hub`` and ``quiet_hub`` serve the runner.
"""

import os
import signal
import warnings

with warnings.catch_warnings():
    # eventlet 0.40+ warns on import that it is in maintenance mode; we know (DESIGN 9).
    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.debug
    import eventlet.hubs
    import eventlet.patcher
    import eventlet.queue
    import eventlet.tpool

Timeout = eventlet.Timeout
Event = eventlet.Event
Semaphore = eventlet.Semaphore


def patch_process():
    """Make the whole process cooperative (sockets, time, threads, select, os).

    Call it before anything opens a socket or starts a thread; calling it twice is harmless.
    """
    if not eventlet.patcher.is_monkey_patched("socket"):
        eventlet.monkey_patch()


def is_patched():
    """Whether ``patch_process`` (or another monkey patch) made sockets green."""
    return eventlet.patcher.is_monkey_patched("socket")


def fresh_hub():
    """Drop this process's event hub so the next green call builds a new one.

    A forked child must call it before serving: the parent's hub (an epoll fd) would
    otherwise be shared between processes.
    """
    eventlet.hubs.use_hub()
    quiet_hub()


def quiet_hub():
    """Keep the hub from printing tracebacks of green threads that die (disconnects)."""
    eventlet.debug.hub_exceptions(False)


def on_signals(signums, callback):
    """Call ``callback(signum)`` in a green thread whenever one of ``signums`` arrives.

    The signal handler itself only wakes the hub (through ``signal.set_wakeup_fd``), so
    the callback runs between requests, never in the middle of one's bytecode. Returns
    the watching green thread.
    """
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in signums:
        signal.signal(signum, _ignore_signal)
    wanted = set(signums)

    def watch():
        while True:
            eventlet.hubs.trampoline(read_fd, read=True)
            try:
                data = os.read(read_fd, 64)
            except BlockingIOError:
                continue
            for signum in data:
                if signum in wanted:
                    callback(signum)

    return eventlet.spawn(watch)


def _ignore_signal(_signum, _frame):
    """The Python-level handler: the wakeup fd carries the signal to ``on_signals``."""


def spawn(func, *args, **kwargs):
    """Run ``func`` in a new green thread; ``.wait()`` on the result returns its value."""
    return eventlet.spawn(func, *args, **kwargs)


def sleep(seconds=0):
    """Yield to other green threads for ``seconds`` (0: just let others run)."""
    eventlet.sleep(seconds)


def wait_readable(fileno, timeout=None):
    """Block this green thread until ``fileno`` is readable (or ``timeout`` passes)."""
    eventlet.hubs.trampoline(fileno, read=True, timeout=timeout)


def run_in_thread(func, *args, **kwargs):
    """Run a blocking ``func`` in an OS thread pool and wait (green) for its result.

    Only in a process patched for eventlet (a server): elsewhere (tools, tests with real
    threads) the hub is not in charge, so the call is made directly.
    """
    if not eventlet.patcher.is_monkey_patched("thread"):
        return func(*args, **kwargs)
    return eventlet.tpool.execute(func, *args, **kwargs)


class Pile:
    """Run calls side by side; iterate to get their results in the order they finish.

    ``size`` caps how many run at once (further ``spawn`` calls wait for a free slot).
    A call that raises yields the exception object instead of a result, so that one bad
    peer does not hide the answers of the others::

        pile = Pile()
        for node in nodes:
            pile.spawn(put_to, node)
        for result in pile.results(timeout=10):
            ...
    """

    def __init__(self, size=1000):
        self._pool = eventlet.GreenPool(size)
        self._done = eventlet.queue.LightQueue()
        self._pending = 0

    def spawn(self, func, *args, **kwargs):
        """Start ``func(*args, **kwargs)``; its result arrives through iteration."""
        self._pending += 1
        self._pool.spawn_n(self._run, func, args, kwargs)

    def _run(self, func, args, kwargs):
        try:
            result = func(*args, **kwargs)
        except Exception as err:  # handed to the caller, who decides what it means
            result = err
        self._done.put(result)

    def __len__(self):
        """How many spawned calls have not been collected yet."""
        return self._pending

    def __iter__(self):
        return self.results()

    def results(self, timeout=None):
        """Yield results as calls finish; stop at ``timeout`` seconds, if given."""
        deadline = None if timeout is None else eventlet.hubs.get_hub().clock() + timeout
        while self._pending:
            wait = None
            if deadline is not None:
                wait = deadline - eventlet.hubs.get_hub().clock()
                if wait <= 0:
                    return
            try:
                result = self._done.get(timeout=wait)
            except eventlet.queue.Empty:
                return
            self._pending -= 1
            yield result

    def first(self, count, timeout=None):
        """The first ``count`` results (fewer if calls run out or time is up)."""
        collected = []
        if count <= 0:
            return collected
        for result in self.results(timeout):
            collected.append(result)
            if len(collected) >= count:
                break
        return collected

    def waitall(self, timeout=None):
        """Every remaining result that arrives within ``timeout``."""
        return list(self.results(timeout))
