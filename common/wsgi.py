"""The server runner: serve WSGI apps on eventlet, in one process or in pre-forked workers.

The apps know nothing of it: ``run_wsgi(app_or_factory, conf)`` serves one app, and
``serve(listeners, options)`` serves several (a storage node's object, container and
account apps, each on its own port). What it does:

- Listens on ``bind_ip:port`` (SO_REUSEADDR, never SO_REUSEPORT, so a port held by
  another server is an error, not a silent share), with ``backlog``.
- ``workers = 0`` serves in this process; ``workers = N`` forks N children that share the
  listening sockets, and the parent only supervises: a child that dies is replaced
  (at most once a second per slot, so a crashing app does not spin). ``auto`` is one
  worker per CPU.
- SIGTERM / SIGINT stop gracefully: stop accepting, let in-flight requests finish for up
  to ``shutdown_timeout`` seconds, close idle keep-alive connections, exit 0.
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
so that every socket (``http.client`` included) is green.
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
from common.logs import RequestLog

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet's maintenance-mode notice (DESIGN 9)
    import eventlet
    import eventlet.greenio
    import eventlet.wsgi

LISTEN_FDS_ENV = "HANEUL_LISTEN_FDS"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SUPERVISOR_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}
MINIMUM_WRITE_CHUNK = 65536  # coalesce small body chunks into writes of this size
RESPAWN_INTERVAL = 1.0  # seconds between two starts of the same worker slot
PARENT_CHECK_INTERVAL = 1.0  # seconds between a worker's checks that its parent lives
FRESH_GRACE = 0.5  # seconds a connection accepted just before a stop has to send a request
DRAIN_POLL = 0.02  # seconds between checks of a draining server's connections
ACCEPT_RETRY = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.EAGAIN, errno.EINTR))
ACCEPT_BACKOFF = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

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


class ClientDisconnect(OSError):
    """The client closed the connection before sending the whole request body."""


class ServerOptions:
    """How to run the servers, read from a config section (strings) with defaults."""

    def __init__(self, conf=None):
        conf = {**SERVER_DEFAULTS, **(conf or {})}
        self.bind_ip = conf["bind_ip"].strip()
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

    def __init__(self, name, port, app, bind_ip=None, is_factory=None):
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
    listener = Listener(name, port if port is not None else conf.get("port", "0"), app)
    listener.is_factory = is_factory
    return serve([listener], options)


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


class _GuardedInput:
    """``wsgi.input`` that raises ClientDisconnect instead of returning a short body."""

    def __init__(self, wsgi_input, content_length):
        self._input = wsgi_input
        self._remaining = content_length
        self.bytes_read = 0

    def _count(self, data, size):
        self.bytes_read += len(data)
        if self._remaining is not None:
            self._remaining -= len(data)
            if not data and self._remaining > 0 and size != 0:
                raise ClientDisconnect(
                    errno.ECONNRESET,
                    f"client disconnected with {self._remaining} body bytes unsent",
                )
        return data

    def read(self, size=-1):
        if size is None or size < 0:
            return self._count(self._input.read(), None)
        return self._count(self._input.read(size), size)

    def readline(self, size=None):
        return self._count(self._input.readline(size), size)

    def readlines(self, hint=None):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")

    def __getattr__(self, name):
        return getattr(self._input, name)


class _ServedApp:
    """The app as the runner serves it: guarded input, then the request log."""

    def __init__(self, app, log_requests, name):
        self.inner = app
        self.app = RequestLog(app, logging.getLogger(f"haneul.{name}")) if log_requests else app

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH")
        chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        guarded = _GuardedInput(
            environ["wsgi.input"], None if chunked or not length else int(length)
        )
        environ["wsgi.input"] = environ["haneul.client_input"] = guarded
        return self.app(environ, start_response)


def _serve_here(listeners, options, top_level):
    """Serve every listener in this process until a signal; returns the exit code.

    ``top_level`` is the process that owns the sockets (``workers = 0``): SIGHUP reloads
    it, and a second SIGINT/SIGTERM exits at once. A worker treats SIGHUP as a stop
    and ignores repeated signals (its parent kills it if it outstays the timeout).
    """
    servers = [
        _GreenServer(item, _ServedApp(item.make_app(), options.log_requests, item.name), options)
        for item in listeners
    ]
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


class _GreenServer:
    """eventlet's HTTP/1.1 protocol on one listening socket, with our accept loop.

    Our own loop (rather than ``eventlet.wsgi.server``) decides how a stop drains: once
    accepting stops, responses say ``Connection: close``; a keep-alive connection idle
    between requests is closed at once, but one accepted just before the stop gets
    ``FRESH_GRACE`` seconds to send its request, which is then served, not dropped.
    """

    def __init__(self, listener, app, options):
        self.name = listener.name
        self.address = listener.address
        self.sock = listener.sock
        self.protocol = eventlet.wsgi.Server(
            self.sock,
            self.sock.getsockname(),
            app,
            logger,
            log_output=False,
            debug=False,
            keepalive=True,
            minimum_chunk_size=MINIMUM_WRITE_CHUNK,
            socket_timeout=options.client_timeout or None,
        )
        self.pool = eventlet.GreenPool(options.max_clients)
        self.connections = {}  # id -> (eventlet's [addr, socket, state], accepted at)
        self.acceptor = None
        self.stopped = False

    def start(self, on_failure):
        self.acceptor = concurrency.spawn(self._accept_forever)

        def failed(acceptor):
            if not self.stopped:
                try:
                    acceptor.wait()
                except Exception:
                    logger.exception("%s server stopped accepting", self.name)
                on_failure()

        self.acceptor.link(failed)

    def _accept_forever(self):
        while True:
            try:
                client, address = self.sock.accept()
            except OSError as err:
                if err.errno in ACCEPT_RETRY:
                    continue
                if err.errno in ACCEPT_BACKOFF:  # out of fds or memory: let some close
                    logger.error("%s server cannot accept: %s", self.name, err)
                    concurrency.sleep(0.1)
                    continue
                raise
            client.settimeout(self.protocol.socket_timeout)
            conn = [address, client, eventlet.wsgi.STATE_IDLE]
            self.connections[id(conn)] = (conn, time.monotonic())
            self.pool.spawn(self.protocol.process_request, conn).link(self._closed, conn)

    def _closed(self, _thread, conn):
        self.connections.pop(id(conn), None)
        conn[2] = eventlet.wsgi.STATE_CLOSE
        eventlet.greenio.shutdown_safe(conn[1])
        conn[1].close()

    def stop_accepting(self):
        self.stopped = True
        if self.acceptor is not None:
            self.acceptor.kill()
        self.protocol.keepalive = False  # every response from now on closes its connection

    def drain(self, deadline):
        """Wait for in-flight requests until ``deadline``; True if none are left."""
        while self.connections:
            now = time.monotonic()
            if now >= deadline:
                return False
            for conn, accepted in list(self.connections.values()):
                if conn[2] == eventlet.wsgi.STATE_IDLE and now - accepted > FRESH_GRACE:
                    eventlet.greenio.shutdown_safe(conn[1])
            concurrency.sleep(DRAIN_POLL)
        return True


class _Supervisor:
    """The parent of pre-forked workers: starts them, replaces dead ones, relays signals."""

    def __init__(self, listeners, options, reload_check):
        self.listeners = listeners
        self.options = options
        self.reload_check = reload_check
        self.children = {}  # pid -> slot number
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
            pid = os.fork()
            if pid == 0:
                self._become_worker()
            self.children[pid] = slot

    def _become_worker(self):
        code = 1
        try:
            concurrency.fresh_hub()
            code = _serve_here(self.listeners, self.options, top_level=False)
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
            except ConfigError as err:
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
