"""Objects of a replicated storage policy: whole copies on every primary node.

PUT streams the client's body once to all primaries at the same time (handoffs stand
in for the ones that fail) and succeeds when a quorum stored it. Each object server
hashes what it stored and answers with the ETag; the proxy only checks that they agree,
it never hashes the body itself. GET and HEAD are in ``obj_get``; server-side copy
(``X-Copy-From``, ``COPY``) reads the source through the same GET path, with the
source's read ACL checked, and stores it through the same PUT path.
"""

import io
import logging
from email.utils import formatdate
from urllib.parse import quote

from webob import Request

from common.backend import BackendError, backend_path
from common.concurrency import Pile
from common.config import config_true
from common.constraints import check_metadata
from common.expiring import delete_at_headers
from common.http import HTTPError, header_items, request_timestamp
from common.timestamp import Timestamp
from proxy.controllers.base import Controller, plain_response
from proxy.controllers.nodes import NodeIter
from proxy.controllers.obj_get import ObjectReader
from proxy.controllers.object_headers import (
    check_if_none_match,
    content_type_for,
    copied_from_headers,
    copied_headers,
    copy_account,
    delete_at,
    split_copy_path,
    update_target_headers,
)
from proxy.controllers.quorum import best_status, delete_status
from proxy.controllers.streaming import (
    EarlyAnswer,
    Putter,
    client_body,
    collect_answers,
    iter_body,
    open_putter,
    request_content_length,
    send_to_all,
)

LOG = logging.getLogger("haneul.proxy")


def _http_date(timestamp):
    return formatdate(int(timestamp.timestamp), usegmt=True)


# Bodies up to this size are sent without waiting for 100 Continue.
SMALL_BODY = 64 * 1024


