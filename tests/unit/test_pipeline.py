import os
import sys
import textwrap
import types
import uuid
from array import array
from pathlib import Path

import pytest
from webob import Request, Response

import proxy
from common.config import ConfigError
from proxy import pipeline
from proxy.middleware.catch_errors import CatchErrors
from proxy.middleware.healthcheck import HealthCheck
from proxy.middleware.proxy_logging import ProxyLogging
from proxy.middleware.slo import StaticLargeObject
from proxy.middleware.tempauth import TempAuth
from proxy.s3api import S3ApiMiddleware
from ring.ringfile import RingData

REPO = Path(__file__).resolve().parents[2]

FAKE_MODULE = """
from webob import Response

built = []


class App:
    def __init__(self, conf):
        self.conf = conf

    def __call__(self, environ, start_response):
        hook = environ.get("haneul.authorize")
        if hook is not None and environ["PATH_INFO"].startswith("/v1/"):
            environ["haneul.acl"] = None
            denied = hook(__import__("webob").Request(environ))
            if denied is not None:
                return denied(environ, start_response)
        return Response(text="app " + self.conf.get("greeting", ""))(environ, start_response)


def app_factory(global_conf, local_conf):
    conf = dict(global_conf, **local_conf)
    built.append(conf)
    return App(conf)


class Tag:
    def __init__(self, app, tag):
        self.app, self.tag = app, tag

    def __call__(self, environ, start_response):
        environ.setdefault("tags", []).append(self.tag)
        return self.app(environ, start_response)


def filter_factory(global_conf, local_conf):
    return lambda app: Tag(app, local_conf.get("tag", "x"))


not_callable = 42
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A module with an app and a filter factory, importable by a unique name."""
    package = f"fake_pipeline_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "mod.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{package}.mod"
    sys.modules.pop(f"{package}.mod", None)
    sys.modules.pop(package, None)


@pytest.fixture
def write_conf(tmp_path):
    def write(text):
        path = tmp_path / "proxy.conf"
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


def use_proxy_server(monkeypatch, module):
    """Stand ``module`` in for ``proxy.server``, imported already or not."""
    monkeypatch.setitem(sys.modules, "proxy.server", module)
    monkeypatch.setattr(proxy, "server", module, raising=False)


def layers(app):
    """The pipeline's objects from the outside in."""
    out = [app]
    while hasattr(out[-1], "app"):
        out.append(out[-1].app)
    return out


def test_builds_the_filters_in_order_around_the_app(fake, write_conf):
    path = write_conf(
        f"""
        [DEFAULT]
        greeting = hi
        secret = shared

        [pipeline:main]
        pipeline = catch_errors healthcheck proxy_logging tempauth main

        [filter:catch_errors]
        use = egg:swift#catch_errors

        [filter:healthcheck]
        [filter:proxy_logging]
        use = proxy_logging

        [filter:tempauth]
        use = tempauth
        user_test_Tester = testing .admin

        [app:main]
        use = {fake}
        greeting = hello
        """
    )
    app = pipeline.build_pipeline(path)
    kinds = [type(layer) for layer in layers(app)]
    assert kinds[:4] == [CatchErrors, HealthCheck, ProxyLogging, TempAuth]
    assert type(layers(app)[-1]).__name__ == "App"
    built = sys.modules[fake].built[-1]
    assert built["greeting"] == "hello"  # the section overrides [DEFAULT]
    assert built["secret"] == "shared"
    assert built["__file__"] == path and built["here"] == os.path.dirname(path)
    assert Request.blank("/healthcheck").get_response(app).body == b"OK"
    resp = Request.blank(
        "/auth/v1.0", headers={"X-Auth-User": "test:Tester", "X-Auth-Key": "testing"}
    ).get_response(app)
    assert resp.status_int == 200  # option names keep their case
    token = resp.headers["X-Auth-Token"]
    resp = Request.blank("/v1/AUTH_test", headers={"X-Auth-Token": token}).get_response(app)
    assert resp.text == "app hello"
    assert resp.headers["X-Trans-Id"].startswith("tx")
    assert Request.blank("/v1/AUTH_test").get_response(app).status_int == 401


def test_module_paths_and_module_attr_forms(fake, write_conf):
    path = write_conf(
        f"""
        [pipeline:main]
        pipeline = one two app

        [filter:one]
        use = {fake}
        tag = first

        [filter:two]
        use = {fake}:filter_factory
        tag = second

        [app:app]
        use = {fake}:app_factory
        """
    )
    seen = []
    app = pipeline.build_pipeline(path)
    env = Request.blank("/x").environ
    app(env, lambda *args: seen.append(args))
    assert env["tags"] == ["first", "second"]


