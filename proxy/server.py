"""The proxy WSGI app: ``/v1/<account>[/<container>[/<object>]]`` and ``/info``.

``ProxyApp(conf)`` reads the rings and the storage policies once, keeps the per-process
state (error limiter, container/account info cache) and hands each request to the
controller for what it names. Every answer carries the request's ``X-Trans-Id``, the
same one every storage node saw. See ``CONF_DEFAULTS`` for the options.
"""

import json
import logging
import os

from webob import Request, Response

import proxy
from common import constraints
from common.config import (
    ConfigError,
    config_float,
    config_int,
    config_true,
    haneul_conf_path,
)
from common.constraints import check_name
from common.hashing import load_hash_secrets
from common.http import HTTPError, error_response, new_trans_id, request_path, split_path
from common.policies import load_policies
from proxy.controllers.account import AccountController
from proxy.controllers.base import Controller
from proxy.controllers.container import ContainerController
from proxy.controllers.info import InfoCache
from proxy.controllers.nodes import parse_request_node_count
from proxy.controllers.obj_ec import ECObjectController
from proxy.controllers.obj_replicated import ObjectController
from proxy.error_limiter import ErrorLimiter
from ring.ring import Ring, RingFileError

VERSION = "0.1.0"
API_VERSIONS = ("v1", "v1.0")

# Every option, with its default (strings, as an INI file gives them).
CONF_DEFAULTS = {
    "ring_dir": "/etc/haneul",
    "haneul_conf": "",
    "ring_reload_interval": "15",
    "conn_timeout": "0.5",
    "node_timeout": "10",
    "recoverable_node_timeout": "",
    "client_timeout": "60",
    "error_suppression_interval": "60",
    "error_suppression_limit": "10",
    "request_node_count": "2 * replicas",
    "account_autocreate": "true",
    "allow_account_management": "false",
    "max_object_size": str(constraints.MAX_FILE_SIZE),
    "object_post_as_copy": "false",
    "container_info_cache_ttl": "10",
    "client_chunk_size": "65536",
    "rfc_compliant_etags": "false",
    "expose_info": "true",
}

# The object controller of each storage policy type.
OBJECT_CONTROLLERS = {"replication": ObjectController, "erasure_coding": ECObjectController}

METHODS = {
    "account": ("GET", "HEAD", "POST", "PUT", "DELETE"),
    "container": ("GET", "HEAD", "PUT", "POST", "DELETE"),
    "object": ("GET", "HEAD", "PUT", "POST", "DELETE", "COPY"),
}


