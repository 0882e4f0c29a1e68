"""The server runner: serve WSGI apps on eventlet, in one process or in pre-forked workers.

The apps know nothing of it: ``run_wsgi(app_or_factory, conf)`` serves one app, and
``serve(listeners, options)`` serves several (a storage node's object, container and
account apps, each on its own port). What it does:

- Listens on ``bind_ip:port`` (SO_REUSEADDR, never SO_REUSEPORT, so a port held by
  another server is an error, not a silent share), with ``backlog``.
- ``workers = 0`` serves in this process; ``workers = N`` forks N children that share the
  listening sockets, and the parent only supervises: a child that dies is replaced
  (at most once a second per slot, so a crashing app does not spin), and a child whose
  parent was killed stops by itself. ``auto`` is one worker per CPU. Workers share
  new connections fairly (``common.httpserver.AcceptBalance``).
- SIGTERM / SIGINT stop gracefully: stop accepting, let in-flight requests finish for up
  to ``shutdown_timeout`` seconds (their responses say ``Connection: close``), close idle
  keep-alive connections, exit 0. A second SIGINT/SIGTERM to a ``workers = 0`` server
  exits at once.
- SIGHUP reloads by re-executing the server (same command line) with the listening
  sockets handed over, so no connection is refused: the new process reads the config
  and code afresh and starts new workers; the old workers finish their requests and
  exit. With workers, the parent first checks that the new config loads (``reload_check``)
  and refuses the reload with a log line if not. With ``workers = 0`` the one process
  drains its requests first (new connections wait in the backlog), then re-executes.
- One log line per request (``common.logs.RequestLog``) unless ``log_requests = false``;
  eventlet's own access log and tracebacks-to-clients are off.
- The request body (``wsgi.input``) raises ``ClientDisconnect`` (an ``OSError``) when
  the client goes away before sending ``Content-Length`` bytes, instead of returning a
  short read the app might take for the end; chunked bodies raise ``OSError`` from
  eventlet itself, and a client that stalls longer than ``client_timeout`` raises
  ``TimeoutError`` (also an ``OSError``). An app that stores bodies catches ``OSError``
  around its reads and answers 499 without storing anything.

Call ``prepare_process()`` first thing in a server's main, before the apps are imported,
so that every socket (``http.client`` included) is green. The HTTP serving itself (accept
loop, draining, the guarded body) is in ``common.httpserver``.
"""

import errno
import logging
import os
import signal
import socket
import sys
import time
import warnings

from common import concurrency
from common.config import ConfigError, config_float, config_int, config_true
from common.httpserver import AcceptBalance, ClientDisconnect, GreenServer, ServedApp

__all__ = ["ClientDisconnect", "Listener", "ServerOptions", "prepare_process", "run_wsgi", "serve"]

LISTEN_FDS_ENV = "HANEUL_LISTEN_FDS"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SUPERVISOR_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}
RESPAWN_INTERVAL = 1.0  # seconds between two starts of the same worker slot
PARENT_CHECK_INTERVAL = 1.0  # seconds between a worker's checks that its parent lives

SERVER_DEFAULTS = {
    "bind_ip": "127.0.0.1",
    "workers": "auto",
    "backlog": "4096",
    "max_clients": "1024",
    "client_timeout": "60",
    "shutdown_timeout": "30",
    "log_requests": "true",
}

logger = logging.getLogger("haneul.wsgi")


class ServerOptions:
    """How to run the servers, read from a config section (strings) with defaults."""

    def __init__(self, conf=None):
        conf = {**SERVER_DEFAULTS, **(conf or {})}
        self.bind_ip = conf["bind_ip"].strip() or SERVER_DEFAULTS["bind_ip"]
        workers = str(conf["workers"]).strip().lower()
        if workers == "auto":
            self.workers = os.cpu_count() or 1
        else:
            self.workers = config_int(workers, "workers", minimum=0)
        self.backlog = config_int(conf["backlog"], "backlog", minimum=1)
        self.max_clients = config_int(conf["max_clients"], "max_clients", minimum=1)
        self.client_timeout = config_float(conf["client_timeout"], "client_timeout", minimum=0)
        self.shutdown_timeout = config_float(
            conf["shutdown_timeout"], "shutdown_timeout", minimum=0
        )
        self.log_requests = config_true(conf["log_requests"])


