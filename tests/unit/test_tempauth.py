import base64
import json
import time

import pytest
from webob import Request, Response

from common.config import ConfigError
from proxy import capabilities, unregister_capability
from proxy.middleware import tempauth
from proxy.middleware.tempauth import TempAuth, filter_factory

CONF = {
    "secret": "unit-test-secret",
    "user_admin_admin": "admin .admin .reseller_admin",
    "user_test_tester": "testing .admin",
    "user_test2_tester2": "testing2 .admin",
    "user_test_tester3": "testing3",
}


class FakeProxy:
    """Plays the proxy's side of the auth contract: sets haneul.acl, calls the hook."""

    def __init__(self):
        self.container_acls = {}  # (account, container) -> {"read": ..., "write": ...}
        self.account_acls = {}  # account -> raw X-Account-Access-Control
        self.seen = []

    def __call__(self, environ, start_response):
        req = Request(environ)
        self.seen.append(dict(environ))
        parts = req.path_info.split("/", 4)[1:]
        parts += [None] * (4 - len(parts))
        _version, account, container, _obj = (part or None for part in parts)
        hook = environ.get("haneul.authorize")
        if hook is not None and account:
            acl = None
            if container:
                acls = self.container_acls.get((account, container), {})
                acl = acls.get("read" if req.method in ("GET", "HEAD") else "write")
            environ["haneul.acl"] = acl
            if account in self.account_acls:
                environ["haneul.account_acl"] = self.account_acls[account]
            denied = hook(req)
            if denied is not None:
                return denied(environ, start_response)
        owner = environ.get("haneul.owner", False)
        return Response(text=f"ok owner={owner}")(environ, start_response)


@pytest.fixture
def proxy():
    return FakeProxy()


@pytest.fixture
def auth(proxy):
    return filter_factory({}, dict(CONF))(proxy)


def get_token(auth, user, key, path="/auth/v1.0", header="X-Auth"):
    names = (
        ("X-Auth-User", "X-Auth-Key")
        if header == "X-Auth"
        else ("X-Storage-User", "X-Storage-Pass")
    )
    req = Request.blank(path, headers={names[0]: user, names[1]: key}, host="proxy.example:8080")
    return req.get_response(auth)


@pytest.fixture
def tokens(auth):
    creds = {
        "tester": ("test:tester", "testing"),
        "tester2": ("test2:tester2", "testing2"),
        "tester3": ("test:tester3", "testing3"),
        "admin": ("admin:admin", "admin"),
    }
    result = {}
    for name, (user, key) in creds.items():
        resp = get_token(auth, user, key)
        assert resp.status_int == 200
        result[name] = resp.headers["X-Auth-Token"]
    return result


def call(auth, path, token=None, method="GET", headers=None, **kwargs):
    headers = dict(headers or {})
    if token:
        headers["X-Auth-Token"] = token
    return Request.blank(path, method=method, headers=headers, **kwargs).get_response(auth)


# -- getting a token ---------------------------------------------------------------------


def test_good_credentials_get_a_token_and_storage_url(auth):
    resp = get_token(auth, "test:tester", "testing")
    assert resp.status_int == 200
    token = resp.headers["X-Auth-Token"]
    assert token.startswith("AUTH_tk")
    assert resp.headers["X-Storage-Token"] == token
    assert resp.headers["X-Storage-Url"] == "http://proxy.example:8080/v1/AUTH_test"
    assert 86390 <= int(resp.headers["X-Auth-Token-Expires"]) <= 86400
    assert resp.json == {
        "storage": {"default": "local", "local": "http://proxy.example:8080/v1/AUTH_test"}
    }


@pytest.mark.parametrize(
    "path, header, user",
    [
        ("/auth/v1.0", "X-Storage", "test:tester"),
        ("/auth/v1.0/", "X-Auth", "test:tester"),
        ("/auth/auth", "X-Auth", "test:tester"),
        ("/auth/v1/test/auth", "X-Storage", "tester"),
        ("/auth/v1/test/auth", "X-Auth", "test:tester"),
    ],
)
def test_every_swift_auth_path_and_header_form_works(auth, path, header, user):
    resp = get_token(auth, user, "testing", path=path, header=header)
    assert resp.status_int == 200, resp.text


@pytest.mark.parametrize(
    "user, key",
    [
        ("test:tester", "wrong"),
        ("test:nobody", "testing"),
        ("tester", "testing"),
        ("", ""),
        ("test2:tester2", "testing"),
    ],
)
def test_bad_credentials_are_401(auth, user, key):
    resp = get_token(auth, user, key)
    assert resp.status_int == 401
    assert "X-Auth-Token" not in resp.headers
    assert resp.headers["Www-Authenticate"].startswith("Swift realm=")


