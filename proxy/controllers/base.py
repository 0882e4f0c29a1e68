"""What every proxy controller shares: headers to and from nodes, auth, fan-out, reads.

A controller handles one client request for one account, container or object. It
talks to storage nodes only through ``common.backend`` and runs calls side by side
through ``common.concurrency.Pile``; node failures feed the proxy's error limiter here,
in one place.
"""

import logging

from webob import Response

from common import backend
from common.backend import BackendError, backend_path
from common.concurrency import Pile
from common.http import HTTPError, header_items, status_line
from common.timestamp import Timestamp
from proxy.controllers.info import (
    account_key,
    container_key,
    headers_to_info,
    missing_info,
)
from proxy.controllers.nodes import NodeIter, ring_node_iter
from proxy.controllers.quorum import best_status, status_class

LOG = logging.getLogger("haneul.proxy")

# Never forwarded between client and node, in either direction.
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    )
)
# Client request headers the proxy sets itself or that nodes must not see.
NOT_FORWARDED = HOP_BY_HOP | frozenset(
    (
        "host",
        "content-length",
        "expect",
        "x-auth-token",
        "x-storage-token",
        "x-timestamp",
        "x-trans-id",
        "cookie",
    )
)
# Node response headers a client never sees (the proxy sets its own or they are ours).
NOT_RETURNED = HOP_BY_HOP | frozenset(("date", "server", "x-trans-id", "content-length"))
# Headers only the account owner may see (stripped otherwise, when auth is in use).
OWNER_ONLY = frozenset(
    (
        "x-container-read",
        "x-container-write",
        "x-container-sync-key",
        "x-container-sync-to",
        "x-account-access-control",
        "x-account-meta-temp-url-key",
        "x-account-meta-temp-url-key-2",
        "x-container-meta-temp-url-key",
        "x-container-meta-temp-url-key-2",
    )
)


def forwarded_headers(req):
    """The client's headers that go on to the storage nodes (WSGI strings, as given)."""
    return {
        key: value
        for key, value in header_items(req.environ)
        if key.lower() not in NOT_FORWARDED and not key.lower().startswith("x-backend-")
    }


def client_headers(node_headers, keep_backend=False):
    """A node answer's headers fit for the client: hop-by-hop and X-Backend-* dropped."""
    out = []
    for key, value in node_headers.items():
        lower = key.lower()
        if lower in NOT_RETURNED:
            continue
        if lower.startswith("x-backend-") and not keep_backend:
            continue
        out.append((key, value))
    return out


def plain_response(status, headers=None, body=b"", content_type="text/plain"):
    """A small response with a body we wrote ourselves (or none)."""
    resp = Response(status=status_line(status), headerlist=[])
    for key, value in headers or ():
        resp.headers[key] = value
    if body:
        resp.content_type = content_type
        resp.body = body
    else:
        resp.content_length = 0
    return resp


def node_response(result, keep_backend=False, status=None):
    """A client response built from one whole node answer (a BackendResult)."""
    resp = Response(status=status_line(status or result.status), headerlist=[])
    for key, value in client_headers(result.headers, keep_backend):
        resp.headers.add(key, value)
    resp.body = result.body or b""
    return resp