class Listener:
    """One listening socket and the app served on it.

    ``app`` is a WSGI app or a factory (a callable taking no arguments that returns
    one); a factory is called in each worker, after the fork, so per-process state
    (SQLite connections, caches) is never shared between processes.
    """

    def __init__(self, name, port, app, bind_ip=None, is_factory=False):
        self.name = name
        self.port = config_int(port, f"{name} port", minimum=0)
        self.bind_ip = bind_ip
        self.app = app
        self.is_factory = is_factory
        self.sock = None

    @property
    def address(self):
        host = self.bind_ip or "0.0.0.0"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def make_app(self):
        if self.is_factory:
            return self.app()
        return self.app


def prepare_process():
    """Make the process green (sockets, threads, time) before any app is imported."""
    concurrency.patch_process()


def run_wsgi(app, conf, name="haneul", port=None, is_factory=False):
    """Serve one app (or app factory) as ``conf`` says; returns the exit code.

    ``conf`` is a dict of string options: the server options above, plus ``port``.
    """
    options = ServerOptions(conf)
    port = port if port is not None else conf.get("port", "0")
    return serve([Listener(name, port, app, is_factory=is_factory)], options)


def serve(listeners, options, reload_check=None):
    """Listen, then serve the apps until stopped; returns the process's exit code (0).

    Raises ConfigError (before serving) if a port cannot be bound.
    """
    prepare_process()
    for listener in listeners:
        listener.bind_ip = listener.bind_ip or options.bind_ip
    bind_listeners(listeners, options.backlog)
    if options.workers == 0:
        return _serve_here(listeners, options, top_level=True)
    return _Supervisor(listeners, options, reload_check).run()


def bind_listeners(listeners, backlog=4096):
    """Open (or take over from a reloading parent) each listener's socket."""
    inherited = _inherited_sockets()
    try:
        for listener in listeners:
            key = (listener.bind_ip, listener.port)
            sock = inherited.pop(key, None)
            if sock is None:
                sock = _listen(listener.bind_ip, listener.port, backlog)
            listener.sock = sock
            listener.port = sock.getsockname()[1]
    except ConfigError:
        for listener in listeners:
            if listener.sock is not None:
                listener.sock.close()
                listener.sock = None
        raise
    finally:
        for sock in inherited.values():
            sock.close()