def test_the_registry_is_open(fake, write_conf, monkeypatch):
    monkeypatch.setitem(pipeline.FILTERS, "tagger", f"{fake}:filter_factory")
    monkeypatch.setitem(pipeline.APPS, "fakeapp", f"{fake}:app_factory")
    pipeline.register("filter", "tagger2", f"{fake}:filter_factory")
    try:
        path = write_conf(
            """
            [pipeline:main]
            pipeline = tagger tagger2 fakeapp
            [filter:tagger]
            [filter:tagger2]
            [app:fakeapp]
            """
        )
        assert type(pipeline.build_pipeline(path)).__name__ == "Tag"
    finally:
        pipeline.FILTERS.pop("tagger2")


def test_proxy_app_factory_uses_proxy_server(monkeypatch):
    created = []

    class ProxyApp:
        def __init__(self, conf, logger=None):
            created.append(conf)

    use_proxy_server(monkeypatch, types.SimpleNamespace(ProxyApp=ProxyApp))
    app = pipeline.app_factory({"a": "1", "b": "1"}, {"b": "2"})
    assert isinstance(app, ProxyApp)
    assert created == [{"a": "1", "b": "2"}]
    own = types.SimpleNamespace(app_factory=lambda g, loc: ("own", g, loc), ProxyApp=ProxyApp)
    use_proxy_server(monkeypatch, own)
    assert pipeline.app_factory({"a": "1"}, {}) == ("own", {"a": "1"}, {})


def test_the_sample_proxy_conf_builds(monkeypatch):
    monkeypatch.setenv("HANEUL_CONF", str(REPO / "etc" / "haneul.conf"))

    class ProxyApp:
        def __init__(self, conf, logger=None):
            self.conf = conf

        def __call__(self, environ, start_response):
            denied = environ["haneul.authorize"](Request(environ))
            resp = denied or Response(text="proxied")
            return resp(environ, start_response)

    use_proxy_server(monkeypatch, types.SimpleNamespace(ProxyApp=ProxyApp))
    app = pipeline.build_pipeline(str(REPO / "etc" / "proxy.conf"))
    assert [type(layer) for layer in layers(app)] == [
        CatchErrors,
        HealthCheck,
        ProxyLogging,
        S3ApiMiddleware,
        TempAuth,
        StaticLargeObject,
        ProxyApp,
    ]
    for user, key, account in [
        ("test:tester", "testing", "AUTH_test"),
        ("test2:tester2", "testing2", "AUTH_test2"),
        ("admin:admin", "admin", "AUTH_admin"),
    ]:
        resp = Request.blank(
            "/auth/v1.0", headers={"X-Auth-User": user, "X-Auth-Key": key}
        ).get_response(app)
        assert resp.headers["X-Storage-Url"] == f"http://localhost:80/v1/{account}"
        token = resp.headers["X-Auth-Token"]
        resp = Request.blank(f"/v1/{account}", headers={"X-Auth-Token": token}).get_response(app)
        assert resp.text == "proxied"
    resp = Request.blank(
        "/auth/v1.0", headers={"X-Auth-User": "test:tester3", "X-Auth-Key": "testing3"}
    ).get_response(app)
    token = resp.headers["X-Auth-Token"]
    assert (
        Request.blank("/v1/AUTH_test", headers={"X-Auth-Token": token}).get_response(app).status_int
        == 403
    )
    conf = pipeline.load_server_conf(str(REPO / "etc" / "proxy.conf"))
    assert (conf["bind_ip"], conf["bind_port"]) == ("127.0.0.1", 8080)


# -- errors ------------------------------------------------------------------------------

GOOD_TAIL = """
[filter:healthcheck]
[app:{fake}]
"""


@pytest.mark.parametrize(
    "text, message",
    [
        ("[DEFAULT]\nx = 1\n", "missing \\[pipeline:main\\]"),
        ("[pipeline:main]\npipeline =\n", "empty 'pipeline'"),
        ("[pipeline:main]\npipeline = healthcheck healthcheck {fake}\n" + GOOD_TAIL, "twice"),
        ("[pipeline:main]\npipeline = nosuch {fake}\n" + GOOD_TAIL, "no \\[filter:nosuch\\]"),
        (
            "[pipeline:main]\npipeline = {fake} healthcheck\n" + GOOD_TAIL,
            "only the last name may be an app",
        ),
        ("[pipeline:main]\npipeline = healthcheck\n" + GOOD_TAIL, "the last name must be an app"),
        ("[pipeline:main]\npipeline = healthcheck proxy\n" + GOOD_TAIL, "no \\[app:proxy\\]"),
        (
            "[pipeline:main]\npipeline = mystery {fake}\n[filter:mystery]\n" + GOOD_TAIL,
            "unknown filter 'mystery'",
        ),
        (
            "[pipeline:main]\npipeline = x {fake}\n[filter:x]\nuse = egg:swift#nope\n" + GOOD_TAIL,
            "unknown filter 'nope'",
        ),
        (
            "[pipeline:main]\npipeline = x {fake}\n[filter:x]\nuse = no.such.module\n" + GOOD_TAIL,
            "cannot import 'no.such.module'",
        ),
        (
            "[pipeline:main]\npipeline = x {fake}\n[filter:x]\nuse = {fake}:not_callable\n"
            + GOOD_TAIL,
            "no callable 'not_callable'",
        ),
        (
            "[pipeline:main]\npipeline = x {fake}\n[filter:x]\nuse = {fake}:missing\n" + GOOD_TAIL,
            "no callable 'missing'",
        ),
        (
            "[pipeline:main]\npipeline = tempauth {fake}\n[filter:tempauth]\nsecret = s\n"
            "token_life = forever\n" + GOOD_TAIL,
            "\\[filter:tempauth\\]: token_life must be an integer",
        ),
        (
            "[pipeline:main]\npipeline = healthcheck {fake}\n[filter:healthcheck]\n"
            "disabled_path = /x\n[app:{fake}]\n",
            "\\[filter:healthcheck\\]: unknown option 'disabled_path'",
        ),
        ("[pipeline:main\npipeline = x\n", "malformed"),
        ("[pipeline:main]\npipeline = a\n[pipeline:main]\n", "malformed"),
    ],
)
def test_every_config_mistake_is_one_clear_config_error(fake, write_conf, text, message):
    path = write_conf(text.format(fake=fake))
    with pytest.raises(ConfigError, match=message) as err:
        pipeline.build_pipeline(path)
    assert "\n" not in str(err.value).strip() or "malformed" in message


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        pipeline.build_pipeline(str(tmp_path / "nope.conf"))
    with pytest.raises(ConfigError, match="not found"):
        pipeline.load_server_conf(str(tmp_path / "nope.conf"))


