"""ProxyApp routing, /info, limits and the auth hook, with rings but no storage nodes.

Every node in these rings is a closed loopback port: anything that reaches a node
fails fast, so these tests show what the proxy answers before (or without) them.
"""

import configparser
import json
import socket

import pytest
from webob import Request, Response

import proxy
from common.config import ConfigError
from common.hashing import HashSecrets
from common.policies import parse_policies
from proxy.server import CONF_DEFAULTS, ProxyApp
from ring.builder import RingBuilder

SECRETS = HashSecrets("pre", "suf")


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_rings(ring_dir, names=("account", "container", "object")):
    for name in names:
        builder = RingBuilder(4, 3, 0)
        for i in range(3):
            builder.add_dev(
                {
                    "region": 1,
                    "zone": i,
                    "ip": "127.0.0.1",
                    "port": closed_port(),
                    "device": f"d{i}",
                    "weight": 1,
                }
            )
        builder.rebalance(seed=7)
        builder.get_ring().save(str(ring_dir / f"{name}.ring.gz"))


@pytest.fixture
def app(tmp_path):
    write_rings(tmp_path)
    conf = {"ring_dir": str(tmp_path), "conn_timeout": "0.2", "node_timeout": "0.5"}
    return ProxyApp(conf, hash_secrets=SECRETS, policies=parse_policies(_parser("")))


def _parser(text):
    parser = configparser.ConfigParser()
    parser.read_string(text)
    return parser


def call(app, path, method="GET", **kwargs):
    return Request.blank(path, method=method, **kwargs).get_response(app)


def test_info_describes_limits_and_policies(app):
    resp = call(app, "/info")
    assert resp.status_int == 200
    assert resp.content_type == "application/json"
    info = json.loads(resp.body)["swift"]
    assert info["max_file_size"] == 5 * 1024**3
    assert info["container_listing_limit"] == 10000
    assert info["max_object_name_length"] == 1024
    assert info["policies"] == [{"name": "Policy-0", "aliases": "Policy-0", "default": True}]
    for key in (
        "max_meta_name_length",
        "max_meta_value_length",
        "max_meta_count",
        "max_meta_overall_size",
        "max_header_size",
        "account_listing_limit",
        "max_account_name_length",
        "max_container_name_length",
        "version",
    ):
        assert key in info
    assert resp.headers["X-Trans-Id"].startswith("tx")


def test_info_includes_sections_middleware_registered(app):
    proxy.register_capability("tempurl", methods=["GET"])
    try:
        assert json.loads(call(app, "/info").body)["tempurl"] == {"methods": ["GET"]}
    finally:
        proxy.unregister_capability("tempurl")
    assert call(app, "/info", method="PUT").status_int == 405


@pytest.mark.parametrize("path", ["/", "/v2/AUTH_a", "/v1", "/v1/", "/favicon.ico"])
def test_paths_outside_v1_are_404(app, path):
    assert call(app, path).status_int == 404


def test_bad_utf8_path_is_412(app):
    req = Request.blank("/v1/a")
    req.environ["PATH_INFO"] = "/v1/a/\xff\xfe"
    assert req.get_response(app).status_int == 412


def test_names_too_long_are_400_before_any_node_is_asked(app):
    assert call(app, "/v1/" + "a" * 257).status_int == 400
    assert call(app, "/v1/a/" + "c" * 257).status_int == 400
    assert call(app, "/v1/a/c/" + "o" * 1025, method="PUT", body=b"x").status_int == 400


def test_methods_not_allowed_are_405_with_allow(app):
    resp = call(app, "/v1/a/c", method="COPY")
    assert resp.status_int == 405
    assert "PUT" in resp.headers["Allow"]
    resp = call(app, "/v1/a", method="PUT")
    assert resp.status_int == 405
    assert resp.headers["Allow"] == "GET, HEAD, POST"


def test_object_put_needs_a_length_and_respects_max_size(tmp_path):
    write_rings(tmp_path)
    app = ProxyApp(
        {"ring_dir": str(tmp_path), "max_object_size": "10", "conn_timeout": "0.2"},
        hash_secrets=SECRETS,
        policies=parse_policies(_parser("")),
    )
    req = Request.blank("/v1/a/c/o", method="PUT")
    req.environ.pop("CONTENT_LENGTH", None)
    assert req.get_response(app).status_int == 411
    assert call(app, "/v1/a/c/o", method="PUT", body=b"x" * 11).status_int == 413


def test_metadata_limits_are_400(app):
    headers = {"X-Object-Meta-" + "k" * 129: "v"}
    assert call(app, "/v1/a/c/o", method="POST", headers=headers).status_int == 400
    headers = {"X-Container-Meta-Big": "v" * 257}
    assert call(app, "/v1/a/c", method="PUT", headers=headers).status_int == 400


def test_unknown_storage_policy_is_400(app):
    resp = call(app, "/v1/a/c", method="PUT", headers={"X-Storage-Policy": "platinum"})
    assert resp.status_int == 400


def test_nodes_down_is_503_not_a_fake_account(app):
    assert call(app, "/v1/AUTH_a", method="HEAD").status_int == 503
    assert call(app, "/v1/AUTH_a/c", method="GET").status_int == 503


def test_trans_id_from_the_pipeline_is_kept(app):
    req = Request.blank("/v1/a", environ={"haneul.trans_id": "txfixed"})
    resp = req.get_response(app)
    assert resp.headers["X-Trans-Id"] == "txfixed"


class Hook:
    """An auth hook that records the ACL it was shown and denies everything."""

    def __init__(self):
        self.seen = []

    def __call__(self, req):
        self.seen.append((req.method, req.path_info, req.environ.get("haneul.acl")))
        return Response(status=403, body=b"no")


def test_auth_hook_denial_is_returned(app):
    hook = Hook()
    resp = call(app, "/v1/a/c/o", environ={"haneul.authorize": hook})
    assert resp.status_int == 403
    assert hook.seen == [("GET", "/v1/a/c/o", None)]
    resp = call(app, "/v1/a/c", method="DELETE", environ={"haneul.authorize": hook})
    assert resp.status_int == 403


def test_auth_override_skips_the_hook(app):
    hook = Hook()
    environ = {"haneul.authorize": hook, "haneul.authorize_override": True}
    resp = call(app, "/v1/a/c/o", environ=environ)
    assert resp.status_int == 503  # went on to the (absent) nodes
    assert hook.seen == []


def test_missing_ring_is_a_clear_config_error(tmp_path):
    write_rings(tmp_path, names=("account", "container"))
    with pytest.raises(ConfigError, match="object.ring.gz"):
        ProxyApp(
            {"ring_dir": str(tmp_path)},
            hash_secrets=SECRETS,
            policies=parse_policies(_parser("")),
        )


def test_every_option_has_a_default():
    assert {"ring_dir", "node_timeout", "conn_timeout", "container_info_cache_ttl"} <= set(
        CONF_DEFAULTS
    )
