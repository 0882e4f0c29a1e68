"""benchmarks/load.py against a tiny in-memory Swift-like server on loopback."""

import importlib.util
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

LOAD_PY = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"
_spec = importlib.util.spec_from_file_location("haneul_bench_load", LOAD_PY)
load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load)

TOKEN = "AUTH_tk_test"


class FakeSwift(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.containers: dict[str, dict[str, bytes]] = {}
        self.fail_put = lambda name: False  # name -> True: answer 503
        self.put_delay = 0.0  # seconds each object PUT takes
        self.truncate_get = False  # send half the body, then hang up
        self.requests: dict[str, int] = {}

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load tool expects

    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=None, length=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self):
        srv = self.server
        with srv.lock:
            srv.requests[self.command] = srv.requests.get(self.command, 0) + 1
        if self.path == "/auth/v1.0":
            ok = self.headers.get("X-Auth-User") == "test:tester"
            ok = ok and self.headers.get("X-Auth-Key") == "testing"
            if not ok:
                return self._reply(401)
            return self._reply(
                200, headers={"X-Storage-Url": f"{srv.url}/v1/AUTH_test", "X-Auth-Token": TOKEN}
            )
        body = b""
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            body = self.rfile.read(n)
        if self.headers.get("X-Auth-Token") != TOKEN:
            return self._reply(401)
        parts = self.path.split("/", 4)  # '', 'v1', 'AUTH_test', container[, object]
        if len(parts) < 4 or parts[1:3] != ["v1", "AUTH_test"]:
            return self._reply(404)
        cont, obj = parts[3], (parts[4] if len(parts) > 4 else None)
        with srv.lock:
            objs = srv.containers.get(cont)
            if obj is None:
                if self.command == "PUT":
                    srv.containers.setdefault(cont, {})
                    return self._reply(201)
                if self.command == "DELETE":
                    if objs is None:
                        return self._reply(404)
                    if objs:
                        return self._reply(409)
                    del srv.containers[cont]
                    return self._reply(204)
                return self._reply(405)
            if objs is None:
                return self._reply(404)
            if self.command == "PUT":
                if srv.fail_put(obj):
                    return self._reply(503)
                if srv.put_delay:
                    srv.lock.release()
                    try:
                        time.sleep(srv.put_delay)
                    finally:
                        srv.lock.acquire()
                objs[obj] = body
                return self._reply(201)
            data = objs.get(obj)
            if data is None:
                return self._reply(404)
            if self.command == "GET":
                if srv.truncate_get:
                    self.close_connection = True
                    return self._reply(200, data[: len(data) // 2], length=len(data))
                return self._reply(200, data)
            if self.command == "HEAD":
                return self._reply(200, length=len(data))
            if self.command == "DELETE":
                del objs[obj]
                return self._reply(204)
        return self._reply(405)

    do_GET = do_PUT = do_HEAD = do_DELETE = _route


@pytest.fixture
def swift():
    srv = FakeSwift()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _run(swift, capsys, *extra):
    argv = ["--auth-url", f"{swift.url}/auth/v1.0", "--user", "test:tester", "--key", "testing"]
    rc = load.main(argv + ["--json", "--duration", "10", *extra])
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        row = json.loads(line)
        rows[row["phase"]] = row
    return rc, rows


@pytest.mark.parametrize("processes", [1, 2])
def test_all_phases_count_ops_and_clean_up(swift, capsys, processes):
    rc, rows = _run(
        swift,
        capsys,
        "--size",
        "3k",
        "-c",
        "4",
        "-n",
        "25",
        "-p",
        str(processes),
        "--container",
        "bench",
    )
    assert rc == 0
    assert list(rows) == ["put", "get", "head", "delete"]
    for phase, row in rows.items():
        assert row["ops"] == 25, phase
        assert row["errors"] == 0 and row["errors_by_status"] == {}
        assert row["p50_ms"] is not None and row["p99_ms"] >= row["p50_ms"]
        assert row["processes"] == processes and row["concurrency"] == 4
    assert rows["put"]["bytes"] == rows["get"]["bytes"] == 25 * 3072
    assert rows["head"]["bytes"] == rows["delete"]["bytes"] == 0
    assert rows["put"]["ops_s"] == pytest.approx(25 / rows["put"]["wall_s"], rel=0.01)
    assert swift.containers == {}  # objects and container deleted at the end
    # nothing was deleted twice: 25 object DELETEs plus one container DELETE
    assert swift.requests["DELETE"] == 26


def test_errors_are_counted_by_status(swift, capsys):
    swift.fail_put = lambda name: name.endswith("0")  # obj00000000, obj00000010, ...
    rc, rows = _run(
        swift,
        capsys,
        "--size",
        "100",
        "-c",
        "3",
        "-n",
        "30",
        "--phases",
        "put,get",
        "--container",
        "errs",
    )
    assert rc == 1
    assert rows["put"]["ops"] == 27
    assert rows["put"]["errors"] == 3 and rows["put"]["errors_by_status"] == {"503": 3}
    # only the objects that were written are read back
    assert rows["get"]["ops"] == 27 and rows["get"]["errors"] == 0
    assert rows["put"]["bytes"] == rows["get"]["bytes"] == 2700
    assert swift.containers == {}


def test_duration_bounds_a_phase(swift):
    swift.put_delay = 0.05
    swift.containers["slow"] = {}
    stats, ok, tried = load.run_phase(
        "put",
        "swift",
        {"storage_url": f"{swift.url}/v1/AUTH_test", "token": TOKEN, "container": "slow"},
        load.array("l", range(1000)),
        prefix="obj",
        size=10,
        concurrency=2,
        processes=2,
        duration=0.3,
        payload=memoryview(b"x" * 10),
    )
    assert 2 <= stats["ops"] <= 40 and stats["wall_s"] < 1.5
    assert len(ok) == stats["ops"] == len(swift.containers["slow"])


def test_short_get_is_an_error(swift, capsys):
    swift.truncate_get = True
    rc, rows = _run(
        swift,
        capsys,
        "--size",
        "64k",
        "-c",
        "2",
        "-n",
        "5",
        "--phases",
        "put,get",
        "--container",
        "short",
    )
    assert rc == 1
    assert rows["put"]["ops"] == 5
    assert rows["get"]["ops"] == 0 and rows["get"]["errors_by_status"] == {"short": 5}


def test_keep_and_direct_token_and_missing_objects(swift, capsys):
    rc, rows = _run(
        swift,
        capsys,
        "--size",
        "1k",
        "-c",
        "2",
        "-n",
        "6",
        "--phases",
        "put",
        "--container",
        "kept",
        "--keep",
    )
    assert rc == 0 and rows["put"]["ops"] == 6
    assert len(swift.containers["kept"]) == 6
    del swift.containers["kept"]["obj00000002"]
    argv = [
        "--storage-url",
        f"{swift.url}/v1/AUTH_test",
        "--token",
        TOKEN,
        "--json",
        "--container",
        "kept",
        "--size",
        "1k",
        "-n",
        "6",
        "-c",
        "2",
        "--phases",
        "get,head",
    ]
    rc = load.main(argv)
    rows = {r["phase"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rc == 1
    assert rows["get"]["ops"] == 5 and rows["get"]["errors_by_status"] == {"404": 1}
    assert rows["head"]["ops"] == 5 and rows["head"]["errors_by_status"] == {"404": 1}
    assert swift.containers == {}  # no --keep: emptied and deleted


def test_refused_token_stops_before_the_phases(swift, capsys):
    argv = [
        "--storage-url",
        f"{swift.url}/v1/AUTH_test",
        "--token",
        "nope",
        "--json",
        "--container",
        "c",
        "-n",
        "4",
        "-c",
        "2",
        "--phases",
        "head",
        "--keep",
    ]
    assert load.main(argv) == 1  # the container PUT is refused: nothing runs
    assert capsys.readouterr().out == ""
    assert swift.requests == {"PUT": 1}


def test_bad_auth_key_fails(swift):
    with pytest.raises(RuntimeError, match="401"):
        load.swift_auth(f"{swift.url}/auth/v1.0", "test:tester", "wrong")


def test_connection_refused_counts_errors(capsys):
    # a port nobody listens on: every request is an error, none hang
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    stats, ok, tried = load.run_phase(
        "head",
        "swift",
        {
            "storage_url": f"http://127.0.0.1:{port}/v1/AUTH_x",
            "token": "t",
            "container": "c",
            "timeout": 2,
        },
        load.array("l", range(5)),
        prefix="obj",
        size=0,
        concurrency=2,
        processes=1,
        duration=5,
        payload=memoryview(b""),
    )
    assert stats["ops"] == 0 and len(ok) == 0 and len(tried) == 5
    assert stats["errors_by_status"] == {"exc:ConnectionRefusedError": 5}


def test_helpers():
    assert load.parse_size("4k") == 4096
    assert load.parse_size("1m") == 1 << 20
    assert load.parse_size("16MiB") == 16 << 20
    assert load.parse_size("123") == 123
    with pytest.raises(ValueError):
        load.parse_size("4x")
    assert load.percentile([], 50) is None
    vals = list(range(1, 101))
    assert load.percentile(vals, 50) == 50
    assert load.percentile(vals, 99) == 99
    assert load.percentile([7], 99) == 7
    assert load.split_threads(16, 2) == [8, 8]
    assert load.split_threads(5, 2) == [3, 2]
    assert load.split_threads(1, 4) == [1]
    assert "errors" in load.format_table([{"phase": "put", "ops": 1, "errors_by_status": {}}])
