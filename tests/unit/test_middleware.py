import logging

import pytest
from webob import Request, Response

from common.config import ConfigError
from common.http import HTTPError
from proxy.middleware import catch_errors, healthcheck, proxy_logging


def ok_app(environ, start_response):
    body = Request(environ).body
    resp = Response(body=b"hello " + body, content_type="text/plain")
    resp.headers["X-Seen-Trans-Id"] = environ.get("haneul.trans_id", "")
    resp.headers["X-Seen-Header"] = environ.get("HTTP_X_TRANS_ID", "")
    return resp(environ, start_response)


def failing_app(environ, start_response):
    raise RuntimeError("boom")


def late_failing_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("after start_response")


def http_error_app(environ, start_response):
    raise HTTPError(409, "conflict here")


def streaming_app(chunks, fail_after=None, length=None):
    def app(environ, start_response):
        headers = [("Content-Type", "application/octet-stream")]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        start_response("200 OK", headers)

        def body():
            for i, chunk in enumerate(chunks):
                if fail_after is not None and i == fail_after:
                    raise RuntimeError("mid-stream")
                yield chunk

        return body()

    return app


# -- catch_errors --------------------------------------------------------------------------


def test_catch_errors_makes_a_trans_id_and_passes_it_down():
    app = catch_errors.filter_factory({}, {})(ok_app)
    resp = Request.blank("/v1/a").get_response(app)
    trans_id = resp.headers["X-Trans-Id"]
    assert trans_id.startswith("tx")
    assert resp.headers["X-Openstack-Request-Id"] == trans_id
    assert resp.headers["X-Seen-Trans-Id"] == trans_id
    assert resp.headers["X-Seen-Header"] == trans_id


def test_catch_errors_does_not_trust_a_client_trans_id_but_keeps_the_extra():
    app = catch_errors.filter_factory({}, {"trans_id_suffix": "-dc1"})(ok_app)
    headers = {"X-Trans-Id": "txforged", "X-Trans-Id-Extra": "my job/" + "x" * 40}
    resp = Request.blank("/", headers=headers).get_response(app)
    trans_id = resp.headers["X-Trans-Id"]
    assert trans_id != "txforged"
    assert trans_id.endswith("-dc1my%20job%2F" + "x" * 25)  # the extra is cut to 32


def test_catch_errors_keeps_an_id_set_further_out():
    app = catch_errors.filter_factory({}, {})(ok_app)
    req = Request.blank("/", environ={"haneul.trans_id": "txouter"})
    assert req.get_response(app).headers["X-Trans-Id"] == "txouter"


def test_unexpected_exception_is_a_500_naming_the_transaction(caplog):
    app = catch_errors.filter_factory({}, {})(failing_app)
    with caplog.at_level(logging.ERROR, logger="haneul.proxy"):
        resp = Request.blank("/v1/a/c").get_response(app)
    assert resp.status_int == 500
    trans_id = resp.headers["X-Trans-Id"]
    assert trans_id in resp.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert trans_id in errors[0].getMessage()
    assert errors[0].exc_info[0] is RuntimeError


def test_exception_after_start_response_still_becomes_a_500(caplog):
    app = catch_errors.filter_factory({}, {})(late_failing_app)
    with caplog.at_level(logging.ERROR, logger="haneul.proxy"):
        resp = Request.blank("/").get_response(app, catch_exc_info=True)
    assert resp.status_int == 500
    assert len(caplog.records) == 1


def test_http_error_from_below_is_its_own_response_and_not_logged(caplog):
    app = catch_errors.filter_factory({}, {})(http_error_app)
    with caplog.at_level(logging.DEBUG, logger="haneul.proxy"):
        resp = Request.blank("/").get_response(app)
    assert resp.status_int == 409
    assert "conflict here" in resp.text
    assert resp.headers["X-Trans-Id"].startswith("tx")
    assert not caplog.records


def test_head_500_has_no_body():
    app = catch_errors.filter_factory({}, {})(failing_app)
    resp = Request.blank("/", method="HEAD").get_response(app)
    assert resp.status_int == 500
    assert resp.body == b""


def test_error_while_streaming_is_logged_once_and_raised(caplog):
    app = catch_errors.filter_factory({}, {})(streaming_app([b"a", b"b"], fail_after=1))
    resp = Request.blank("/").get_response(app)
    with caplog.at_level(logging.ERROR, logger="haneul.proxy"):
        with pytest.raises(RuntimeError, match="mid-stream"):
            resp.body  # noqa: B018
    assert len(caplog.records) == 1
    assert resp.headers["X-Trans-Id"] in caplog.records[0].getMessage()


def test_catch_errors_refuses_unknown_options():
    with pytest.raises(ConfigError, match="unknown option"):
        catch_errors.filter_factory({}, {"trans_id_sufix": "x"})


# -- healthcheck ---------------------------------------------------------------------------


def test_healthcheck_answers_ok_without_the_app():
    app = healthcheck.filter_factory({}, {})(failing_app)
    resp = Request.blank("/healthcheck").get_response(app)
    assert (resp.status_int, resp.body) == (200, b"OK")
    head = Request.blank("/healthcheck", method="HEAD").get_response(app)
    assert (head.status_int, head.body) == (200, b"")


def test_healthcheck_passes_other_paths_on():
    app = healthcheck.filter_factory({}, {})(ok_app)
    assert Request.blank("/healthcheck/x").get_response(app).body == b"hello "
    assert Request.blank("/v1/a").get_response(app).body == b"hello "