def test_account_in_path_must_match_the_user(auth):
    assert get_token(auth, "test2:tester2", "testing2", path="/auth/v1/test/auth").status_int == 401


def test_unknown_auth_paths_and_methods(auth):
    assert call(auth, "/auth/v2.0").status_int == 400
    assert call(auth, "/auth").status_int == 400
    resp = call(auth, "/auth/v1.0", method="POST")
    assert resp.status_int == 405
    assert resp.headers["Allow"] == "GET"


def test_storage_url_scheme_and_per_user_urls(proxy):
    conf = dict(CONF, storage_url_scheme="https")
    conf["user_other_u"] = "k $HOST/v1/AUTH_elsewhere"
    conf["user_far_u"] = "k .admin http://far.example/v1/AUTH_far"
    auth = filter_factory({}, conf)(proxy)
    assert get_token(auth, "test:tester", "testing").headers["X-Storage-Url"] == (
        "https://proxy.example:8080/v1/AUTH_test"
    )
    assert get_token(auth, "other:u", "k").headers["X-Storage-Url"] == (
        "https://proxy.example:8080/v1/AUTH_elsewhere"
    )
    assert get_token(auth, "far:u", "k").headers["X-Storage-Url"] == (
        "http://far.example/v1/AUTH_far"
    )


def test_user64_names_may_hold_underscores(proxy):
    account = base64.urlsafe_b64encode(b"under_score").rstrip(b"=").decode()
    user = base64.urlsafe_b64encode(b"a_b").rstrip(b"=").decode()
    auth = filter_factory({}, dict(CONF, **{f"user64_{account}_{user}": "testing4 .admin"}))(
        FakeProxy()
    )
    resp = get_token(auth, "under_score:a_b", "testing4")
    assert resp.status_int == 200
    assert resp.headers["X-Storage-Url"].endswith("/v1/AUTH_under_score")
    assert call(auth, "/v1/AUTH_under_score", resp.headers["X-Auth-Token"]).status_int == 200


# -- tokens ----------------------------------------------------------------------------


def test_tokens_are_accepted_by_every_proxy_sharing_the_secret(tokens):
    other = filter_factory({}, dict(CONF))(FakeProxy())
    assert call(other, "/v1/AUTH_test", tokens["tester"]).status_int == 200
    elsewhere = filter_factory({}, dict(CONF, secret="another"))(FakeProxy())
    assert call(elsewhere, "/v1/AUTH_test", tokens["tester"]).status_int == 401


def test_expired_token_is_401(auth):
    ta = TempAuth(None, dict(CONF))
    stale = ta.make_token(ta.users["test:tester"], time.time() - 1)
    resp = call(auth, "/v1/AUTH_test", stale)
    assert resp.status_int == 401
    assert resp.headers["Www-Authenticate"] == 'Swift realm="AUTH_test"'
    fresh = ta.make_token(ta.users["test:tester"], time.time() + 60)
    assert call(auth, "/v1/AUTH_test", fresh).status_int == 200


def test_tampered_tokens_are_401(auth, tokens):
    token = tokens["tester3"]
    prefix, mac = token.rsplit(".", 1)
    payload = prefix[len("AUTH_tk") :]
    account, user, expires = json.loads(tempauth.b64decode(payload))
    # Claim to be the admin of the account, keeping the original signature.
    forged = tempauth.b64encode(json.dumps([account, "tester", expires]).encode())
    bad = [
        f"AUTH_tk{forged}.{mac}",
        f"{prefix}.{mac[:-2]}AA",
        prefix,
        "AUTH_tk",
        "AUTH_tk!!!.xyz",
        "AUTH_somethingelse",
        f"AUTH_tk{tempauth.b64encode(b'[1,2,3]')}.{mac}",
        f"AUTH_tk{tempauth.b64encode(b'{}')}.{mac}",
    ]
    for token in bad:
        assert call(auth, "/v1/AUTH_test", token).status_int == 401, token


def test_a_removed_user_or_changed_key_revokes_tokens(tokens):
    conf = {k: v for k, v in CONF.items() if k != "user_test_tester3"}
    conf["user_test_tester"] = "newkey .admin"
    auth = filter_factory({}, conf)(FakeProxy())
    assert call(auth, "/v1/AUTH_test", tokens["tester"]).status_int == 401
    assert call(auth, "/v1/AUTH_test/c/o", tokens["tester3"]).status_int == 401