class ProxyApp:
    """The proxy server's WSGI app (the last step of the proxy pipeline)."""

    def __init__(self, conf=None, logger=None, policies=None, hash_secrets=None):
        self.logger = logger or logging.getLogger("haneul.proxy")
        conf = dict(CONF_DEFAULTS, **{k: v for k, v in (conf or {}).items() if v is not None})
        self.conf = conf
        self.ring_dir = conf["ring_dir"]
        self.haneul_conf = conf["haneul_conf"] or haneul_conf_path()
        self.conn_timeout = config_float(conf["conn_timeout"], "conn_timeout", 0)
        self.node_timeout = config_float(conf["node_timeout"], "node_timeout", 0)
        self.recoverable_node_timeout = config_float(
            conf["recoverable_node_timeout"] or conf["node_timeout"],
            "recoverable_node_timeout",
            0,
        )
        self.client_timeout = config_float(conf["client_timeout"], "client_timeout", 0)
        self.error_limiter = ErrorLimiter(
            config_float(conf["error_suppression_interval"], "error_suppression_interval", 0),
            config_int(conf["error_suppression_limit"], "error_suppression_limit", 1),
        )
        try:
            self.request_node_count = parse_request_node_count(conf["request_node_count"])
        except ValueError:
            raise ConfigError(
                "request_node_count must be an integer or '<N> * replicas', "
                f"got {conf['request_node_count']!r}"
            ) from None
        self.account_autocreate = config_true(conf["account_autocreate"])
        self.allow_account_management = config_true(conf["allow_account_management"])
        self.max_object_size = config_int(conf["max_object_size"], "max_object_size", 0)
        self.object_post_as_copy = config_true(conf["object_post_as_copy"])
        self.info_cache = InfoCache(
            config_float(conf["container_info_cache_ttl"], "container_info_cache_ttl", 0)
        )
        self.client_chunk_size = config_int(conf["client_chunk_size"], "client_chunk_size", 1)
        self.rfc_compliant_etags = config_true(conf["rfc_compliant_etags"])
        self.expose_info = config_true(conf["expose_info"])

        self.hash_secrets = hash_secrets or load_hash_secrets(self.haneul_conf)
        self.policies = policies or load_policies(self.haneul_conf)
        interval = config_float(conf["ring_reload_interval"], "ring_reload_interval", 0)
        self.account_ring = self._load_ring("account", interval)
        self.container_ring = self._load_ring("container", interval)
        self._object_rings = {
            p.index: self._load_ring(p.ring_name, interval) for p in self.policies
        }
        for policy in self.policies:
            ring = self._object_rings[policy.index]
            policy.check_ring(f"{policy.ring_name}.ring.gz", ring.replica_count)

    def _load_ring(self, name, interval):
        path = os.path.join(self.ring_dir, f"{name}.ring.gz")
        try:
            return Ring(path, hash_secrets=self.hash_secrets, reload_interval=interval)
        except FileNotFoundError:
            raise ConfigError(f"ring file not found: {path} (ring_dir = {self.ring_dir})") from None
        except RingFileError as err:
            raise ConfigError(f"cannot load ring {path}: {err}") from None

    # -- lookups the controllers use ---------------------------------------------------

    def policy_for_index(self, index):
        """The policy of a container (its index), the default one when it has none."""
        if index is None:
            return self.policies.default
        policy = self.policies.get_by_index(index)
        if policy is None:
            raise HTTPError(503, f"container has unknown storage policy {index}")
        return policy

    def object_controller(self, req, account, container, obj):
        """The controller for an object request: the one of its container's policy type.

        With one policy type in the cluster no lookup is needed; otherwise the
        container's info (cached, and used again by the controller) names the policy.
        """
        types = {p.policy_type for p in self.policies}
        if len(types) == 1:
            controller_class = OBJECT_CONTROLLERS[types.pop()]
        else:
            info = Controller(self, req, account, container).container_info()
            policy = self.policies.get_by_index(info["storage_policy"]) or self.policies.default
            controller_class = OBJECT_CONTROLLERS[policy.policy_type]
        return controller_class(self, req, account, container, obj)

    def object_ring(self, policy):
        """The object ring of ``policy``."""
        return self._object_rings[policy.index]

    # -- WSGI --------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        trans_id = environ.get("haneul.trans_id")
        if not trans_id:
            extra = environ.get("HTTP_X_TRANS_ID_EXTRA", "")
            suffix = (
                "-" + "".join(c for c in extra[:32] if c.isalnum() or c in "-_.") if extra else ""
            )
            trans_id = new_trans_id(suffix)
            environ["haneul.trans_id"] = trans_id
        req = Request(environ)
        try:
            resp = self.handle(req)
        except HTTPError as err:
            resp = err.response(req)
        except Exception:
            self.logger.exception(
                "unexpected error on %s %s (%s)", req.method, req.path_info, trans_id
            )
            resp = error_response(500, f"internal error, transaction {trans_id}", req)
        resp.headers["X-Trans-Id"] = trans_id
        resp.headers["X-Openstack-Request-Id"] = trans_id
        return resp(environ, start_response)

    def handle(self, req):
        """Route a request to /info or to a controller; raises HTTPError for bad paths."""
        try:
            path = request_path(req)
        except HTTPError:
            raise HTTPError(412, "invalid UTF8 in path") from None
        if "\x00" in path:
            raise HTTPError(412, "path contains a NUL character")
        if path.rstrip("/") == "/info":
            return self.info(req)
        try:
            version, account, container, obj = split_path(path, 1, 4, rest_with_last=True)
        except HTTPError:
            raise HTTPError(404, "no such resource") from None
        if version not in API_VERSIONS or not account:
            raise HTTPError(404, "no such resource")
        check_name("account", account)
        if obj is not None:
            check_name("container", container)
            check_name("object", obj)
            kind, controller_class = "object", None
        elif container is not None:
            check_name("container", container)
            kind, controller_class = "container", ContainerController
        else:
            kind, controller_class = "account", AccountController
        allowed = METHODS[kind]
        if kind == "account" and not self.allow_account_management:
            allowed = ("GET", "HEAD", "POST")
        if req.method not in allowed:
            raise HTTPError(
                405, f"method {req.method} not allowed here", {"Allow": ", ".join(allowed)}
            )
        if kind == "object":
            controller = self.object_controller(req, account, container, obj)
        else:
            controller = controller_class(self, req, account, container, obj)
        resp = getattr(controller, req.method)()
        if kind == "object":
            self._format_etag(resp)
        return resp

    def _format_etag(self, resp):
        """Swift answers bare MD5 ETags unless told to follow RFC 7232 (quoted)."""
        etag = resp.headers.get("ETag")
        if etag is None:
            return
        bare = etag.strip('"')
        resp.headers["ETag"] = f'"{bare}"' if self.rfc_compliant_etags else bare

    # -- /info -------------------------------------------------------------------------

    def capabilities(self):
        """The document /info serves: our limits and policies, and middleware sections."""
        swift = {
            "version": VERSION,
            "max_file_size": self.max_object_size,
            "max_meta_name_length": constraints.MAX_META_NAME_LENGTH,
            "max_meta_value_length": constraints.MAX_META_VALUE_LENGTH,
            "max_meta_count": constraints.MAX_META_COUNT,
            "max_meta_overall_size": constraints.MAX_META_OVERALL_SIZE,
            "max_header_size": constraints.MAX_HEADER_SIZE,
            "max_object_name_length": constraints.MAX_OBJECT_NAME_LENGTH,
            "container_listing_limit": constraints.CONTAINER_LISTING_LIMIT,
            "account_listing_limit": constraints.ACCOUNT_LISTING_LIMIT,
            "max_account_name_length": constraints.MAX_ACCOUNT_NAME_LENGTH,
            "max_container_name_length": constraints.MAX_CONTAINER_NAME_LENGTH,
            "valid_api_versions": list(API_VERSIONS),
            "extra_header_count": 0,
            "account_autocreate": self.account_autocreate,
            "allow_account_management": self.allow_account_management,
            "strict_cors_mode": True,
            "policies": self.policies.info(),
        }
        document = {"swift": swift}
        for name, values in proxy.capabilities().items():
            if name != "swift":
                document[name] = values
        return document

    def info(self, req):
        if req.method not in ("GET", "HEAD"):
            raise HTTPError(405, f"method {req.method} not allowed here", {"Allow": "GET, HEAD"})
        if not self.expose_info:
            raise HTTPError(403, "/info is disabled")
        body = json.dumps(self.capabilities(), sort_keys=True).encode("utf-8")
        resp = Response(status=200, content_type="application/json", charset="utf-8")
        resp.body = body
        return resp