def test_healthcheck_disabled_by_file(tmp_path):
    flag = tmp_path / "disabled"
    app = healthcheck.filter_factory({}, {"disable_path": str(flag)})(ok_app)
    assert Request.blank("/healthcheck").get_response(app).status_int == 200
    flag.write_text("")
    resp = Request.blank("/healthcheck").get_response(app)
    assert (resp.status_int, resp.body) == (503, b"DISABLED BY FILE")
    flag.unlink()
    assert Request.blank("/healthcheck").get_response(app).status_int == 200


def test_healthcheck_refuses_unknown_options():
    with pytest.raises(ConfigError, match="disable_path"):
        healthcheck.filter_factory({}, {"disable": "/x"})


# -- proxy_logging -------------------------------------------------------------------------


def access_lines(caplog, name="haneul.proxy.access"):
    return [r.getMessage() for r in caplog.records if r.name == name]


def fields_of(line):
    names = "client remote method path status bytes_in bytes_out ms trans_id agent".split()
    values = line.split(" ")
    assert len(values) == len(names), line
    return dict(zip(names, values, strict=True))


def test_one_line_per_request_after_the_body(caplog):
    app = proxy_logging.filter_factory({}, {})(ok_app)
    req = Request.blank(
        "/v1/AUTH_test/c/my obj",
        method="PUT",
        body=b"12345",
        headers={"User-Agent": "python-swiftclient/4.4 (test)"},
        environ={"REMOTE_ADDR": "10.0.0.9", "haneul.trans_id": "txabc"},
    )
    caplog.set_level(logging.INFO, logger="haneul.proxy.access")
    resp = req.get_response(app)
    assert resp.body == b"hello 12345"
    lines = access_lines(caplog)
    assert len(lines) == 1
    fields = fields_of(lines[0])
    assert fields["client"] == fields["remote"] == "10.0.0.9"
    assert fields["method"] == "PUT"
    assert fields["path"] == "/v1/AUTH_test/c/my%20obj"
    assert fields["status"] == "200"
    assert fields["bytes_in"] == "5"
    assert fields["bytes_out"] == str(len(b"hello 12345"))
    assert float(fields["ms"]) >= 0
    assert fields["trans_id"] == "txabc"
    assert fields["agent"] == "python-swiftclient/4.4%20(test)"


def test_log_line_is_written_when_the_body_is_closed_not_before(caplog):
    app = proxy_logging.filter_factory({}, {})(streaming_app([b"ab", b"cde"], length=5))
    env = Request.blank("/x").environ
    statuses = []
    with caplog.at_level(logging.INFO, logger="haneul.proxy.access"):
        body = app(env, lambda status, headers, exc_info=None: statuses.append(status))
        chunks = [next(body), next(body)]
        assert access_lines(caplog) == []
        body.close()
        assert len(access_lines(caplog)) == 1  # closed before StopIteration, all bytes sent
        body.close()
    assert chunks == [b"ab", b"cde"]
    fields = fields_of(access_lines(caplog)[0])
    assert (fields["status"], fields["bytes_out"], fields["trans_id"]) == ("200", "5", "-")


def test_abandoned_body_logs_499_and_failed_app_500(caplog):
    app = proxy_logging.filter_factory({}, {})(streaming_app([b"ab", b"cde"]))
    env = Request.blank("/x").environ
    with caplog.at_level(logging.INFO, logger="haneul.proxy.access"):
        body = app(env, lambda *args: None)
        next(iter(body))
        body.close()
        failing = proxy_logging.filter_factory({}, {})(failing_app)
        with pytest.raises(RuntimeError):
            failing(Request.blank("/y").environ, lambda *args: None)
        broken = proxy_logging.filter_factory({}, {})(streaming_app([b"a"], fail_after=0))
        body = broken(Request.blank("/z").environ, lambda *args: None)
        with pytest.raises(RuntimeError):
            list(body)
        body.close()
    statuses = [
        (fields_of(line)["path"], fields_of(line)["status"]) for line in access_lines(caplog)
    ]
    assert statuses == [("/x", "499"), ("/y", "500"), ("/z", "500")]


def test_logged_path_keeps_the_raw_path_and_masks_signatures():
    env = Request.blank("/v1/a/c/o").environ
    env["QUERY_STRING"] = "temp_url_sig=secret&temp_url_expires=1&X-Amz-Signature=abc&x=a b"
    assert proxy_logging.logged_path(env) == (
        "/v1/a/c/o?temp_url_sig=...&temp_url_expires=1&X-Amz-Signature=...&x=a%20b"
    )
    env["RAW_PATH_INFO"] = "/v1/a/c/%E2%98%83"
    assert proxy_logging.logged_path(env).startswith("/v1/a/c/%E2%98%83?")
    env = Request.blank("/v1/a/c/%E2%98%83").environ  # PATH_INFO holds the raw bytes
    assert proxy_logging.logged_path(env) == "/v1/a/c/%E2%98%83"


def test_client_ip_prefers_the_load_balancers_word():
    env = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.5, 10.0.0.2"}
    assert proxy_logging.client_ip(env) == "203.0.113.5"
    assert proxy_logging.client_ip({"REMOTE_ADDR": "10.0.0.1"}) == "10.0.0.1"


def test_access_log_name_option(caplog):
    app = proxy_logging.filter_factory({}, {"access_log_name": "haneul.other"})(ok_app)
    caplog.set_level(logging.INFO, logger="haneul.other")
    assert Request.blank("/").get_response(app).body == b"hello "
    assert len(access_lines(caplog, "haneul.other")) == 1


def test_counting_input_passes_server_extras_through():
    class ServerInput:
        def __init__(self):
            self.continued = False

        def read(self, size=-1):
            return b"xyz"

        def send_hundred_continue_response(self):
            self.continued = True

    raw = ServerInput()
    counted = proxy_logging._CountingInput(raw)
    counted.send_hundred_continue_response()
    assert counted.read() == b"xyz" and counted.bytes_read == 3 and raw.continued