class ObjectController(Controller):
    """GET, HEAD, PUT, POST, DELETE and COPY of one object in a replicated policy."""

    server_type = "Object"

    # -- where the object lives ------------------------------------------------------

    def _container_and_ring(self, acl_kind):
        """(container info, policy, object ring) after authorizing with the ``acl_kind``
        ACL ("read_acl" or "write_acl"); raises the denial or 404/503 as HTTPError."""
        info = self.container_info()
        denial = self.authorize(info.get(acl_kind))
        if denial is not None:
            raise _Denied(denial)
        if info["status"] == 404:
            raise HTTPError(404, "container not found")
        if not 200 <= info["status"] < 300:
            raise HTTPError(503, "container servers did not answer")
        policy = self.app.policy_for_index(info["storage_policy"])
        return info, policy, self.app.object_ring(policy)

    def _path(self, part):
        return backend_path(part, self.account, self.container, self.obj)

    def _object_headers(self, policy, timestamp=None, transfer=True):
        return self.backend_headers(
            timestamp=timestamp,
            transfer=transfer,
            X_Backend_Storage_Policy_Index=str(policy.index),
        )

    def _container_updates(self, slot_count, delete_at=None):
        """Per-slot X-Container-* headers: the container node each object node updates.

        With ``delete_at`` each slot also names the expiring-objects queue container
        replica its object node records the object in (X-Delete-At-*), for the expirer.
        """
        ring = self.app.container_ring
        part, nodes = ring.get_nodes(self.account, self.container)
        updates = update_target_headers("Container", nodes, part, slot_count)
        if delete_at:
            queue = delete_at_headers(ring, int(delete_at), slot_count)
            updates = [dict(update, **queue[slot]) for slot, update in enumerate(updates)]
        return updates

    def _timestamp(self):
        given = request_timestamp(self.req, required=False)
        return given or Timestamp.now()

    # -- GET and HEAD ----------------------------------------------------------------

    def GET(self):
        return self._get_or_head()

    def HEAD(self):
        return self._get_or_head()

    def _get_or_head(self):
        try:
            _info, policy, ring = self._container_and_ring("read_acl")
        except _Denied as denied:
            return denied.response
        except HTTPError as err:
            if err.status not in (404, 503):
                raise
            # No container (or no container server answering): the object servers are
            # still asked, on the default policy's ring, as Swift does.
            policy = self.app.policies.default
            ring = self.app.object_ring(policy)
        part = ring.get_part(self.account, self.container, self.obj)
        headers = self._object_headers(policy)
        reader = ObjectReader(self, ring, part, self._path(part), headers)
        newest = config_true(self.req.headers.get("X-Newest", "false") or "false")
        return reader.response(newest=newest)

    # -- PUT -------------------------------------------------------------------------

    def PUT(self):
        req = self.req
        if req.headers.get("X-Copy-From"):
            return self._copy_put()
        length, _chunked = request_content_length(req)
        if length is not None and length > self.app.max_object_size:
            raise HTTPError(413, f"object larger than {self.app.max_object_size} bytes")
        check_metadata(dict(header_items(req.environ)), "object")
        check_if_none_match(req.headers)
        expires = delete_at(req.headers)
        try:
            _info, policy, ring = self._container_and_ring("write_acl")
        except _Denied as denied:
            return denied.response
        headers = self._object_headers(policy)
        headers["Content-Type"] = content_type_for(req.headers, self.obj)
        _set_delete_at(headers, expires)
        return self._store(policy, ring, headers, self._client_body(policy, length), length)

    def _client_body(self, policy, length):
        """The client's body as ``_store`` consumes it: chunks as they arrive."""
        return client_body(
            self.req.environ,
            length,
            self.app.client_chunk_size,
            self.app.client_timeout,
            self.app.max_object_size,
        )

    def _store(self, policy, ring, headers, body, length, extra_resp_headers=None):
        """Stream ``body`` (``length`` bytes, or None for chunked) to the object's nodes."""
        timestamp = self._timestamp()
        headers["X-Timestamp"] = timestamp.internal
        headers.pop("Content-Length", None)
        headers.pop("Transfer-Encoding", None)
        if length is None:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(length)
        part, primaries = ring.get_nodes(self.account, self.container, self.obj)
        updates = self._container_updates(len(primaries), headers.get("X-Delete-At"))
        slot_headers = [dict(headers, **updates[slot]) for slot in range(len(primaries))]
        quorum = policy.quorum_size(len(primaries))
        # A small body costs less to send than the 100-continue round trip it would wait
        # for; large or chunked bodies still wait, so a refusing node costs no transfer,
        # and so does a client that waits itself or may be refused up front (412).
        client_waits = "Expect" in self.req.headers or "If-None-Match" in self.req.headers
        expect = length is None or length > SMALL_BODY or client_waits
        if not expect:
            # Small enough to hold: read it all first, so that each node gets headers
            # and body in one packet (and a client that fails to send it costs no node).
            # The body itself still goes only once a quorum of nodes is connected.
            body = [b"".join(body)]
        putters, answers = self._connect(
            ring, part, primaries, slot_headers, expect, body_in_hand=not expect
        )
        try:
            early = [a.status for a in answers]
            if 412 in early:
                raise HTTPError(412, "the object already exists (If-None-Match: *)")
            if len(putters) < quorum:
                if early.count(409) >= quorum or (409 in early and not putters):
                    # A newer write is already stored: this one is superseded, as in Swift.
                    raise _Superseded()
                raise HTTPError(503, f"only {len(putters)} object servers could take the PUT")
            live = send_to_all(body, putters, quorum, self._putter_failed)
        except BaseException as err:
            for putter in putters:
                putter.close()
            close = getattr(body, "close", None)
            if close is not None:
                close()
            if isinstance(err, _Superseded):
                return plain_response(202)
            raise
        return self._put_response(live, len(primaries), quorum, timestamp, extra_resp_headers)

    def _connect(self, ring, part, primaries, slot_headers, expect, body_in_hand=False):
        """Open a PUT to every primary side by side (a handoff for each that fails).

        ``body_in_hand``: the whole body is read already (see ``open_putter``).

        Returns (putters ready for the body, early final answers such as 412).
        """
        handoffs = NodeIter([], ring.get_more_nodes(part), len(primaries), self.app.error_limiter)
        limiter = self.app.error_limiter
        path = self._path(part)
        app = self.app

        def attempt(slot, node):
            while node is not None:
                if not limiter.is_limited(node):
                    try:
                        outcome = open_putter(
                            slot,
                            node,
                            "PUT",
                            path,
                            slot_headers[slot],
                            expect,
                            app.conn_timeout,
                            app.node_timeout,
                            body_in_hand=body_in_hand,
                        )
                    except BackendError as err:
                        self.note_node_result(node, error=err)
                    else:
                        if isinstance(outcome, Putter):
                            return outcome
                        self.note_node_result(node, status=outcome.status)
                        if outcome.status < 500:
                            return outcome
                node = next(handoffs, None)
            return None

        pile = Pile(len(primaries))
        for slot, node in enumerate(primaries):
            pile.spawn(attempt, slot, node)
        putters, answers = [], []
        for outcome in pile:
            if isinstance(outcome, Putter):
                putters.append(outcome)
            elif isinstance(outcome, EarlyAnswer):
                answers.append(outcome)
            elif isinstance(outcome, Exception):
                LOG.error("PUT connect failed: %r (%s)", outcome, self.trans_id)
        return putters, answers

    def _putter_failed(self, putter):
        self.note_node_result(putter.node, error=putter.failed)

    def _put_response(self, live, slot_count, quorum, timestamp, extra_resp_headers):
        statuses, etags = [], set()
        for putter, status, headers in collect_answers(live):
            if status is None:
                self._putter_failed(putter)
                statuses.append(503)
                continue
            self.note_node_result(putter.node, status=status)
            statuses.append(status)
            if 200 <= status < 300:
                etags.add((headers.get("ETag") or "").strip('"'))
        statuses += [503] * (slot_count - len(statuses))
        status = best_status(statuses, quorum)
        if status == 409:
            return plain_response(202)
        if status == 422:
            raise HTTPError(422, "the body does not match the ETag given")
        if not 200 <= status < 300:
            raise HTTPError(status, "the object was not stored")
        if len(etags) > 1:
            LOG.error("PUT %s: object servers disagree on the ETag: %s", self.obj, etags)
            raise HTTPError(500, "object servers returned different ETags")
        headers = [("Last-Modified", _http_date(timestamp))]
        if etags:
            headers.append(("ETag", etags.pop()))
        headers += list((extra_resp_headers or {}).items())
        return plain_response(201, headers)

    # -- server-side copy ------------------------------------------------------------

    def _copy_put(self, fresh=None, status=None):
        """PUT with X-Copy-From: read the source (its ACL checked), store it here."""
        req = self.req
        if req.content_length:
            raise HTTPError(400, "copy requests require a zero byte body")
        src_container, src_obj = split_copy_path(req.headers["X-Copy-From"], "X-Copy-From")
        src_account = copy_account(req.headers.get("X-Copy-From-Account"), self.account)
        check_metadata(dict(header_items(req.environ)), "object")
        check_if_none_match(req.headers)
        try:
            _info, policy, ring = self._container_and_ring("write_acl")
        except _Denied as denied:
            return denied.response
        source = self._fetch_source(src_account, src_container, src_obj)
        if not 200 <= source.status_int < 300:
            return source
        length = source.content_length
        if length is None or length > self.app.max_object_size:
            _close(source.app_iter)
            raise HTTPError(413, f"object larger than {self.app.max_object_size} bytes")
        if fresh is None:
            fresh = config_true(req.headers.get("X-Fresh-Metadata", "false") or "false")
        headers = self._object_headers(policy)
        dropped = ("x-copy-from", "x-copy-from-account", "x-fresh-metadata", "etag")
        for key in list(headers):
            lower = key.lower()
            if lower.startswith(("x-object-", "content-")) or lower in dropped:
                del headers[key]
        headers.update(copied_headers(source.headers, req.headers, fresh))
        if source.status_int == 200 and source.headers.get("ETag"):
            headers["ETag"] = source.headers["ETag"].strip('"')
        expires = delete_at(req.headers)
        if expires is not None:
            _set_delete_at(headers, expires)
        extra = copied_from_headers(
            src_account, self.account, src_container, src_obj, source.headers
        )
        body = iter_body(source.app_iter, length, self.app.max_object_size)
        try:
            resp = self._store(policy, ring, headers, body, length, extra)
        finally:
            _close(source.app_iter)
        if status is not None and resp.status_int == 201:
            resp.status = status
        return resp

    def _fetch_source(self, account, container, obj):
        """GET the copy source through this proxy's own GET path (ACLs and all)."""
        environ = dict(self.req.environ)
        for key in [k for k in environ if k.startswith("HTTP_")]:
            if key not in ("HTTP_X_AUTH_TOKEN", "HTTP_X_STORAGE_TOKEN"):
                del environ[key]
        path = f"/v1/{account}/{container}/{obj}"
        environ.update(
            {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": path.encode("utf-8").decode("latin-1"),
                "QUERY_STRING": "",
                "CONTENT_LENGTH": "0",
                "wsgi.input": io.BytesIO(b""),
                "HTTP_X_NEWEST": "true",
            }
        )
        environ.pop("CONTENT_TYPE", None)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        sub = self.app.object_controller(Request(environ), account, container, obj)
        try:
            return sub.GET()
        except HTTPError as err:
            return err.response(sub.req)

    def COPY(self):
        """``COPY`` with ``Destination: container/object``: a PUT there with X-Copy-From."""
        req = self.req
        if not req.headers.get("Destination"):
            raise HTTPError(412, "Destination header required")
        dest_container, dest_obj = split_copy_path(req.headers["Destination"], "Destination")
        dest_account = copy_account(req.headers.get("Destination-Account"), self.account)
        environ = dict(req.environ)
        environ.pop("HTTP_DESTINATION", None)
        environ.pop("HTTP_DESTINATION_ACCOUNT", None)
        path = f"/v1/{dest_account}/{dest_container}/{dest_obj}"
        environ.update(
            {
                "REQUEST_METHOD": "PUT",
                "PATH_INFO": path.encode("utf-8").decode("latin-1"),
                "CONTENT_LENGTH": "0",
                "wsgi.input": io.BytesIO(b""),
                "HTTP_X_COPY_FROM": f"/{self.container}/{self.obj}",
                "HTTP_X_COPY_FROM_ACCOUNT": self.account,
            }
        )
        # Header values are WSGI (latin-1) strings: percent-encode the names.
        environ["HTTP_X_COPY_FROM"] = quote(environ["HTTP_X_COPY_FROM"])
        environ["HTTP_X_COPY_FROM_ACCOUNT"] = quote(self.account)
        dest_req = Request(environ)
        dest = self.app.object_controller(dest_req, dest_account, dest_container, dest_obj)
        return dest.PUT()

    # -- POST and DELETE -------------------------------------------------------------

    def POST(self):
        req = self.req
        check_metadata(dict(header_items(req.environ)), "object")
        expires = delete_at(req.headers)
        if self.app.object_post_as_copy:
            return self._post_as_copy()
        try:
            _info, policy, ring = self._container_and_ring("write_acl")
        except _Denied as denied:
            return denied.response
        headers = self._object_headers(policy, timestamp=self._timestamp())
        _set_delete_at(headers, expires)
        part, primaries = ring.get_nodes(self.account, self.container, self.obj)
        updates = self._container_updates(len(primaries), headers.get("X-Delete-At"))
        results = self.write_all(
            ring, part, "POST", self._path(part), [dict(headers, **u) for u in updates]
        )
        return self.write_response(results, policy.quorum_size(len(primaries)))

    def _post_as_copy(self):
        """The old POST: copy the object onto itself with the new metadata."""
        environ = dict(self.req.environ)
        environ.update(
            {
                "REQUEST_METHOD": "PUT",
                "CONTENT_LENGTH": "0",
                "wsgi.input": io.BytesIO(b""),
                "HTTP_X_COPY_FROM": quote(f"/{self.container}/{self.obj}"),
            }
        )
        twin = type(self)(self.app, Request(environ), self.account, self.container, self.obj)
        return twin._copy_put(fresh=True, status=202)

    def DELETE(self):
        try:
            _info, policy, ring = self._container_and_ring("write_acl")
        except _Denied as denied:
            return denied.response
        headers = self._object_headers(policy, timestamp=self._timestamp())
        part, primaries = ring.get_nodes(self.account, self.container, self.obj)
        updates = self._container_updates(len(primaries))
        results = self.write_all(
            ring, part, "DELETE", self._path(part), [dict(headers, **u) for u in updates]
        )
        return self.write_response(
            results, policy.quorum_size(len(primaries)), status_fn=delete_status
        )


class _Superseded(Exception):
    """The nodes hold a newer write than this PUT (409s): it is accepted and dropped."""


class _Denied(Exception):
    """The auth hook refused: carries its response."""

    def __init__(self, response):
        super().__init__("denied")
        self.response = response


def _set_delete_at(headers, expires):
    for key in [k for k in headers if k.lower() in ("x-delete-at", "x-delete-after")]:
        del headers[key]
    if expires is not None:
        headers["X-Delete-At"] = expires


def _close(app_iter):
    close = getattr(app_iter, "close", None)
    if close is not None:
        close()
