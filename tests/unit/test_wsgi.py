"""The runner's pieces that need no server: guarded input, request log, router, options."""

import io
import json
import logging
import os
import socket

import pytest
from webob import Request, Response

from common import concurrency, header_fields
from common.config import ConfigError
from common.httpserver import AcceptBalance, GuardedInput, ServedApp
from common.logs import RequestLog, parse_level, setup_logging
from common.router import NodeRouter
from common.wsgi import LISTEN_FDS_ENV, ClientDisconnect, Listener, ServerOptions, bind_listeners

# -- the request body ------------------------------------------------------------------


def test_guarded_input_reads_a_whole_body():
    body = GuardedInput(io.BytesIO(b"abcdef"), 6)
    assert body.read(4) == b"abcd"
    assert body.read(4) == b"ef"
    assert body.read(4) == b""
    assert body.bytes_read == 6


def test_guarded_input_raises_when_the_client_hangs_up_early():
    body = GuardedInput(io.BytesIO(b"abc"), 10)
    assert body.read(8) == b"abc"
    with pytest.raises(ClientDisconnect) as err:
        body.read(8)
    assert isinstance(err.value, OSError)
    assert "7 body bytes unsent" in str(err.value)


def test_guarded_input_read_all_and_readline():
    assert GuardedInput(io.BytesIO(b"xyz"), 3).read() == b"xyz"
    with pytest.raises(ClientDisconnect):
        GuardedInput(io.BytesIO(b""), 3).read()
    lines = GuardedInput(io.BytesIO(b"a\nb\n"), 4)
    assert list(lines) == [b"a\n", b"b\n"]


def test_guarded_input_without_length_never_raises():
    body = GuardedInput(io.BytesIO(b"chunks"), None)
    assert body.read(100) == b"chunks"
    assert body.read(100) == b""


def test_guarded_input_passes_other_attributes_through():
    inner = io.BytesIO(b"")
    inner.hundred_continue_headers = None
    assert GuardedInput(inner, 0).hundred_continue_headers is None


# -- the request log -------------------------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines():
    logger = logging.getLogger("haneul.test-requests")
    handler = ListHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, handler.lines
    logger.removeHandler(handler)


def call(app, environ):
    """Run a WSGI app to completion like a server; (status, headers, body)."""
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return captured["status"], dict(captured["headers"]), body


def test_request_log_line_has_method_path_status_bytes_and_trans_id(log_lines):
    logger, lines = log_lines

    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("201 Created", [("X-Trans-Id", "tx123"), ("Content-Length", "5")])
        return [b"hello"]

    environ = Request.blank("/d1/3/a/c/o?x=1", method="PUT", body=b"abc").environ
    environ["RAW_PATH_INFO"] = "/d1/3/a/c/o"
    status, _, body = call(RequestLog(ServedApp(app, False, "x"), logger), environ)
    assert status == "201 Created"
    (line,) = lines
    client, method, path, code, sent, received, seconds, trans_id = line.split(" ")
    assert (method, path, code, sent, received, trans_id) == (
        "PUT",
        "/d1/3/a/c/o?x=1",
        "201",
        "5",
        "3",
        "tx123",
    )
    assert float(seconds) >= 0 and client


def test_request_log_counts_a_streamed_body_once_sent(log_lines):
    logger, lines = log_lines

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            yield b"a" * 10
            yield b"b" * 5

        return body()

    status, _, body = call(RequestLog(app, logger), Request.blank("/x").environ)
    assert len(body) == 15
    assert lines[0].split(" ")[3:5] == ["200", "15"]


def test_request_log_keeps_the_length_of_a_list_body(log_lines):
    logger, _ = log_lines

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"ab", b"cd"]

    result = RequestLog(app, logger)(Request.blank("/x").environ, lambda *a: None)
    assert len(result) == 2  # a server may add Content-Length from it


