"""The container server: ``METHOD /<device>/<partition>/<account>/<container>[/<object>]``.

- Container PUT/POST/DELETE/HEAD/GET keep the container's database and list its objects.
- Object-row PUT/DELETE (``/a/c/o``) come from object servers and record what they stored.
- A container PUT/DELETE carrying ``X-Account-Host/Device/Partition`` is reported to the
  account server at once. The report target is saved in the database first; when the
  account server cannot be reached the report stays pending (``reported_*`` behind the
  current values) and ``ContainerUpdater.run_once`` delivers it later.
"""

from webob import Response

from common.config import config_float
from common.constraints import check_metadata, check_name
from common.db import DatabaseAlreadyExists, DatabaseNotFound, metadata_updates
from common.db_app import (
    DatabaseApp,
    backend_headers,
    info_headers,
    no_content,
    not_found,
)
from common.http import HTTPError, request_path, request_timestamp, split_path
from common.listing import (
    Subdir,
    listing_format,
    listing_response,
    object_entry,
    parse_listing_params,
)
from container_server import reporting
from container_server.broker import ContainerBroker

META_PREFIXES = ("x-container-meta-", "x-container-sysmeta-")
SAVED_HEADERS = frozenset(
    ["x-container-read", "x-container-write", "x-container-sync-to", "x-container-sync-key"]
)


def policy_index(req, required=False, header="X-Backend-Storage-Policy-Index"):
    """``X-Backend-Storage-Policy-Index`` as an int, or None when absent (400 if bad)."""
    value = req.headers.get(header)
    if value is None or value.strip() == "":
        if required:
            raise HTTPError(400, f"missing {header}")
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        raise HTTPError(400, f"bad {header}: {value!r}")
    return int(value)


class ContainerApp(DatabaseApp):
    """The container server's WSGI app."""

    allowed_methods = ("GET", "HEAD", "PUT", "POST", "DELETE", "REPLICATE")

    log_name = "container-server"
    broker_class = ContainerBroker
    kind = "container"
    row_name = "an object"
    meta_prefixes = META_PREFIXES
    saved_headers = SAVED_HEADERS

    def __init__(self, conf, logger=None, hash_secrets=None):
        super().__init__(conf, logger, hash_secrets)
        conf = conf or {}
        self.node_timeout = config_float(conf.get("node_timeout", "3"), "node_timeout", 0)
        self.conn_timeout = config_float(conf.get("conn_timeout", "0.5"), "conn_timeout", 0)
        self.account_update_timeout = config_float(
            conf.get("account_update_timeout", str(self.node_timeout)),
            "account_update_timeout",
            0,
        )

    # -- request parsing -------------------------------------------------------------------

    @staticmethod
    def _names(req):
        device, partition, account, container, obj = split_path(request_path(req), 4, 5, True)
        check_name("account", account)
        check_name("container", container)
        if obj is not None:
            check_name("object", obj)
        return device, partition, account, container, obj

    def _open(self, req):
        device, partition, account, container, obj = self._names(req)
        broker = self.get_broker(device, partition, account, container)
        return broker, account, container, obj

    # -- verbs -----------------------------------------------------------------------------

    def PUT(self, req):
        broker, account, container, obj = self._open(req)
        timestamp = request_timestamp(req)
        with broker:
            if obj is not None:
                return self._put_object(req, broker, account, container, obj, timestamp)
            return self._put_container(req, broker, account, container, timestamp)

    def _put_container(self, req, broker, account, container, timestamp):
        requested = policy_index(req)
        check_metadata(req.headers, "container")
        target = reporting.target_from_headers(req.headers)
        created = False
        if not broker.exists():
            try:
                broker.initialize(
                    timestamp,
                    account=account,
                    container=container,
                    # No explicit policy: the cluster default the proxy names.
                    storage_policy_index=requested
                    if requested is not None
                    else policy_index(req, header="X-Backend-Storage-Policy-Default") or 0,
                )
                created = True
            except DatabaseAlreadyExists:
                pass
        if not created:
            info = broker.get_info()
            was_deleted = broker.is_deleted(info)
            if not was_deleted and requested is not None:
                if requested != info["storage_policy_index"]:
                    raise HTTPError(
                        409,
                        "container exists with another storage policy",
                        {"X-Backend-Storage-Policy-Index": str(info["storage_policy_index"])},
                    )
            broker.update_put_timestamp(timestamp)
            if broker.is_deleted():
                raise HTTPError(409, "container was deleted after this PUT", backend_headers(info))
            if was_deleted:
                created = True
                if requested is not None and requested != info["storage_policy_index"]:
                    broker.set_storage_policy_index(requested)
        broker.update_metadata(
            metadata_updates(req.headers, META_PREFIXES, SAVED_HEADERS, timestamp)
        )
        self._report(req, broker, account, container, target)
        return Response(status=201 if created else 202)

    def _put_object(self, req, broker, account, container, obj, timestamp):
        size = req.headers.get("X-Size", "").strip()
        if not (size.isascii() and size.isdigit()):
            raise HTTPError(400, "missing or bad X-Size")
        for header in ("X-Content-Type", "X-Etag"):
            if header not in req.headers:
                raise HTTPError(400, f"missing {header}")
        index = policy_index(req) or 0
        self._maybe_autocreate(broker, account, container, timestamp, index)
        try:
            broker.put_object(
                obj,
                timestamp,
                int(size),
                req.headers["X-Content-Type"],
                req.headers["X-Etag"],
                storage_policy_index=index,
            )
        except DatabaseNotFound:
            raise not_found() from None
        return Response(status=201)

    def _maybe_autocreate(self, broker, account, container, timestamp, index):
        if broker.exists() or not self.is_auto_create(account):
            return
        try:
            broker.initialize(
                timestamp, account=account, container=container, storage_policy_index=index
            )
        except DatabaseAlreadyExists:
            pass

    def DELETE(self, req):
        broker, account, container, obj = self._open(req)
        timestamp = request_timestamp(req)
        target = reporting.target_from_headers(req.headers) if obj is None else None
        with broker:
            if obj is not None:
                self._maybe_autocreate(broker, account, container, timestamp, 0)
                try:
                    broker.delete_object(obj, timestamp, policy_index(req) or 0)
                except DatabaseNotFound:
                    raise not_found() from None
                return no_content()
            if not broker.exists():
                raise not_found()
            info = broker.get_info()
            if info["object_count"]:
                raise HTTPError(409, "container is not empty")
            existed = not broker.is_deleted(info)
            broker.delete_db(timestamp)
            info = broker.get_info()
            if not broker.is_deleted(info):
                raise HTTPError(409, "container was put again after this DELETE")
            self._report(req, broker, account, container, target)
            if not existed:
                raise not_found(info)
            return no_content()

    def GET(self, req):
        broker, _account, container = self._open_database(req, "GET of")
        params = parse_listing_params(req)
        fmt, content_type = listing_format(req)
        with broker:
            info = self._live_info(broker)
            headers = self._headers(broker, info)
            rows = broker.list_objects(params)
        entries = [
            {"subdir": str(row)} if isinstance(row, Subdir) else object_entry(*row) for row in rows
        ]
        return listing_response(entries, fmt, content_type, "container", container, headers)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _live_info(broker):
        """The stat row of an existing, undeleted container, else a 404."""
        try:
            info = broker.get_info()
        except DatabaseNotFound:
            raise not_found() from None
        if broker.is_deleted(info):
            raise not_found(info)
        return info

    @staticmethod
    def _headers(broker, info):
        headers = info_headers(broker, info)
        headers["X-Container-Object-Count"] = str(info["object_count"])
        headers["X-Container-Bytes-Used"] = str(info["bytes_used"])
        headers["X-Backend-Storage-Policy-Index"] = str(info["storage_policy_index"])
        return headers

    def _report(self, req, broker, account, container, target):
        """Report the container to the account now; leave it pending if that fails.

        A 404 from the account server means the account does not exist: as in Swift,
        the container request then answers 404 too.
        """
        if target is None:
            return
        broker.set_account_target(target)
        info = broker.get_info()
        statuses = reporting.report(
            target["nodes"],
            target["partition"],
            account,
            container,
            info,
            self.conn_timeout,
            self.account_update_timeout,
            req.environ.get("haneul.trans_id"),
        )
        if all(s is not None and 200 <= s < 300 for s in statuses):
            broker.reported(
                info["put_timestamp"],
                info["delete_timestamp"],
                info["object_count"],
                info["bytes_used"],
            )
            return
        self.logger.warning(
            "account report for /%s/%s pending (statuses %s)", account, container, statuses
        )
        if 404 in statuses:
            raise HTTPError(404, "account not found")