def test_groups_come_from_the_config_not_the_token(tokens):
    conf = dict(CONF, user_test_tester="testing")  # no longer an admin
    auth = filter_factory({}, conf)(FakeProxy())
    assert call(auth, "/v1/AUTH_test", tokens["tester"]).status_int == 403


def test_foreign_tokens_pass_through_untouched(auth, proxy):
    resp = call(auth, "/v1/KEY_abc", "gAAAAAfernet")
    assert resp.status_int == 401  # denied_response: not our account, nobody else vouched
    assert "REMOTE_USER" not in proxy.seen[-1]


# -- environ contract --------------------------------------------------------------------


def test_valid_token_sets_remote_user_and_hooks(auth, proxy, tokens):
    call(auth, "/v1/AUTH_test/c", tokens["tester"])
    env = proxy.seen[-1]
    assert env["REMOTE_USER"] == "test,test:tester,AUTH_test"
    assert env["haneul.authorize"].__self__.__class__ is TempAuth
    assert env["haneul.clean_acl"]("X-Container-Read", ".r:*") == ".r:*"
    assert "haneul.reseller_request" not in env
    call(auth, "/v1/AUTH_test", tokens["admin"])
    assert proxy.seen[-1]["REMOTE_USER"] == "admin,admin:admin,AUTH_admin,.reseller_admin"
    assert proxy.seen[-1]["haneul.reseller_request"] is True


def test_anonymous_request_to_our_account_gets_the_hook(auth, proxy):
    call(auth, "/v1/AUTH_test/c/o")
    assert proxy.seen[-1]["haneul.authorize"].__name__ == "authorize"
    assert "REMOTE_USER" not in proxy.seen[-1]


def test_other_auth_hooks_are_kept_for_foreign_accounts(proxy):
    auth = filter_factory({}, dict(CONF))(proxy)

    def other_hook(req):
        return None

    Request.blank("/v1/KEY_x", environ={"haneul.authorize": other_hook}).get_response(auth)
    assert proxy.seen[-1]["haneul.authorize"] is other_hook


def test_authorize_override_skips_auth(auth, proxy):
    req = Request.blank(
        "/v1/AUTH_test/c/o",
        headers={"X-Auth-Token": "AUTH_tkbogus"},
        environ={"haneul.authorize_override": True},
    )
    assert req.get_response(auth).status_int == 200
    assert "haneul.authorize" not in proxy.seen[-1]


# -- authorization -----------------------------------------------------------------------


def test_account_owner_does_anything_in_the_account(auth, tokens):
    for method, path in [
        ("GET", "/v1/AUTH_test"),
        ("POST", "/v1/AUTH_test"),
        ("PUT", "/v1/AUTH_test/c"),
        ("POST", "/v1/AUTH_test/c"),
        ("DELETE", "/v1/AUTH_test/c"),
        ("PUT", "/v1/AUTH_test/c/o"),
        ("GET", "/v1/AUTH_test/c/o"),
        ("DELETE", "/v1/AUTH_test/c/o"),
    ]:
        resp = call(auth, path, tokens["tester"], method=method)
        assert resp.status_int == 200, (method, path)
        assert resp.text == "ok owner=True"


def test_owner_may_set_acls(auth, tokens):
    headers = {"X-Container-Read": ".r:*", "X-Container-Write": "test:tester3"}
    assert call(auth, "/v1/AUTH_test/c", tokens["tester"], "POST", headers).status_int == 200


def test_only_a_reseller_admin_creates_or_deletes_accounts(auth, tokens):
    for method in ("PUT", "DELETE"):
        assert call(auth, "/v1/AUTH_test", tokens["tester"], method).status_int == 403
        resp = call(auth, "/v1/AUTH_test", tokens["admin"], method)
        assert resp.status_int == 200
        assert resp.text == "ok owner=True"


def test_reseller_admin_reaches_every_account_but_not_dot_accounts(auth, tokens):
    assert call(auth, "/v1/AUTH_test2/c/o", tokens["admin"], "PUT").status_int == 200
    assert call(auth, "/v1/AUTH_.system", tokens["admin"]).status_int == 403
    assert call(auth, "/v1/AUTH_", tokens["admin"]).status_int == 403


def test_user_of_another_account_is_forbidden(auth, tokens):
    for method, path in [
        ("GET", "/v1/AUTH_test"),
        ("GET", "/v1/AUTH_test/c"),
        ("GET", "/v1/AUTH_test/c/o"),
        ("PUT", "/v1/AUTH_test/c/o"),
    ]:
        assert call(auth, path, tokens["tester2"], method).status_int == 403, (method, path)