def test_request_log_logs_a_failing_app_as_500(log_lines):
    logger, lines = log_lines

    def app(environ, start_response):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        RequestLog(app, logger)(Request.blank("/x").environ, lambda *a: None)
    assert lines[0].split(" ")[3] == "500"


def test_request_log_reports_errors_while_streaming(log_lines):
    logger, lines = log_lines

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            yield b"partial"
            raise OSError("disk went away")

        return body()

    with pytest.raises(OSError):
        call(RequestLog(app, logger), Request.blank("/x").environ)
    assert any("error while sending the body" in line for line in lines)
    assert lines[-1].split(" ")[3:5] == ["200", "7"]


def test_served_app_guards_the_input_and_counts_bytes_read(log_lines):
    seen = {}

    def app(environ, start_response):
        seen["body"] = environ["wsgi.input"].read(100)
        start_response("204 No Content", [])
        return []

    environ = Request.blank("/x", method="PUT", body=b"12345").environ
    call(ServedApp(app, True, "test-requests"), environ)
    assert seen["body"] == b"12345"
    assert environ["haneul.client_input"].bytes_read == 5


def test_webob_apps_see_a_disconnect_as_an_oserror():
    class Echo:
        def __call__(self, environ, start_response):
            req = Request(environ)
            try:
                body = req.body_file.read()
            except OSError:
                return Response(status=499)(environ, start_response)
            return Response(body=body)(environ, start_response)

    environ = Request.blank("/x", method="PUT").environ
    environ["wsgi.input"] = io.BytesIO(b"short")
    environ["CONTENT_LENGTH"] = "100"
    status, _, _ = call(ServedApp(Echo(), False, "x"), environ)
    assert status.startswith("499")


def test_setup_logging_levels_and_stream():
    stream = io.StringIO()
    root = setup_logging("warning", stream=stream)
    try:
        logging.getLogger("haneul.unit").info("hidden")
        logging.getLogger("haneul.unit").warning("shown")
        assert "shown" in stream.getvalue() and "hidden" not in stream.getvalue()
        with pytest.raises(ConfigError):
            parse_level("loud")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.propagate = True
        root.setLevel(logging.NOTSET)


# -- the single-port router ------------------------------------------------------------


def named_app(name):
    def app(environ, start_response):
        body = json.dumps({"app": name, "path": environ["PATH_INFO"]}).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app


@pytest.fixture
def router():
    return NodeRouter(named_app("object"), named_app("container"), named_app("account"))


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/d1/1/a", "account"),
        ("PUT", "/d1/1/a/", "account"),
        ("GET", "/d1/1/a/c", "container"),
        ("GET", "/d1/1/a/c/", "container"),
        ("PUT", "/d1/1/a/c/o", "object"),
        ("PUT", "/d1/1/a/c/o/with/slashes/", "object"),
        ("REPLICATE", "/d1/1", "object"),
        ("REPLICATE", "/d1/1/abc-def", "object"),
        ("SSYNC", "/d1/1", "object"),
    ],
)
def test_router_sends_each_path_to_its_app(router, method, path, expected):
    status, _, body = call(router, Request.blank(path, method=method).environ)
    assert status == "200 OK" and json.loads(body)["app"] == expected


@pytest.mark.parametrize("kind", ["container", "account", "Object"])
def test_router_honours_the_backend_server_type_of_replication(router, kind):
    environ = Request.blank("/d1/1/abc", method="REPLICATE").environ
    environ["HTTP_X_BACKEND_SERVER_TYPE"] = kind
    _, _, body = call(router, environ)
    assert json.loads(body)["app"] == kind.lower()