class Controller:
    """Shared plumbing for the account, container and object controllers."""

    server_type = "base"

    def __init__(self, app, req, account, container=None, obj=None):
        self.app = app
        self.req = req
        self.account = account
        self.container = container
        self.obj = obj
        self.trans_id = req.environ.get("haneul.trans_id", "")

    # -- auth ----------------------------------------------------------------------

    def authorize(self, acl=None):
        """Ask the auth middleware's hook; None means go on, a response is the denial.

        ``acl`` (the container's read or write ACL, or None) is put in the environ as
        ``haneul.acl`` for the hook to judge. With no hook in the pipeline, or with
        ``haneul.authorize_override`` set, everything is allowed.
        """
        environ = self.req.environ
        if environ.get("haneul.authorize_override"):
            return None
        hook = environ.get("haneul.authorize")
        if hook is None:
            return None
        environ["haneul.acl"] = acl
        if "haneul.account_acl" not in environ and self.account:
            # The account's ACL (X-Account-Access-Control) can grant what the container's
            # cannot; the hook reads it from here.
            account_acl = self.account_info()["headers"].get("x-account-access-control")
            if account_acl:
                environ["haneul.account_acl"] = account_acl
        return hook(self.req)

    def is_owner(self):
        """Whether the caller may see owner-only headers (ACLs, keys)."""
        environ = self.req.environ
        if environ.get("haneul.authorize") is None or environ.get("haneul.authorize_override"):
            return True
        return bool(environ.get("haneul.owner"))

    def strip_owner_headers(self, resp):
        """Drop ACLs and secret keys from ``resp`` unless the caller owns the account."""
        if self.is_owner():
            return resp
        for key in list(resp.headers.keys()):
            if key.lower() in OWNER_ONLY:
                del resp.headers[key]
        return resp

    # -- headers -------------------------------------------------------------------

    def backend_headers(self, timestamp=None, transfer=False, **extra):
        """Headers for one node request: trans id, timestamp, and optionally the client's."""
        headers = forwarded_headers(self.req) if transfer else {}
        headers["X-Trans-Id"] = self.trans_id
        if timestamp is not None:
            headers["X-Timestamp"] = Timestamp(timestamp).internal
        for key, value in extra.items():
            if value is not None:
                headers[key.replace("_", "-")] = value
        return headers

    # -- talking to nodes ----------------------------------------------------------

    def node_iter(self, ring, part, primaries=None):
        """Primaries then handoffs of ``part``, minus error-limited nodes."""
        return ring_node_iter(
            ring, part, self.app.request_node_count, self.app.error_limiter, primaries
        )

    def note_node_result(self, node, status=None, error=None):
        """Feed the error limiter: failures count, 507 limits the node at once."""
        limiter = self.app.error_limiter
        if error is not None:
            limiter.error(node)
            LOG.warning("%s %s (%s)", self.server_type, error, self.trans_id)
        elif status == 507:
            limiter.limit_now(node)
            LOG.warning(
                "%s node %s:%s/%s answered 507; skipping it for %ss (%s)",
                self.server_type,
                node["ip"],
                node["port"],
                node["device"],
                limiter.interval,
                self.trans_id,
            )
        elif status is not None and status >= 500:
            limiter.error(node)

    def call_node(self, node, method, path, headers, body=b"", query_string="", timeout=None):
        """One whole exchange with a node: a BackendResult, or None if it failed."""
        try:
            result = backend.request(
                node,
                method,
                path,
                headers,
                body,
                conn_timeout=self.app.conn_timeout,
                node_timeout=timeout or self.app.node_timeout,
                query_string=query_string,
            )
        except BackendError as err:
            self.note_node_result(node, error=err)
            return None
        self.note_node_result(node, status=result.status)
        return result

    def write_all(self, ring, part, method, path, headers_list, body=b"", query_string=""):
        """Send one write to every primary side by side; a failed one goes to a handoff.

        ``headers_list[i]`` goes to primary ``i`` (and to the handoff standing in for
        it). Returns the list of final BackendResults (None where every node failed).
        """
        primaries = ring.get_part_nodes(part)
        nodes = NodeIter([], ring.get_more_nodes(part), len(primaries), self.app.error_limiter)
        limiter = self.app.error_limiter
        pile = Pile(len(primaries))

        def attempt(first, headers):
            node = first
            while node is not None:
                result = None
                if not limiter.is_limited(node):
                    result = self.call_node(node, method, path, headers, body, query_string)
                if result is not None and result.status < 500:
                    return result
                node = next(nodes, None)
            return None

        for index, node in enumerate(primaries):
            pile.spawn(attempt, node, headers_list[index % len(headers_list)])
        results = []
        for result in pile:
            if isinstance(result, Exception):
                LOG.error("%s %s failed: %r (%s)", method, path, result, self.trans_id)
                result = None
            results.append(result)
        return results

    def write_response(self, results, quorum=None, status_fn=best_status):
        """The client's answer to a fan-out write: the quorum status and its headers."""
        statuses = [r.status if r is not None else 503 for r in results]
        if quorum is None:
            quorum = len(statuses) // 2 + 1
        status = status_fn(statuses, quorum)
        for result in results:
            if result is not None and result.status == status:
                resp = node_response(result)
                break
        else:
            resp = plain_response(status)
        return resp

    def read_first(self, ring, part, method, path, headers, query_string=""):
        """Walk the nodes until one gives a definite answer; (result, statuses seen).

        2xx, 3xx and 4xx other than 404 are definite. A 404 is remembered and the walk
        goes on; the caller decides with the statuses whether a quorum said 404.
        """
        statuses = []
        missing = None
        for node in self.node_iter(ring, part):
            result = self.call_node(node, method, path, headers, query_string=query_string)
            if result is None:
                statuses.append(503)
                continue
            statuses.append(result.status)
            if result.status == 404:
                missing = missing or result
                continue
            if status_class(result.status) in (2, 3, 4):
                return result, statuses
        return missing, statuses

    def forward_read(self, ring, part, path):
        """The client's GET/HEAD of an account or container, query string and all, sent
        to the nodes of ``part`` as ``read_first`` does: (result, statuses seen)."""
        req = self.req
        return self.read_first(
            ring,
            part,
            req.method,
            path,
            self.backend_headers(transfer=True),
            query_string=req.query_string,
        )

    def read_response(self, result, statuses, replicas):
        """A 404 if enough nodes said so (or none failed), else 503 when nothing answered."""
        if result is not None and result.status != 404:
            return node_response(result)
        not_found = statuses.count(404)
        if result is not None and (not_found >= replicas // 2 + 1 or not_found == len(statuses)):
            return node_response(result, status=404)
        return plain_response(503, body=b"no storage node answered\n")

    # -- account and container info --------------------------------------------------

    def container_info(self, account=None, container=None):
        """The (cached) info dict of a container: status, policy, ACLs, counts, meta."""
        account = account or self.account
        container = container or self.container
        key = container_key(account, container)
        info = self.app.info_cache.get(key)
        if info is not None:
            return info
        ring = self.app.container_ring
        part = ring.get_part(account, container)
        path = backend_path(part, account, container)
        result, statuses = self.read_first(ring, part, "HEAD", path, self.backend_headers())
        info = self._info_from(result, statuses, "container", ring)
        self.app.info_cache.put(key, info)
        return info

    def account_info(self, account=None):
        """The (cached) info dict of an account: status, counts, meta."""
        account = account or self.account
        key = account_key(account)
        info = self.app.info_cache.get(key)
        if info is not None:
            return info
        ring = self.app.account_ring
        part = ring.get_part(account)
        path = backend_path(part, account)
        result, statuses = self.read_first(ring, part, "HEAD", path, self.backend_headers())
        info = self._info_from(result, statuses, "account", ring)
        self.app.info_cache.put(key, info)
        return info

    def _info_from(self, result, statuses, kind, ring):
        if result is not None and 200 <= result.status < 300:
            return headers_to_info(kind, result.status, result.headers)
        not_found = statuses.count(404)
        replicas = int(ring.replica_count) or 1
        if result is not None and (not_found >= replicas // 2 + 1 or not_found == len(statuses)):
            return missing_info(kind, 404)
        return missing_info(kind, 503)

    def invalidate_info(self, account, container=None):
        """Forget cached info this request is about to change."""
        if container is None:
            self.app.info_cache.invalidate(account_key(account))
        else:
            self.app.info_cache.invalidate(container_key(account, container))

    def autocreate_account(self, account=None):
        """Create ``account`` on the account servers (account_autocreate); True if stored."""
        account = account or self.account
        ring = self.app.account_ring
        part, nodes = ring.get_nodes(account)
        headers = self.backend_headers(timestamp=Timestamp.now())
        results = self.write_all(ring, part, "PUT", backend_path(part, account), [headers])
        statuses = [r.status if r is not None else 503 for r in results]
        self.invalidate_info(account)
        ok = 200 <= best_status(statuses, len(nodes) // 2 + 1) < 300
        if not ok:
            LOG.warning(
                "could not autocreate account %r: %s (%s)", account, statuses, self.trans_id
            )
        return ok

    def clean_acl_headers(self, headers):
        """Let the auth middleware check and normalise X-Container-Read/Write values.

        The hook ``haneul.clean_acl(header_name, value) -> value`` (raising ValueError
        for a bad ACL, which is a 400) is optional; without it ACLs are stored as given.
        """
        cleaner = self.req.environ.get("haneul.clean_acl")
        for key in list(headers):
            if key.lower() not in ("x-container-read", "x-container-write"):
                continue
            if cleaner is None or not headers[key]:
                continue
            try:
                headers[key] = cleaner(key.lower(), headers[key])
            except ValueError as err:
                raise HTTPError(400, f"bad {key}: {err}") from None