def test_non_admin_user_needs_acls(auth, proxy, tokens):
    token = tokens["tester3"]
    assert call(auth, "/v1/AUTH_test", token).status_int == 403
    assert call(auth, "/v1/AUTH_test/c", token).status_int == 403
    assert call(auth, "/v1/AUTH_test/c/o", token).status_int == 403
    proxy.container_acls[("AUTH_test", "c")] = {"read": "test:tester3"}
    resp = call(auth, "/v1/AUTH_test/c/o", token)
    assert resp.status_int == 200
    assert resp.text == "ok owner=False"
    assert call(auth, "/v1/AUTH_test/c", token).status_int == 200  # listing
    assert call(auth, "/v1/AUTH_test/c/o", token, "PUT").status_int == 403
    proxy.container_acls[("AUTH_test", "c")]["write"] = "test:tester3"
    assert call(auth, "/v1/AUTH_test/c/o", token, "PUT").status_int == 200
    assert call(auth, "/v1/AUTH_test/c/o", token, "DELETE").status_int == 200


def test_acl_granted_user_may_not_change_acls_or_the_container(auth, proxy, tokens):
    proxy.container_acls[("AUTH_test", "c")] = {"read": "test", "write": "test"}
    token = tokens["tester3"]
    for headers in ({"X-Container-Read": ".r:*"}, {"X-Container-Write": "test2"}):
        assert call(auth, "/v1/AUTH_test/c", token, "POST", headers).status_int == 403
        assert call(auth, "/v1/AUTH_test/c", token, "PUT", headers).status_int == 403
    assert call(auth, "/v1/AUTH_test/c", token, "DELETE").status_int == 403


@pytest.mark.parametrize(
    "acl, who, granted",
    [
        ("test2:tester2", "tester2", True),
        ("test2:*", "tester2", True),
        ("*:tester2", "tester2", True),
        ("test2", "tester2", True),
        ("*:*", "tester2", True),
        ("test2:other", "tester2", False),
        ("test:*", "tester2", False),
        ("*:tester3", "tester2", False),
        ("test", "tester3", True),
        ("test:*", "tester3", True),
        ("AUTH_test", "tester3", False),
        ("", "tester3", False),
    ],
)
def test_container_acl_forms(auth, proxy, tokens, acl, who, granted):
    proxy.container_acls[("AUTH_test", "c")] = {"read": acl, "write": acl}
    for method in ("GET", "PUT"):
        resp = call(auth, "/v1/AUTH_test/c/o", tokens[who], method)
        assert resp.status_int == (200 if granted else 403), (acl, who, method)


def test_anonymous_reads_need_a_referrer_acl(auth, proxy):
    resp = call(auth, "/v1/AUTH_test/c/o")
    assert resp.status_int == 401
    assert resp.headers["Www-Authenticate"] == 'Swift realm="AUTH_test"'
    proxy.container_acls[("AUTH_test", "c")] = {"read": ".r:*", "write": "test:tester3"}
    assert call(auth, "/v1/AUTH_test/c/o").status_int == 200
    assert call(auth, "/v1/AUTH_test/c/o", method="HEAD").status_int == 200
    assert call(auth, "/v1/AUTH_test/c").status_int == 401  # listing needs .rlistings
    assert call(auth, "/v1/AUTH_test/c/o", method="PUT").status_int == 401
    assert call(auth, "/v1/AUTH_test").status_int == 401
    proxy.container_acls[("AUTH_test", "c")]["read"] = ".r:*,.rlistings"
    assert call(auth, "/v1/AUTH_test/c").status_int == 200


def test_referrer_acls_check_the_referer_header(auth, proxy):
    proxy.container_acls[("AUTH_test", "c")] = {"read": ".r:.example.com,.r:-bad.example.com"}
    good = {"Referer": "http://www.example.com/page"}
    bad = {"Referer": "http://bad.example.com/page"}
    assert call(auth, "/v1/AUTH_test/c/o", headers=good).status_int == 200
    assert call(auth, "/v1/AUTH_test/c/o", headers=bad).status_int == 401
    assert call(auth, "/v1/AUTH_test/c/o").status_int == 401


def test_referrer_acl_without_listings_still_lets_named_users_list(auth, proxy, tokens):
    proxy.container_acls[("AUTH_test", "c")] = {"read": ".r:*,test:tester3"}
    assert call(auth, "/v1/AUTH_test/c", tokens["tester3"]).status_int == 200
    assert call(auth, "/v1/AUTH_test/c", tokens["tester2"]).status_int == 403


