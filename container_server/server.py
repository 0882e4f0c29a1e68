"""The container server: ``METHOD /<device>/<partition>/<account>/<container>[/<object>]``.

- Container PUT/POST/DELETE/HEAD/GET keep the container's database and list its objects.
- Object-row PUT/DELETE (``/a/c/o``) come from object servers and record what they stored.
- ``UPDATE /<device>/<partition>/<account>/<container>`` carries many such row changes at
  once (an object server's group commit) and merges them in one transaction. The body is
  msgpack (``application/x-msgpack``): a list of ``{"op": "PUT"|"DELETE", "name": object,
  "headers": {...}}``, where ``headers`` are what the row's single PUT/DELETE would carry
  (``X-Timestamp``, ``X-Size``, ``X-Content-Type``, ``X-Etag``,
  ``X-Backend-Storage-Policy-Index``; names in any case, values text). One parser reads
  both forms, so a row is valid in a batch exactly when it is valid alone; one bad row
  makes the whole request a 400 and nothing is written.
- A container PUT/DELETE carrying ``X-Account-Host/Device/Partition`` is reported to the
  account server at once. The report target is saved in the database first; when the
  account server cannot be reached the report stays pending (``reported_*`` behind the
  current values) and ``ContainerUpdater.run_once`` delivers it later.
"""

import msgpack
from webob import Response

from common.config import config_float
from common.constraints import MAX_HEADER_SIZE, check_metadata, check_name
from common.db import DatabaseAlreadyExists, DatabaseNotFound, metadata_updates
from common.db_app import (
    DatabaseApp,
    backend_headers,
    info_headers,
    no_content,
    not_found,
)
from common.http import HTTPError, iter_request_body, request_path, request_timestamp, split_path
from common.listing import (
    Subdir,
    listing_format,
    listing_response,
    object_entry,
    parse_listing_params,
)
from common.timestamp import InvalidTimestamp, Timestamp
from container_server import reporting
from container_server.broker import ContainerBroker

META_PREFIXES = ("x-container-meta-", "x-container-sysmeta-")
SAVED_HEADERS = frozenset(
    ["x-container-read", "x-container-write", "x-container-sync-to", "x-container-sync-key"]
)
# What an object server's update says about its row, single or batched.
ROW_HEADERS = (
    "X-Timestamp",
    "X-Size",
    "X-Content-Type",
    "X-Etag",
    "X-Backend-Storage-Policy-Index",
)
ROW_OPS = ("PUT", "DELETE")  # a tuple: "in" must not hash what a body holds
UPDATE_CONTENT_TYPE = "application/x-msgpack"
# Object servers send at most 500 rows a request (object_server.container_update); with
# names up to 1 KiB and header-sized values that is under 9 MiB, so both limits leave room.
MAX_UPDATE_ROWS = 1000
MAX_UPDATE_BODY = 16 * 1024 * 1024
MAX_SIZE = 2**63 - 1  # what an SQLite INTEGER holds


def policy_index(headers, required=False, header="X-Backend-Storage-Policy-Index"):
    """``X-Backend-Storage-Policy-Index`` of ``headers`` as an int, or None when absent
    (400 if bad)."""
    value = headers.get(header)
    if value is None or value.strip() == "":
        if required:
            raise HTTPError(400, f"missing {header}")
        return None
    value = value.strip()
    # The length bound keeps Python's int-parsing limit (and absurd values) out.
    if not (value.isascii() and value.isdigit() and len(value) <= 10):
        raise HTTPError(400, f"bad {header}: {value!r:.40}")
    return int(value)


class ContainerApp(DatabaseApp):
    """The container server's WSGI app."""

    allowed_methods = ("GET", "HEAD", "PUT", "POST", "DELETE", "REPLICATE", "UPDATE")

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
        if obj is not None:
            row = object_row("PUT", obj, request_row_headers(req))
            self._merge_rows(broker, account, container, [row])
            return Response(status=201)
        timestamp = request_timestamp(req)
        with broker:
            return self._put_container(req, broker, account, container, timestamp)

    def _put_container(self, req, broker, account, container, timestamp):
        requested = policy_index(req.headers)
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
                    else policy_index(req.headers, header="X-Backend-Storage-Policy-Default") or 0,
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

    def _merge_rows(self, broker, account, container, rows):
        """Merge object rows in one transaction; 404 without a database to merge into.

        A container under the auto-create prefix is created first, as the first row
        alone would create it: at its timestamp, with its policy for a PUT (the default
        policy for a DELETE).
        """
        with broker:
            if not broker.exists() and self.is_auto_create(account):
                first = rows[0]
                index = 0 if first["deleted"] else first["storage_policy_index"]
                try:
                    broker.initialize(
                        first["created_at"],
                        account=account,
                        container=container,
                        storage_policy_index=index,
                    )
                except DatabaseAlreadyExists:
                    pass
            try:
                broker.merge_items(rows)
            except DatabaseNotFound:
                raise not_found() from None

    def UPDATE(self, req):
        """Many object-row PUTs/DELETEs of one container, merged in one transaction."""
        broker, account, container, obj = self._open(req)
        if obj is not None:
            raise HTTPError(400, "UPDATE names a container, not an object")
        rows = [batch_row(number, item) for number, item in enumerate(read_update_body(req))]
        self._merge_rows(broker, account, container, rows)
        return no_content()

    def DELETE(self, req):
        broker, account, container, obj = self._open(req)
        if obj is not None:
            row = object_row("DELETE", obj, request_row_headers(req))
            self._merge_rows(broker, account, container, [row])
            return no_content()
        timestamp = request_timestamp(req)
        target = reporting.target_from_headers(req.headers)
        with broker:
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


