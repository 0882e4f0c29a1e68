"""Accounts: listing and metadata for their owners; PUT/DELETE for reseller admins.

With ``account_autocreate`` an account exists as soon as its owner uses it: a HEAD or
GET of an account the account servers do not know answers as an empty account would
(nothing is written), and the first container PUT (or account POST) creates it.
PUT and DELETE are only routed when ``allow_account_management`` is on; the auth hook
then decides who may use them.
"""

from common.backend import backend_path
from common.constraints import ACCOUNT_LISTING_LIMIT, check_listing_limit, check_metadata
from common.http import HTTPError
from common.listing import listing_format, listing_response
from common.timestamp import Timestamp
from proxy.controllers.base import Controller
from proxy.controllers.quorum import best_status


def empty_account_response(req, account):
    """What an account with no containers looks like (for account_autocreate)."""
    now = Timestamp.now().internal
    headers = {
        "X-Account-Container-Count": "0",
        "X-Account-Object-Count": "0",
        "X-Account-Bytes-Used": "0",
        "X-Timestamp": now,
        "X-Put-Timestamp": now,
    }
    fmt, content_type = listing_format(req)
    resp = listing_response([], fmt, content_type, "account", account, headers)
    if req.method == "HEAD":
        resp.status = 204
        resp.body = b""
        resp.headers["Content-Type"] = content_type
    return resp


class AccountController(Controller):
    """GET, HEAD, POST (and, when allowed, PUT and DELETE) of one account."""

    server_type = "Account"

    def _path(self, part):
        return backend_path(part, self.account)

    def GET(self):
        return self._get_or_head()

    def HEAD(self):
        return self._get_or_head()

    def _get_or_head(self):
        req = self.req
        if req.method == "GET":
            check_listing_limit(req.GET.get("limit"), ACCOUNT_LISTING_LIMIT)
        denial = self.authorize(None)
        if denial is not None:
            return denial
        ring = self.app.account_ring
        part = ring.get_part(self.account)
        result, statuses = self.forward_read(ring, part, self._path(part))
        resp = self.read_response(result, statuses, int(ring.replica_count))
        if resp.status_int == 404 and self.app.account_autocreate:
            return empty_account_response(req, self.account)
        return self.strip_owner_headers(resp)

    def _write(self, method):
        ring = self.app.account_ring
        part, nodes = ring.get_nodes(self.account)
        headers = self.backend_headers(timestamp=Timestamp.now(), transfer=True)
        self.invalidate_info(self.account)
        results = self.write_all(ring, part, method, self._path(part), [headers])
        return results, len(nodes) // 2 + 1

    def _management_allowed(self):
        if not self.app.allow_account_management:
            raise HTTPError(
                405,
                "account management is not enabled",
                {"Allow": "GET, HEAD, POST"},
            )

    def PUT(self):
        self._management_allowed()
        check_metadata(self.req.headers, "account")
        denial = self.authorize(None)
        if denial is not None:
            return denial
        results, quorum = self._write("PUT")
        return self.write_response(results, quorum)

    def DELETE(self):
        self._management_allowed()
        if self.req.query_string:
            # An account DELETE with a query string was probably meant for a middleware.
            raise HTTPError(400, "an account DELETE takes no query string")
        denial = self.authorize(None)
        if denial is not None:
            return denial
        results, quorum = self._write("DELETE")
        return self.write_response(results, quorum)

    def POST(self):
        check_metadata(self.req.headers, "account")
        denial = self.authorize(None)
        if denial is not None:
            return denial
        results, quorum = self._write("POST")
        statuses = [r.status if r is not None else 503 for r in results]
        if best_status(statuses, quorum) == 404 and self.app.account_autocreate:
            if not self.autocreate_account():
                raise HTTPError(503, "could not create the account")
            results, quorum = self._write("POST")
        return self.write_response(results, quorum)