def test_account_acls(auth, proxy, tokens):
    proxy.account_acls["AUTH_test"] = json.dumps(
        {"read-only": ["test2:tester2"], "read-write": ["test:tester3"]}
    )
    t2, t3 = tokens["tester2"], tokens["tester3"]
    assert call(auth, "/v1/AUTH_test", t2).status_int == 200
    assert call(auth, "/v1/AUTH_test/c/o", t2).status_int == 200
    assert call(auth, "/v1/AUTH_test/c/o", t2, "PUT").status_int == 403
    assert call(auth, "/v1/AUTH_test/c", t3, "PUT").status_int == 200
    assert call(auth, "/v1/AUTH_test/c/o", t3, "DELETE").status_int == 200
    acl_change = {"X-Container-Read": "test2"}
    assert call(auth, "/v1/AUTH_test/c", t3, "POST", acl_change).status_int == 403
    assert call(auth, "/v1/AUTH_test", t3, "POST").status_int == 403
    proxy.account_acls["AUTH_test"] = json.dumps({"admin": ["test2:tester2"]})
    resp = call(auth, "/v1/AUTH_test/c", t2, "POST", acl_change)
    assert (resp.status_int, resp.text) == (200, "ok owner=True")
    assert call(auth, "/v1/AUTH_test", t2, "DELETE").status_int == 403
    proxy.account_acls["AUTH_test"] = "not json"
    assert call(auth, "/v1/AUTH_test", t2).status_int == 403


def test_options_is_allowed_for_cors(auth):
    assert call(auth, "/v1/AUTH_test/c/o", method="OPTIONS").status_int == 200


# -- configuration -----------------------------------------------------------------------


def test_secret_is_derived_from_the_hash_secrets(tmp_path):
    conf_file = tmp_path / "haneul.conf"
    conf_file.write_text("[hash]\nprefix = p\nsuffix = s\n")
    conf = {k: v for k, v in CONF.items() if k != "secret"}
    conf["haneul_conf"] = str(conf_file)
    one = TempAuth(None, conf)
    two = TempAuth(None, dict(conf))
    user = one.users["test:tester"]
    checked = two.check_token(one.make_token(user, time.time() + 60))
    assert checked is not None and checked[0] is two.users["test:tester"]
    assert one.secret == two.secret and len(one.secret) == 32


def test_no_secret_and_no_hash_secrets_refuses_to_start(tmp_path):
    conf = {k: v for k, v in CONF.items() if k != "secret"}
    conf["haneul_conf"] = str(tmp_path / "missing.conf")
    with pytest.raises(ConfigError, match="secret"):
        filter_factory({}, conf)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("token_life", "soon", "token_life"),
        ("token_life", "0", "token_life"),
        ("storage_url_scheme", "ftp", "storage_url_scheme"),
        ("reseller_prefix", " ", "reseller_prefix"),
        ("auth_prefix", "/v1/", "auth_prefix"),
        ("user_test", "k", "user_<account>_<user>"),
        ("user_test_x", "", "no key"),
        ("user64_!!_x", "k", "base64"),
        ("allow_overrides", "maybe", "boolean"),
        ("token_lif", "10", "unknown option"),
    ],
)
def test_bad_options_are_config_errors(option, value, message):
    with pytest.raises(ConfigError, match=message):
        filter_factory({}, dict(CONF, **{option: value}))


def test_reseller_prefix_and_auth_prefix_are_normalised(proxy):
    auth = filter_factory({}, dict(CONF, reseller_prefix="KEY", auth_prefix="tokens"))(proxy)
    resp = get_token(auth, "test:tester", "testing", path="/tokens/v1.0")
    assert resp.headers["X-Storage-Url"].endswith("/v1/KEY_test")
    assert resp.headers["X-Auth-Token"].startswith("KEY_tk")
    assert call(auth, "/v1/KEY_test/c", resp.headers["X-Auth-Token"]).status_int == 200
    assert call(auth, "/v1/AUTH_test/c").status_int == 401


def test_unicode_account_and_user_names(proxy):
    auth = filter_factory({}, dict(CONF, **{"user_하늘_구름": "비 .admin"}))(proxy)
    latin = {k: v.encode().decode("latin-1") for k, v in {"u": "하늘:구름", "k": "비"}.items()}
    resp = get_token(auth, latin["u"], latin["k"])
    assert resp.status_int == 200
    url = resp.headers["X-Storage-Url"]
    assert url == "http://proxy.example:8080/v1/AUTH_%ED%95%98%EB%8A%98"
    token = resp.headers["X-Auth-Token"]
    assert call(auth, "/v1/AUTH_%ED%95%98%EB%8A%98/c", token).status_int == 200


def test_tempauth_shows_in_info():
    unregister_capability("tempauth")
    filter_factory({}, dict(CONF))
    assert capabilities()["tempauth"] == {"account_acls": False}