# -- server settings ---------------------------------------------------------------------


def test_server_conf_defaults(write_conf, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    conf = pipeline.load_server_conf(write_conf("[DEFAULT]\nring_dir = /r\n"))
    assert conf["bind_ip"] == "0.0.0.0"
    assert conf["bind_port"] == 8080
    assert conf["workers"] == 6
    assert conf["log_level"] == "INFO"
    assert conf["ring_dir"] == "/r"
    assert os.path.isabs(conf["conf_path"])


def test_server_conf_values(write_conf):
    text = "[DEFAULT]\nbind_ip = 10.1.2.3\nbind_port = 0\nworkers = 0\nlog_level = debug\n"
    conf = pipeline.load_server_conf(write_conf(text))
    assert (conf["bind_ip"], conf["bind_port"], conf["workers"], conf["log_level"]) == (
        "10.1.2.3",
        0,
        0,
        "DEBUG",
    )


@pytest.mark.parametrize(
    "line, message",
    [
        ("bind_port = http", "bind_port must be an integer"),
        ("bind_port = 70000", "bind_port must be <= 65535"),
        ("bind_port = -1", "bind_port must be >= 0"),
        ("workers = many", "workers must be an integer"),
        ("log_level = LOUD", "log_level must be one of"),
    ],
)
def test_bad_server_settings(write_conf, line, message):
    with pytest.raises(ConfigError, match=message):
        pipeline.load_server_conf(write_conf(f"[DEFAULT]\n{line}\n"))


# -- with the real proxy app -------------------------------------------------------------


def test_sample_pipeline_around_the_real_proxy_app(tmp_path, monkeypatch):
    """The shipped proxy.conf, with rings of one (unreachable) device: everything this
    test asks is answered before the proxy would talk to a storage node."""
    dev = {"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": 1, "device": "d0"}
    dev.update(weight=1.0, meta="")
    for name in ("account", "container", "object"):
        RingData(2, [dev], [array("H", [0] * 4)]).save(str(tmp_path / f"{name}.ring.gz"))
    conf = (REPO / "etc" / "proxy.conf").read_text()
    conf = conf.replace("[DEFAULT]\n", f"[DEFAULT]\nring_dir = {tmp_path}\n", 1)
    (tmp_path / "proxy.conf").write_text(conf)
    monkeypatch.setenv("HANEUL_CONF", str(REPO / "etc" / "haneul.conf"))
    app = pipeline.build_pipeline(str(tmp_path / "proxy.conf"))
    assert type(layers(app)[-1]).__name__ == "ProxyApp"

    def token_for(user, key):
        headers = {"X-Auth-User": user, "X-Auth-Key": key}
        return (
            Request.blank("/auth/v1.0", headers=headers).get_response(app).headers["X-Auth-Token"]
        )

    info = Request.blank("/info").get_response(app)
    assert info.status_int == 200 and "tempauth" in info.json
    assert Request.blank("/healthcheck").get_response(app).body == b"OK"
    resp = Request.blank("/v1/AUTH_test").get_response(app)
    assert resp.status_int == 401
    trans_id = resp.headers["X-Trans-Id"]
    assert trans_id.startswith("tx")
    tester2 = token_for("test2:tester2", "testing2")
    resp = Request.blank("/v1/AUTH_test", headers={"X-Auth-Token": tester2}).get_response(app)
    assert resp.status_int == 403
    tester3 = token_for("test:tester3", "testing3")
    resp = Request.blank("/v1/AUTH_test", headers={"X-Auth-Token": tester3}).get_response(app)
    assert resp.status_int == 403
