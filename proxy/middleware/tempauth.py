"""tempauth: Swift's v1 test auth, with users in proxy.conf and signed, self-contained tokens.

Users come from ``[filter:tempauth]`` in Swift's form::

    user_<account>_<user> = <key> [group ...] [storage url]
    user64_<b64 account>_<b64 user> = ...     (names holding "_"; unpadded base64)

``.admin`` makes the user an owner of its account, ``.reseller_admin`` an owner of every
account; a storage url (``http://...``, ``$HOST`` standing for the request's scheme and
host) overrides the one built from the request.

``GET <auth_prefix>v1.0`` (or ``<auth_prefix>auth``, or ``<auth_prefix>v1/<account>/auth``)
with ``X-Auth-User: account:user`` and ``X-Auth-Key`` (or ``X-Storage-User`` /
``X-Storage-Pass``) answers 200 with ``X-Auth-Token``, ``X-Storage-Token``,
``X-Auth-Token-Expires`` and ``X-Storage-Url``.

Tokens need no store: ``<reseller_prefix>tk<payload>.<mac>`` where payload is the
unpadded base64url of the JSON ``[account, user, expires]`` (Unix seconds) and mac the
unpadded base64url HMAC-SHA256, keyed with the cluster's token secret, of the payload
and a digest of the user's key — so changing a user's key, or removing the user,
revokes their tokens. A user's groups are looked up in the config on every request,
never read from the token. The secret is the ``secret`` option, else derived from
haneul.conf's ``[hash]`` secrets (the same on every proxy of a cluster); with neither,
the filter refuses to start.

For requests this auth is responsible for (a token with its prefix, or an account path
with its prefix) the filter sets the hooks the proxy calls, described in ``__call__``.
"""

import base64
import binascii
import copy
import hashlib
import hmac
import json
import logging
import time
from urllib.parse import quote

from webob import Request, Response

from common.config import ConfigError, config_int, config_true, haneul_conf_path
from common.hashing import load_hash_secrets
from common.http import HTTPError, error_response, request_path, split_path
from proxy import register_capability
from proxy.middleware import check_options, filter_conf
from proxy.middleware.acl import (
    account_acl_level,
    acl_grants,
    clean_acl,
    parse_account_acl,
    parse_acl,
    referrer_allowed,
)

OPTIONS = {
    "reseller_prefix",
    "auth_prefix",
    "token_life",
    "secret",
    "storage_url_scheme",
    "allow_overrides",
}
USER_PREFIXES = ("user_", "user64_")
ADMIN = ".admin"
RESELLER_ADMIN = ".reseller_admin"
READ_METHODS = ("GET", "HEAD")
ACL_HEADERS = (
    "X-Container-Read",
    "X-Container-Write",
    "X-Remove-Container-Read",
    "X-Remove-Container-Write",
)
TOKEN_MAC_CONTEXT = b"haneul-tempauth-token-v1\x00"
# A filter further out that authenticated the caller its own way (S3 signatures) names
# the tempauth user ("account:user") here; clients cannot set environ keys.
IDENTITY_KEY = "haneul.identity"
DERIVED_SECRET_CONTEXT = b"haneul-tempauth-secret-v1"


def b64encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _header_text(value):
    """A header value as text: WSGI hands over latin-1; clients send UTF-8."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


class User:
    """One tempauth user: ``account:name``, key, groups and an optional storage url."""

    __slots__ = ("account", "name", "key", "groups", "url", "key_digest")

    def __init__(self, account, name, key, groups, url=None):
        self.account = account
        self.name = name
        self.key = key
        self.groups = groups
        self.url = url
        self.key_digest = hashlib.sha256(key.encode("utf-8")).digest()


def parse_users(conf):
    """``{"account:user": User}`` from the ``user_*`` / ``user64_*`` options."""
    users = {}
    for option, value in conf.items():
        if option.startswith("user64_"):
            encoded_account, _, encoded_user = option[len("user64_") :].partition("_")
            try:
                account = b64decode(encoded_account).decode("utf-8")
                name = b64decode(encoded_user).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise ConfigError(f"{option}: names are not valid base64") from None
        elif option.startswith("user_"):
            account, _, name = option[len("user_") :].partition("_")
        else:
            continue
        if not account or not name or ":" in account:
            raise ConfigError(f"{option}: expected user_<account>_<user>")
        values = value.split()
        if not values:
            raise ConfigError(f"{option}: no key given")
        key, groups, url = values[0], values[1:], None
        if groups and ("://" in groups[-1] or "$HOST" in groups[-1]):
            url = groups.pop()
        bad = [group for group in groups if "," in group]
        if bad:
            raise ConfigError(f"{option}: group names may not hold commas: {bad}")
        users[f"{account}:{name}"] = User(account, name, key, groups, url)
    return users


def derive_secret(haneul_conf):
    """The token secret derived from the cluster's hash secrets in haneul.conf."""
    try:
        secrets = load_hash_secrets(haneul_conf)
    except ConfigError as err:
        raise ConfigError(
            "tempauth needs a 'secret' option, or a readable haneul.conf [hash] section "
            f"to derive one from: {err}"
        ) from None
    material = secrets.prefix + b"\x00" + secrets.suffix
    return hmac.new(DERIVED_SECRET_CONTEXT, material, hashlib.sha256).digest()