# -- object rows from object servers ---------------------------------------------------------


def object_row(op, name, headers):
    """The item row an object server's ``PUT``/``DELETE`` update asks for; 400 if bad.

    ``headers`` maps the canonical ``ROW_HEADERS`` names to text: a single update's
    request headers (``request_row_headers``) or a batched row's (``batch_row``).
    """
    check_name("object", name)
    value = headers.get("X-Timestamp")
    if value is None:
        raise HTTPError(400, "missing X-Timestamp")
    try:
        timestamp = Timestamp(value)
    except InvalidTimestamp as err:
        raise HTTPError(400, f"bad X-Timestamp: {err}") from None
    index = policy_index(headers) or 0
    if op == "DELETE":
        return ContainerBroker.tombstone_row(name, timestamp, index)
    size = headers.get("X-Size", "").strip()
    if not (size.isascii() and size.isdigit() and len(size) <= 19) or int(size) > MAX_SIZE:
        raise HTTPError(400, "missing or bad X-Size")
    for header in ("X-Content-Type", "X-Etag"):
        if header not in headers:
            raise HTTPError(400, f"missing {header}")
    return ContainerBroker.object_row(
        name, timestamp, int(size), headers["X-Content-Type"], headers["X-Etag"], 0, index
    )


def request_row_headers(req):
    """The ``ROW_HEADERS`` of a single update, decoded from WSGI strings to the text the
    object server sent (UTF-8), as a batched row carries them; 400 if not UTF-8."""
    found = {}
    for name in ROW_HEADERS:
        value = req.headers.get(name)
        if value is not None:
            try:
                found[name] = value.encode("latin-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                raise HTTPError(400, f"{name} is not valid UTF-8") from None
    return found


def read_update_body(req):
    """The list of row changes in an UPDATE's msgpack body; 400 (411) if unusable."""
    content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != UPDATE_CONTENT_TYPE:
        raise HTTPError(400, f"UPDATE body must be {UPDATE_CONTENT_TYPE}")
    length = req.content_length
    if length is None:
        raise HTTPError(411, "UPDATE needs a Content-Length")
    if length > MAX_UPDATE_BODY:
        raise HTTPError(400, f"UPDATE body is larger than {MAX_UPDATE_BODY} bytes")
    body = b"".join(iter_request_body(req.environ["wsgi.input"], length))
    try:
        items = msgpack.unpackb(body, raw=False)
    except (ValueError, msgpack.UnpackException) as err:
        raise HTTPError(400, f"UPDATE body is not msgpack: {err}") from None
    if not isinstance(items, list):
        raise HTTPError(400, "UPDATE body must be a list of rows")
    if not items:
        raise HTTPError(400, "UPDATE body has no rows")
    if len(items) > MAX_UPDATE_ROWS:
        raise HTTPError(400, f"UPDATE body has more than {MAX_UPDATE_ROWS} rows")
    return items


def batch_row(number, item):
    """The item row of entry ``number`` of an UPDATE body; 400 naming the row if bad."""
    try:
        if not isinstance(item, dict):
            raise HTTPError(400, "not a map")
        op, name, headers = item.get("op"), item.get("name"), item.get("headers")
        if op not in ROW_OPS:
            raise HTTPError(400, f"op must be PUT or DELETE, not {op!r:.40}")
        if not isinstance(name, str):
            raise HTTPError(400, "name must be a string")
        if not isinstance(headers, dict):
            raise HTTPError(400, "headers must be a map")
        canonical = {}
        for key, value in headers.items():
            if not isinstance(key, str):
                raise HTTPError(400, "header names must be strings")
            if not isinstance(value, str) or len(value) > MAX_HEADER_SIZE:
                raise HTTPError(
                    400,
                    f"header {key!r:.60} must be a string of at most {MAX_HEADER_SIZE} characters",
                )
            canonical["-".join(part.capitalize() for part in key.split("-"))] = value
        return object_row(op, name, canonical)
    except HTTPError as err:
        raise HTTPError(400, f"UPDATE row {number}: {err.explanation}") from None
