"""The account server: ``METHOD /<device>/<partition>/<account>[/<container>]``.

- Account PUT/POST/DELETE/HEAD/GET keep the account's database and list its containers.
- ``PUT /dev/part/a/c`` is a container server's report (``X-Put-Timestamp``,
  ``X-Delete-Timestamp``, ``X-Object-Count``, ``X-Bytes-Used``,
  ``X-Backend-Storage-Policy-Index``). A report for an account that does not exist is a
  404 (the proxy creates accounts before their containers), unless the account name
  starts with ``auto_create_account_prefix`` (default ``.``, as in Swift, for internal
  accounts such as ``.expiring_objects``) or the report carries
  ``X-Backend-Auto-Create: true``; then the report creates the account. A report of a
  deleted container is recorded even in a deleted account (the reaper's way to empty it).
- DELETE marks the account deleted (status DELETED) whatever it still holds: emptying it
  is the reaper's job. A deleted account answers 404 to reads and reports, and 403 to a
  PUT that would bring it back before the reaper is done.
"""

from webob import Response

from account_server.broker import AccountBroker
from common.config import config_true
from common.constraints import ACCOUNT_LISTING_LIMIT, check_metadata, check_name
from common.db import DatabaseAlreadyExists, metadata_updates
from common.db_app import DatabaseApp, backend_headers, info_headers, no_content, not_found
from common.http import HTTPError, request_path, request_timestamp, split_path
from common.listing import (
    Subdir,
    container_entry,
    listing_format,
    listing_response,
    parse_listing_params,
)
from common.timestamp import InvalidTimestamp, Timestamp

META_PREFIXES = ("x-account-meta-", "x-account-sysmeta-")
SAVED_HEADERS = frozenset(["x-account-access-control"])
REPORT_HEADERS = ("X-Put-Timestamp", "X-Delete-Timestamp", "X-Object-Count", "X-Bytes-Used")


class AccountApp(DatabaseApp):
    """The account server's WSGI app."""

    allowed_methods = ("GET", "HEAD", "PUT", "POST", "DELETE", "REPLICATE")

    log_name = "account-server"
    broker_class = AccountBroker
    kind = "account"
    row_name = "a container"
    meta_prefixes = META_PREFIXES
    saved_headers = SAVED_HEADERS

    @staticmethod
    def _names(req):
        device, partition, account, container = split_path(request_path(req), 3, 4, True)
        check_name("account", account)
        if container is not None:
            check_name("container", container)
        return device, partition, account, container

    def _open(self, req):
        device, partition, account, container = self._names(req)
        return self.get_broker(device, partition, account), account, container

    # -- verbs -----------------------------------------------------------------------------

    def PUT(self, req):
        broker, account, container = self._open(req)
        with broker:
            if container is not None:
                return self._put_container(req, broker, account, container)
            return self._put_account(req, broker, account)

    def _put_account(self, req, broker, account):
        timestamp = request_timestamp(req)
        check_metadata(req.headers, "account")
        created = False
        if not broker.exists():
            try:
                broker.initialize(timestamp, account=account)
                created = True
            except DatabaseAlreadyExists:
                pass
        if not created:
            info = broker.get_info()
            if broker.is_status_deleted(info):
                raise HTTPError(403, "recently deleted", backend_headers(info))
            created = broker.is_deleted(info)
            broker.update_put_timestamp(timestamp)
            if broker.is_deleted():
                raise HTTPError(409, "account was deleted after this PUT")
        broker.update_metadata(
            metadata_updates(req.headers, META_PREFIXES, SAVED_HEADERS, timestamp)
        )
        return Response(status=201 if created else 202)

    def _put_container(self, req, broker, account, container):
        values = {}
        for header in REPORT_HEADERS:
            if header not in req.headers:
                raise HTTPError(400, f"missing {header}")
            values[header] = req.headers[header].strip()
        try:
            put_ts = Timestamp(values["X-Put-Timestamp"])
            delete_ts = Timestamp(values["X-Delete-Timestamp"])
        except InvalidTimestamp as err:
            raise HTTPError(400, f"bad report timestamp: {err}") from None
        for header in ("X-Object-Count", "X-Bytes-Used"):
            if not (values[header].isascii() and values[header].isdigit()):
                raise HTTPError(400, f"bad {header}: {values[header]!r}")
        policy = req.headers.get("X-Backend-Storage-Policy-Index", "0").strip() or "0"
        if not (policy.isascii() and policy.isdigit()):
            raise HTTPError(400, f"bad X-Backend-Storage-Policy-Index: {policy!r}")
        timestamp = request_timestamp(req, required=False) or Timestamp.now()
        auto_create = config_true(req.headers.get("X-Backend-Auto-Create", "false") or "false")
        if not broker.exists() and (auto_create or self.is_auto_create(account)):
            try:
                broker.initialize(timestamp, account=account)
            except DatabaseAlreadyExists:
                pass
        if not (delete_ts > put_ts and broker.exists()):
            # A deleted account still records its containers going away: that is how
            # the reaper empties it.
            self._live_info(broker)
        broker.put_container(
            container,
            put_ts,
            delete_ts,
            int(values["X-Object-Count"]),
            int(values["X-Bytes-Used"]),
            int(policy),
        )
        return Response(status=204 if delete_ts > put_ts else 201)

    def DELETE(self, req):
        broker, _account, container = self._open(req)
        if container is not None:
            raise HTTPError(400, "DELETE of a container row is not supported; report it")
        timestamp = request_timestamp(req)
        with broker:
            self._live_info(broker)
            broker.delete_db(timestamp)
            return no_content()

    def GET(self, req):
        broker, account = self._open_database(req, "GET of")
        params = parse_listing_params(req, ACCOUNT_LISTING_LIMIT)
        fmt, content_type = listing_format(req)
        with broker:
            info = self._live_info(broker)
            headers = self._headers(broker, info)
            rows = broker.list_containers(params)
        entries = [
            {"subdir": str(row)} if isinstance(row, Subdir) else container_entry(*row)
            for row in rows
        ]
        return listing_response(entries, fmt, content_type, "account", account, headers)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _live_info(broker):
        """The stat row of an existing, undeleted account, else a 404."""
        if not broker.exists():
            raise not_found()
        info = broker.get_info()
        if broker.is_deleted(info):
            headers = {"X-Account-Status": "Deleted"} if broker.is_status_deleted(info) else {}
            raise not_found(info, headers)
        return info

    @staticmethod
    def _headers(broker, info):
        headers = info_headers(broker, info)
        headers["X-Account-Container-Count"] = str(info["container_count"])
        headers["X-Account-Object-Count"] = str(info["object_count"])
        headers["X-Account-Bytes-Used"] = str(info["bytes_used"])
        return headers