def _listen(bind_ip, port, backlog):
    try:
        family = socket.getaddrinfo(bind_ip, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise ConfigError(f"bad bind_ip {bind_ip!r}: {err.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 600)
        sock.bind((bind_ip, port))
        sock.listen(backlog)
    except OSError as err:
        sock.close()
        reason = err.strerror or str(err)
        if err.errno == errno.EADDRINUSE:
            reason = "address already in use"
        raise ConfigError(f"cannot listen on {bind_ip}:{port}: {reason}") from None
    return sock


def _inherited_sockets():
    """Listening sockets handed over by a re-executing server, keyed by (ip, port)."""
    spec = os.environ.pop(LISTEN_FDS_ENV, "")
    found = {}
    for item in filter(None, spec.split(",")):
        address, _, fd = item.rpartition("=")
        ip, _, port = address.rpartition("/")
        try:
            sock = socket.socket(fileno=int(fd))
        except (OSError, ValueError):
            logger.warning("ignoring bad inherited socket %r", item)
            continue
        sock.set_inheritable(False)
        found[(ip, int(port))] = sock
    return found


def _exec_self(listeners):
    """Replace this process by a fresh run of the same command, keeping the sockets."""
    handover = []
    for listener in listeners:
        listener.sock.set_inheritable(True)
        handover.append(f"{listener.bind_ip}/{listener.port}={listener.sock.fileno()}")
    env = dict(os.environ)
    env[LISTEN_FDS_ENV] = ",".join(handover)
    argv = [sys.executable, *sys.orig_argv[1:]]
    logger.info("reloading: exec %s", " ".join(argv))
    for handler in logging.getLogger("haneul").handlers:
        handler.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError as err:
        logger.error("reload failed: cannot exec %s: %s", sys.executable, err)
    for listener in listeners:
        listener.sock.set_inheritable(False)


def _serve_here(listeners, options, top_level, balance=None):
    """Serve every listener in this process until a signal; returns the exit code.

    ``top_level`` is the process that owns the sockets (``workers = 0``): SIGHUP reloads
    it, and a second SIGINT/SIGTERM exits at once. A worker treats SIGHUP as a stop
    and ignores repeated signals (its parent kills it if it outstays the timeout).
    """
    servers = [
        GreenServer(item, ServedApp(item.make_app(), options.log_requests, item.name), options)
        for item in listeners
    ]
    if balance is not None:
        for index, server in enumerate(servers):
            server.balance, server.index = balance, index
    stopping = concurrency.Event()

    def stop(action):
        if stopping.ready():
            if top_level and action == "stop":
                logger.warning("second stop signal: exiting without draining")
                os._exit(1)
            return
        stopping.send(action)
        for server in servers:
            server.stop_accepting()

    def on_signal(signum):
        reload = signum == signal.SIGHUP and top_level
        stop("reload" if reload else "stop")

    concurrency.on_signals((*STOP_SIGNALS, signal.SIGHUP), on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)
    if not top_level:
        concurrency.spawn(_watch_parent, os.getppid(), stop)
    for server in servers:
        server.start(on_failure=lambda: stop("failed"))
        if top_level:
            logger.info("%s server listening on %s", server.name, server.address)

    action = stopping.wait()
    deadline = time.monotonic() + options.shutdown_timeout
    if not all([server.drain(deadline) for server in servers]):
        logger.warning(
            "shutdown_timeout (%ss) passed with requests in flight; closing them",
            options.shutdown_timeout,
        )
    if action == "reload":
        _exec_self(listeners)  # returns only if exec failed
        return 1
    return 1 if action == "failed" else 0


def _watch_parent(parent_pid, stop):
    """A worker whose supervisor died (kill -9) stops too, rather than serve orphaned."""
    while os.getppid() == parent_pid:
        concurrency.sleep(PARENT_CHECK_INTERVAL)
    logger.warning("supervisor %d is gone; stopping", parent_pid)
    stop("stop")


class _Supervisor:
    """The parent of pre-forked workers: starts them, replaces dead ones, relays signals."""

    def __init__(self, listeners, options, reload_check):
        self.listeners = listeners
        self.options = options
        self.reload_check = reload_check
        self.children = {}  # pid -> slot number
        self.balance = AcceptBalance(options.workers, len(listeners))
        self.last_start = {}  # slot -> time it was last started
        self.clock = time.monotonic

    def run(self):
        # Signals are taken synchronously (sigtimedwait): no handler runs at a bad moment.
        signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
        for listener in self.listeners:
            workers = self.options.workers
            logger.info(
                "%s server listening on %s (%d worker%s)",
                listener.name,
                listener.address,
                workers,
                "" if workers == 1 else "s",
            )
        while True:
            self._start_missing()
            info = signal.sigtimedwait(SUPERVISOR_SIGNALS, RESPAWN_INTERVAL)
            self._reap()
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_signo == signal.SIGHUP:
                self._reload()
                continue
            return self._stop()

    def _start_missing(self):
        now = self.clock()
        running = set(self.children.values())
        for slot in range(self.options.workers):
            if slot in running:
                continue
            if now - self.last_start.get(slot, -RESPAWN_INTERVAL) < RESPAWN_INTERVAL:
                continue  # it died young: wait a little before trying again
            self.last_start[slot] = now
            with warnings.catch_warnings():
                # eventlet warns on every fork; forking before serving is what we mean.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                self._become_worker(slot)
            self.children[pid] = slot

    def _become_worker(self, slot):
        code = 1
        try:
            concurrency.fresh_hub()
            balance = None
            if self.options.workers > 1:
                balance = self.balance
                balance.join(slot)
            code = _serve_here(self.listeners, self.options, top_level=False, balance=balance)
        except BaseException:
            logger.exception("worker failed")
        finally:
            logging.shutdown()
            os._exit(code)

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is not None:
                self.balance.leave(slot)
                code = os.waitstatus_to_exitcode(status)
                logger.warning("worker %d exited (%s); starting another", pid, code)

    def _signal_children(self, signum):
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                self.children.pop(pid, None)

    def _reload(self):
        if self.reload_check is not None:
            try:
                self.reload_check()
            except Exception as err:  # whatever it is, the running servers stay up
                logger.error("reload refused, still serving the old config: %s", err)
                return False
        self._signal_children(signal.SIGTERM)  # they drain; the new process reaps them
        _exec_self(self.listeners)
        return False  # exec failed (logged): keep supervising, start new workers

    def _stop(self):
        self._signal_children(signal.SIGTERM)
        deadline = self.clock() + self.options.shutdown_timeout + 5
        while self.children and self.clock() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, max(0.0, deadline - self.clock()))
            self.children = {pid: s for pid, s in self.children.items() if not _reaped(pid)}
        if self.children:
            logger.warning("workers %s did not stop in time; killing them", list(self.children))
            self._signal_children(signal.SIGKILL)
            deadline = self.clock() + 5
            while self.children and self.clock() < deadline:
                signal.sigtimedwait({signal.SIGCHLD}, 0.1)
                self.children = {pid: s for pid, s in self.children.items() if not _reaped(pid)}
        return 0


def _reaped(pid):
    """Whether worker ``pid`` has exited (and is now reaped); never blocks."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid
