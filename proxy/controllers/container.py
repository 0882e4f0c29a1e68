"""Containers: listings, creation with a storage policy, metadata and ACLs, deletion.

A listing is passed through from the first container server that answers, with every
query parameter (prefix, delimiter, marker, end_marker, limit, reverse, format). Writes
go to every container node, each paired with one account node to report to, and
succeed on a quorum. The proxy's container info cache is dropped on every write made
here, so this proxy sees its own changes at once.
"""

from common.backend import backend_path
from common.constraints import CONTAINER_LISTING_LIMIT, check_listing_limit, check_metadata
from common.http import HTTPError
from common.timestamp import Timestamp
from proxy.controllers.base import Controller
from proxy.controllers.info import container_key, headers_to_info
from proxy.controllers.object_headers import update_target_headers

# Container headers a client cannot set: the policy is chosen at creation only.
NOT_SETTABLE = ("x-storage-policy", "x-backend-storage-policy-index")


class ContainerController(Controller):
    """GET, HEAD, PUT, POST and DELETE of one container."""

    server_type = "Container"

    def _path(self, part):
        return backend_path(part, self.account, self.container)

    # -- reads -----------------------------------------------------------------------

    def GET(self):
        return self._get_or_head()

    def HEAD(self):
        return self._get_or_head()

    def _get_or_head(self):
        req = self.req
        if req.method == "GET":
            check_listing_limit(req.GET.get("limit"), CONTAINER_LISTING_LIMIT)
        ring = self.app.container_ring
        part = ring.get_part(self.account, self.container)
        result, statuses = self.forward_read(ring, part, self._path(part))
        acl = None
        if result is not None and 200 <= result.status < 300:
            info = headers_to_info("container", result.status, result.headers)
            self.app.info_cache.put(container_key(self.account, self.container), info)
            acl = info["read_acl"]
        # Authorized after the read so the listing's own ACL decides (no extra HEAD);
        # a denial hides whether the container exists.
        denial = self.authorize(acl)
        if denial is not None:
            return denial
        resp = self.read_response(result, statuses, int(ring.replica_count))
        if result is not None and 200 <= result.status < 300:
            index = result.headers.get("X-Backend-Storage-Policy-Index")
            policy = self.app.policies.get_by_index(index)
            if policy is not None:
                resp.headers["X-Storage-Policy"] = policy.name
        return self.strip_owner_headers(resp)

    # -- writes ----------------------------------------------------------------------

    def _write_headers(self, timestamp):
        headers = self.backend_headers(timestamp=timestamp, transfer=True)
        for key in [k for k in headers if k.lower() in NOT_SETTABLE]:
            del headers[key]
        self.clean_acl_headers(headers)
        return headers

    def _fan_out(self, method, headers):
        ring = self.app.container_ring
        part, nodes = ring.get_nodes(self.account, self.container)
        account_ring = self.app.account_ring
        account_part, account_nodes = account_ring.get_nodes(self.account)
        updates = update_target_headers("Account", account_nodes, account_part, len(nodes))
        self.invalidate_info(self.account, self.container)
        self.invalidate_info(self.account)
        results = self.write_all(
            ring, part, method, self._path(part), [dict(headers, **u) for u in updates]
        )
        self.invalidate_info(self.account, self.container)
        return results, len(nodes) // 2 + 1

    def _policy_headers(self):
        """X-Backend-Storage-Policy-Index for an explicit X-Storage-Policy (400 if unknown),
        and always the default policy for a container created without one."""
        headers = {"X-Backend-Storage-Policy-Default": str(self.app.policies.default.index)}
        name = self.req.headers.get("X-Storage-Policy")
        if name is None:
            return headers
        policy = self.app.policies.get_by_name(name)
        if policy is None:
            raise HTTPError(400, f"invalid X-Storage-Policy {name!r}")
        if policy.is_deprecated:
            raise HTTPError(400, f"storage policy {policy.name!r} is deprecated")
        headers["X-Backend-Storage-Policy-Index"] = str(policy.index)
        return headers

    def PUT(self):
        check_metadata(self.req.headers, "container")
        policy_headers = self._policy_headers()
        denial = self.authorize(None)
        if denial is not None:
            return denial
        account = self.account_info()
        if account["status"] == 404:
            if not self.app.account_autocreate:
                raise HTTPError(404, "account not found")
            if not self.autocreate_account():
                raise HTTPError(503, "could not create the account")
        elif not 200 <= account["status"] < 300:
            raise HTTPError(503, "account servers did not answer")
        headers = self._write_headers(Timestamp.now())
        headers.update(policy_headers)
        results, quorum = self._fan_out("PUT", headers)
        return self.write_response(results, quorum)

    def POST(self):
        check_metadata(self.req.headers, "container")
        denial = self.authorize(None)
        if denial is not None:
            return denial
        results, quorum = self._fan_out("POST", self._write_headers(Timestamp.now()))
        return self.write_response(results, quorum)

    def DELETE(self):
        denial = self.authorize(None)
        if denial is not None:
            return denial
        results, quorum = self._fan_out("DELETE", self._write_headers(Timestamp.now()))
        return self.write_response(results, quorum)