@pytest.mark.parametrize(("method", "path"), [("GET", "/d1/1"), ("GET", "/d1"), ("GET", "/")])
def test_router_rejects_paths_that_name_no_app(router, method, path):
    status, _, _ = call(router, Request.blank(path, method=method).environ)
    assert status.startswith("400")


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("DELETE", "/d1/1/a/c/o", {"X-Backend-Server-Type": "container"}, "container"),
        ("PUT", "/d1/1/a/c", {"X-Backend-Server-Type": "account"}, "account"),
        ("PUT", "/d1/1/a/c/o", {"X-Size": "3", "X-Etag": "e"}, "container"),
        ("PUT", "/d1/1/a/c", {"X-Put-Timestamp": "1.00000"}, "account"),
        ("GET", "/d1/1/a/c/o", {"X-Size": "3"}, "object"),  # only a PUT is an update
        ("DELETE", "/d1/1/a/c/o", {}, "object"),
    ],
)
def test_router_sends_updates_between_servers_to_their_app(router, method, path, headers, expected):
    environ = Request.blank(path, method=method, headers=headers).environ
    _, _, body = call(router, environ)
    assert json.loads(body)["app"] == expected


def test_router_rejects_an_unknown_server_type(router):
    environ = Request.blank("/d1/1/a", method="GET").environ
    environ["HTTP_X_BACKEND_SERVER_TYPE"] = "proxy"
    status, _, body = call(router, environ)
    assert status.startswith("400") and b"proxy" in body


# -- options and sockets ---------------------------------------------------------------


def test_server_options_defaults_and_auto_workers():
    options = ServerOptions({})
    assert options.workers == (os.cpu_count() or 1)
    assert (options.bind_ip, options.backlog, options.max_clients) == ("127.0.0.1", 4096, 1024)
    assert options.log_requests is True
    assert ServerOptions({"workers": "0"}).workers == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [("workers", "many"), ("workers", "-1"), ("backlog", "0"), ("client_timeout", "soon")],
)
def test_server_options_reject_bad_values(key, value):
    with pytest.raises(ConfigError, match=key):
        ServerOptions({key: value})


def test_a_port_in_use_is_a_clear_config_error():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        listener = Listener("object", port, None, bind_ip="127.0.0.1")
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: address already in use"):
            bind_listeners([listener])
        assert listener.sock is None
    finally:
        holder.close()


def test_port_zero_binds_a_free_port_and_reports_it():
    listener = Listener("object", "0", None, bind_ip="127.0.0.1")
    bind_listeners([listener])
    try:
        assert listener.port > 0
        assert listener.sock.getsockname() == ("127.0.0.1", listener.port)
    finally:
        listener.sock.close()


def test_listening_sockets_are_taken_over_from_a_reloading_parent(monkeypatch):
    handed = socket.socket()
    handed.bind(("127.0.0.1", 0))
    handed.listen(1)
    port = handed.getsockname()[1]
    fd = os.dup(handed.fileno())
    handed.close()
    monkeypatch.setenv(LISTEN_FDS_ENV, f"127.0.0.1/{port}={fd}")
    listener = Listener("object", port, None, bind_ip="127.0.0.1")
    bind_listeners([listener])
    try:
        assert listener.sock.fileno() == fd
        assert LISTEN_FDS_ENV not in os.environ
        assert not os.get_inheritable(fd)
    finally:
        listener.sock.close()


def test_a_bad_bind_ip_is_a_config_error():
    with pytest.raises(ConfigError, match="bind_ip"):
        bind_listeners([Listener("object", 0, None, bind_ip="no.such.host.invalid")])


def test_accept_balance_defers_to_less_loaded_live_workers():
    balance = AcceptBalance(workers=3, listeners=2)
    balance.join(0)
    assert not balance.busier_than_others(0)  # alone: take everything
    balance.add(0, 2)
    balance.join(1)  # a second worker, with no connections yet
    balance.slot = 0
    assert balance.busier_than_others(0)
    assert not balance.busier_than_others(1)  # the other listener is even
    balance.leave(1)  # it died: its slot no longer counts
    assert not balance.busier_than_others(0)


# -- running calls side by side --------------------------------------------------------


def test_pile_yields_results_as_calls_finish_and_errors_as_values():
    pile = concurrency.Pile()
    pile.spawn(lambda: (concurrency.sleep(0.05), "slow")[1])
    pile.spawn(lambda: "fast")
    pile.spawn(lambda: 1 / 0)
    results = list(pile)
    assert results[0] == "fast"
    assert "slow" in results
    assert any(isinstance(r, ZeroDivisionError) for r in results)
    assert len(pile) == 0


def test_pile_first_and_timeouts():
    pile = concurrency.Pile(size=10)
    for delay in (0.0, 0.01, 5):
        pile.spawn(lambda d=delay: (concurrency.sleep(d), d)[1])
    assert sorted(pile.first(2, timeout=2)) == [0.0, 0.01]
    assert pile.waitall(timeout=0.05) == []  # the 5 s call is still running
    assert len(pile) == 1


def test_read_header_fields_splits_strips_and_joins_folded_lines():
    block = io.BytesIO(b"Host: a\r\nX-Meta:  spaced value \r\n\tmore\r\nEmpty:\r\n\r\nbody")
    fields = header_fields.read_header_fields(block)
    assert fields == [("Host", "a"), ("X-Meta", "spaced value more"), ("Empty", "")]
    assert block.read() == b"body"  # stops at the blank line
    headers = header_fields.HeaderFields(fields)
    assert headers.get("x-meta") == "spaced value more"
    assert headers.get("missing", "d") == "d"
    assert headers.get_content_type() == "text/plain"


def test_request_headers_get_returns_the_first_of_repeated_fields():
    headers = header_fields.HeaderFields([("X-A", "1"), ("x-a", "2")])
    assert headers.get("X-A") == "1"
    assert headers.get_all("x-A") == ["1", "2"]
    assert headers.get_all("missing") is None
    assert headers.keys() == ["X-A", "x-a"] and len(headers) == 2
    assert headers._headers == [("X-A", "1"), ("x-a", "2")]


@pytest.mark.parametrize(
    "line, expected",
    [
        (b"GET / HTTP/1.1\r\n", ("GET", "/", (1, 1))),
        (b"PUT /v1/a/c/o?x=1 HTTP/1.0\r\n", ("PUT", "/v1/a/c/o?x=1", (1, 0))),
    ],
)
def test_parse_request_line(line, expected):
    assert header_fields.parse_request_line(line) == expected


@pytest.mark.parametrize(
    "line", [b"GET /\r\n", b"GET / HTTP/1.1 extra\r\n", b"GET / HTTP/x.y\r\n", b"GET / FTP/1.1\r\n"]
)
def test_parse_request_line_refuses_what_is_not_http_1(line):
    with pytest.raises(header_fields.MalformedHeaders):
        header_fields.parse_request_line(line)


@pytest.mark.parametrize(
    "block, status",
    [
        (b"no colon\r\n\r\n", 400),
        (b"Bad Name: x\r\n\r\n", 400),
        (b" folded: first\r\n\r\n", 400),
        (b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
        (b"X-Long: " + b"v" * 70000 + b"\r\n\r\n", 431),
    ],
)
def test_read_header_fields_refuses_blocks_that_are_not_http(block, status):
    with pytest.raises(header_fields.MalformedHeaders) as caught:
        header_fields.read_header_fields(io.BytesIO(block))
    assert caught.value.status == status


def test_request_head_formats_and_refuses_what_cannot_be_sent():
    head = header_fields.request_head(
        "PUT", "/d1/3/a/c/o%20x", "127.0.0.1:6200", {"X-A": "1", "X-Skip": None, "N": 5}
    )
    assert head == (
        b"PUT /d1/3/a/c/o%20x HTTP/1.1\r\nHost: 127.0.0.1:6200\r\nX-A: 1\r\nN: 5\r\n\r\n"
    )
    for bad in ({"X-A": "one\r\nX-Injected: 1"}, {"Bad Name": "v"}, {"X-A": "nul\x00"}):
        with pytest.raises(ValueError):
            header_fields.request_head("GET", "/", "h:1", bad)
    with pytest.raises(ValueError):
        header_fields.request_head("GET", "/a b", "h:1", {})