class TempAuth:
    """WSGI filter: hands out tokens, recognises them, and authorizes requests."""

    def __init__(self, app, conf=None, logger=None):
        conf = conf or {}
        self.app = app
        self.logger = logger or logging.getLogger("haneul.proxy.tempauth")
        prefix = conf.get("reseller_prefix", "AUTH").strip()
        if not prefix:
            raise ConfigError("reseller_prefix may not be empty")
        self.reseller_prefix = prefix if prefix.endswith("_") else prefix + "_"
        self.token_prefix = self.reseller_prefix + "tk"
        auth_prefix = conf.get("auth_prefix", "/auth/").strip() or "/auth/"
        self.auth_prefix = "/" + auth_prefix.strip("/") + "/"
        if self.auth_prefix in ("//", "/v1/"):
            raise ConfigError(f"auth_prefix {auth_prefix!r} would hide the storage API")
        self.token_life = config_int(conf.get("token_life", 86400), "token_life", minimum=1)
        self.storage_url_scheme = conf.get("storage_url_scheme", "default").strip().lower()
        if self.storage_url_scheme not in ("default", "http", "https"):
            raise ConfigError(
                f"storage_url_scheme must be default, http or https, "
                f"got {self.storage_url_scheme!r}"
            )
        self.allow_overrides = config_true(conf.get("allow_overrides", "true"))
        self.users = parse_users(conf)
        secret = conf.get("secret", "").strip()
        if secret:
            self.secret = secret.encode("utf-8")
        else:
            self.secret = derive_secret(conf.get("haneul_conf") or haneul_conf_path())
            self.logger.info("tempauth: token secret derived from haneul.conf [hash]")

    # -- tokens --------------------------------------------------------------------------

    def _mac(self, payload, user):
        message = TOKEN_MAC_CONTEXT + payload.encode("ascii") + b"\x00" + user.key_digest
        return b64encode(hmac.new(self.secret, message, hashlib.sha256).digest())

    def make_token(self, user, expires):
        """A signed token for ``user`` that stops working at ``expires`` (Unix seconds)."""
        body = json.dumps([user.account, user.name, int(expires)], separators=(",", ":"))
        payload = b64encode(body.encode("utf-8"))
        return f"{self.token_prefix}{payload}.{self._mac(payload, user)}"

    def check_token(self, token, now=None):
        """``(user, expires)`` for a good token; None if forged, expired or its user is gone."""
        if not token.startswith(self.token_prefix):
            return None
        payload, dot, mac = token[len(self.token_prefix) :].rpartition(".")
        if not dot:
            return None
        try:
            account, name, expires = json.loads(b64decode(payload))
        except (ValueError, TypeError, binascii.Error):
            return None
        if not isinstance(account, str) or not isinstance(name, str):
            return None
        if not isinstance(expires, int) or isinstance(expires, bool):
            return None
        user = self.users.get(f"{account}:{name}")
        if user is None or not hmac.compare_digest(mac, self._mac(payload, user)):
            return None
        if expires <= (time.time() if now is None else now):
            return None
        return user, expires

    def user_groups(self, user):
        """Swift's group list: account, ``account:user``, the user's groups, and the
        account id (``AUTH_<account>``) in place of ``.admin``."""
        groups = [user.account, f"{user.account}:{user.name}"]
        for group in user.groups:
            if group == ADMIN:
                group = self.reseller_prefix + user.account
            if group not in groups:
                groups.append(group)
        return groups

    # -- the filter ----------------------------------------------------------------------

    def __call__(self, environ, start_response):
        """Route auth requests to ``handle_auth``; for requests this auth owns, set:

        - ``REMOTE_USER``: the caller's groups, comma separated (valid token only);
        - ``haneul.authorize``: ``authorize(req) -> None | Response``, called by the proxy;
        - ``haneul.clean_acl``: ``clean_acl(header, value) -> str``, raising ValueError;
        - ``haneul.reseller_request``: True for a reseller admin's token.

        A filter further out that has authenticated the caller by other means (the S3
        API's signatures) names the user in ``environ[IDENTITY_KEY]`` ("account:user");
        it is treated as a valid token of that user (401 if no such user).

        A token with this auth's prefix that does not check out is answered 401 here.
        A request this auth does not own gets ``haneul.authorize = denied_response``
        unless another auth filter has set one already. A request that a filter further
        out has already vouched for (``haneul.authorize_override``, e.g. a valid temp URL)
        passes untouched while ``allow_overrides`` is on.
        """
        if self.allow_overrides and environ.get("haneul.authorize_override"):
            return self.app(environ, start_response)
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.auth_prefix) or path == self.auth_prefix[:-1]:
            return self.handle_auth(Request(environ))(environ, start_response)
        token = environ.get("HTTP_X_AUTH_TOKEN") or environ.get("HTTP_X_STORAGE_TOKEN")
        identity = environ.get(IDENTITY_KEY)
        if identity is not None or (token and token.startswith(self.reseller_prefix)):
            if identity is not None:
                user = self.users.get(identity)
                checked = None if user is None else (user, None)
            else:
                checked = self.check_token(token)
            if checked is None:
                self.logger.debug("tempauth: rejected token or identity for %s", path)
                resp = error_response(401, "invalid or expired token", Request(environ))
                resp.headers["Www-Authenticate"] = self._challenge(path)
                return resp(environ, start_response)
            user, _expires = checked
            groups = self.user_groups(user)
            environ["REMOTE_USER"] = ",".join(groups)
            environ["haneul.authorize"] = self.authorize
            environ["haneul.clean_acl"] = clean_acl
            if RESELLER_ADMIN in groups:
                environ["haneul.reseller_request"] = True
        elif self._account_of(path).startswith(self.reseller_prefix):
            environ["haneul.authorize"] = self.authorize
            environ["haneul.clean_acl"] = clean_acl
        elif "haneul.authorize" not in environ:
            environ["haneul.authorize"] = self.denied_response
        return self.app(environ, start_response)

    @staticmethod
    def _account_of(path):
        parts = path.split("/", 3)
        return parts[2] if len(parts) > 2 else ""

    def _challenge(self, path):
        account = self._account_of(path)
        realm = account if account.startswith(self.reseller_prefix) else "unknown"
        return f'Swift realm="{realm.replace(chr(34), "")}"'

    # -- getting a token -----------------------------------------------------------------

    def handle_auth(self, req):
        """Answer a token request under ``auth_prefix``."""
        try:
            rest = request_path(req)[len(self.auth_prefix) :]
        except HTTPError as err:
            return err.response(req)
        parts = rest.rstrip("/").split("/") if rest else []
        if parts in (["v1.0"], ["auth"]):
            path_account = None
        elif len(parts) == 3 and parts[0] == "v1" and parts[2] == "auth" and parts[1]:
            path_account = parts[1]
        else:
            return error_response(400, "unknown auth request; use GET /auth/v1.0", req)
        if req.method != "GET":
            return error_response(405, "token requests use GET", req, {"Allow": "GET"})
        user = self._authenticate(req, path_account)
        if user is None:
            resp = error_response(401, "bad credentials", req)
            resp.headers["Www-Authenticate"] = self._challenge(req.path_info)
            return resp
        now = time.time()
        expires = int(now) + self.token_life
        token = self.make_token(user, expires)
        url = self.storage_url(req, user)
        resp = Response(
            status=200,
            content_type="application/json",
            body=json.dumps({"storage": {"default": "local", "local": url}}).encode("utf-8"),
        )
        resp.headers["X-Auth-Token"] = token
        resp.headers["X-Storage-Token"] = token
        resp.headers["X-Auth-Token-Expires"] = str(max(0, int(expires - now)))
        resp.headers["X-Storage-Url"] = url
        return resp

    def _authenticate(self, req, path_account):
        """The user named and proven by the request's credentials, or None."""
        headers = {
            name: _header_text(req.headers.get(name))
            for name in ("X-Auth-User", "X-Auth-Key", "X-Storage-User", "X-Storage-Pass")
        }
        if path_account is not None:
            name = headers.get("X-Storage-User") or headers.get("X-Auth-User") or ""
            account, sep, user = name.partition(":")
            if not sep:
                account, user = path_account, name
            elif account != path_account:
                return None
        else:
            name = headers.get("X-Auth-User") or headers.get("X-Storage-User") or ""
            account, sep, user = name.partition(":")
            if not sep:
                return None
        key = headers.get("X-Auth-Key") or headers.get("X-Storage-Pass")
        found = self.users.get(f"{account}:{user}")
        if found is None or key is None:
            return None
        if not hmac.compare_digest(found.key.encode("utf-8"), key.encode("utf-8")):
            return None
        return found

    def storage_url(self, req, user):
        """Where this user's account lives, as a client should reach it."""
        scheme = req.scheme if self.storage_url_scheme == "default" else self.storage_url_scheme
        host_url = f"{scheme}://{req.host}"
        if user.url:
            return user.url.replace("$HOST", host_url)
        return f"{host_url}/v1/{quote(self.reseller_prefix + user.account, safe='')}"

    # -- authorization -------------------------------------------------------------------

    def denied_response(self, req):
        """403 for a known caller, 401 (with a challenge) for an anonymous one."""
        if req.environ.get("REMOTE_USER"):
            return error_response(403, "access denied", req)
        resp = error_response(401, "authentication required", req)
        resp.headers["Www-Authenticate"] = self._challenge(req.environ.get("PATH_INFO", ""))
        return resp

    def authorize(self, req):
        """None if the request may go on, else the response to send (Swift's semantics).

        Reads ``REMOTE_USER``, the request's method, path, ``Referer`` and ACL headers,
        ``haneul.acl`` (the container's read ACL for GET/HEAD, its write ACL otherwise,
        set by the proxy) and ``haneul.account_acl`` (the account's raw
        ``X-Account-Access-Control``, if the proxy has it). Sets ``haneul.owner = True``
        when the caller may do anything to the account, ACLs and owner-only headers included.
        """
        try:
            _version, account, container, obj = split_path(request_path(req), 1, 4, True)
        except HTTPError:
            return error_response(404, "not found", req)
        if not account or not account.startswith(self.reseller_prefix):
            return self.denied_response(req)
        remote_user = req.environ.get("REMOTE_USER")
        user_groups = remote_user.split(",") if remote_user else []
        method = req.method
        account_write = container is None and method in ("PUT", "DELETE")

        if RESELLER_ADMIN in user_groups and self._is_resold(account):
            req.environ["haneul.owner"] = True
            return None
        if account in user_groups and not account_write:
            req.environ["haneul.owner"] = True
            return None
        if method == "OPTIONS":
            return None  # CORS preflight carries no credentials

        level = self._account_acl_level(req, user_groups)
        if level == "admin" and not account_write:
            req.environ["haneul.owner"] = True
            return None
        is_read = method in READ_METHODS
        changes_acl = container is not None and obj is None and self._sets_acl(req)
        if level == "read-write" and (container is not None or is_read) and not changes_acl:
            return None
        if level == "read-only" and is_read:
            return None

        if container is None or (obj is None and not is_read):
            # Account requests and container writes are for owners; ACLs don't reach them.
            return self.denied_response(req)
        referrers, groups = parse_acl(req.environ.get("haneul.acl"))
        if is_read and referrer_allowed(req.referer, referrers):
            if obj is not None or ".rlistings" in groups:
                return None
        if user_groups and acl_grants(groups, user_groups):
            return None
        return self.denied_response(req)

    def _is_resold(self, account):
        """Accounts a reseller admin owns: ours, but not the bare prefix or dot-accounts."""
        name = account[len(self.reseller_prefix) :]
        return bool(name) and not name.startswith(".")

    @staticmethod
    def _sets_acl(req):
        return any(header in req.headers for header in ACL_HEADERS)

    def _account_acl_level(self, req, user_groups):
        text = req.environ.get("haneul.account_acl")
        if not text or not user_groups:
            return None
        try:
            acl = parse_account_acl(text)
        except ValueError as err:
            self.logger.warning("ignoring a bad account ACL on %s: %s", req.path, err)
            return None
        return account_acl_level(acl, user_groups)


def filter_factory(global_conf, local_conf):
    """``[filter:tempauth]``: users (``user_*``/``user64_*``) and the options in OPTIONS."""
    check_options(local_conf, OPTIONS, USER_PREFIXES)
    # Read the settings now, so a bad option stops the proxy at start, not at first request.
    prototype = TempAuth(None, filter_conf(global_conf, local_conf))
    # account_acls turns true once the proxy hands authorize() the account's ACL
    # (environ "haneul.account_acl"); clients test it before relying on account ACLs.
    register_capability("tempauth", account_acls=False)

    def make_filter(app):
        auth = copy.copy(prototype)
        auth.app = app
        return auth

    return make_filter
