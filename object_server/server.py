"""The object server: a WSGI app answering the backend object API of one storage node.

``METHOD /<device>/<partition>/<account>/<container>/<object>`` with ``X-Timestamp`` and
``X-Backend-Storage-Policy-Index``; ``REPLICATE /<device>/<partition>[/<suf>-<suf>...]``
answers the partition's suffix hashes as msgpack; ``SSYNC /<device>/<partition>`` takes
objects pushed by a replicator (object_server.ssync). Every object file goes through
object_server.diskfile. An erasure-coded policy's PUT stores a fragment archive and a
POST with ``X-Backend-Ec-Commit`` commits it (object_server.ec_commit); its GET/HEAD
serve durable fragments only, and its REPLICATE hashes compare across fragment indexes
(object_server.ec_hashes). Header values arrive as WSGI (latin-1) strings; user-visible
ones are decoded to UTF-8 ``str`` here, once, and encoded back on the way out.
"""

import time
import uuid

import msgpack
from webob import Response

from common import conditions, expiring
from common.byteranges import (
    content_range,
    multipart_length,
    parse_range_header,
    ranges_for_length,
    unsatisfiable_content_range,
)
from common.config import config_float, config_int, config_true
from common.constraints import MAX_FILE_SIZE, check_metadata, check_name
from common.devices import check_partition, device_path
from common.hashing import hash_path, load_hash_secrets
from common.http import (
    HTTPError,
    WSGIApp,
    backend_timestamp_headers,
    header_items,
    request_path,
    request_timestamp,
    split_path,
)
from common.policies import load_policies
from common.timestamp import TICKS_PER_SECOND
from object_server import ec_commit, layout
from object_server.container_update import (
    ContainerTarget,
    container_target,
    update_container,
)
from object_server.diskfile import (
    DEFAULT_KEEP_CACHE_SIZE,
    DEFAULT_RECLAIM_AGE,
    DiskFileCollision,
    DiskFileExpired,
    DiskFileManager,
    DiskFileNoSpace,
    DiskFileNotExist,
    is_no_space,
)
from object_server.ec_diskfile import FRAG_INDEX_HEADER, ECDiskFileManager, is_ec_policy
from object_server.hashes import LockTimeout
from object_server.ssync_receiver import handle_ssync

DEFAULT_ALLOWED_HEADERS = (
    "Content-Disposition, Content-Encoding, X-Delete-At, X-Object-Manifest, "
    "X-Static-Large-Object, Cache-Control, Content-Language, Expires, X-Robots-Tag"
)
DEFAULT_CONTENT_TYPE = "application/octet-stream"
USER_PREFIXES = ("x-object-meta-", "x-object-sysmeta-", "x-object-transient-sysmeta-")
# Metadata keys that are not sent back as headers as they are (or not at all).
INTERNAL_KEYS = frozenset({"name", "content-length", "etag", "x-timestamp", "content-type"})
MAX_DIGITS = 19  # any integer header: up to 2**63
MAX_TIMESTAMP_LENGTH = 64  # "%016.05f" plus "_" and 16 hex digits, with room to spare
MAX_PARTITION_DIGITS = 10  # partitions are below 2**32


def header_str(value, name="header"):
    """A WSGI header value (latin-1 mapped bytes) as the UTF-8 text it carries."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise HTTPError(400, f"{name} is not valid UTF-8") from None


def wsgi_str(text):
    """Text ready to be a WSGI header value."""
    return text.encode("utf-8").decode("latin-1")


def canonical_header(name):
    return "-".join(part.capitalize() for part in name.split("-"))


def last_modified_of(timestamp):
    """Whole seconds, rounded up, as HTTP dates are (Swift's Last-Modified rule)."""
    return -(-timestamp.ticks // TICKS_PER_SECOND)


def digits(value, name, max_digits=MAX_DIGITS):
    """A header holding a non-negative decimal integer, as an int (400 otherwise).

    The length bound keeps absurd values (and Python's int-parsing limit) out.
    """
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > max_digits:
        raise HTTPError(400, f"bad {name} {value[:40]!r}")
    return int(value)


class ObjectApp(WSGIApp):
    """The object server WSGI app (see the module doc and ``etc/storage.conf``)."""

    allowed_methods = ("GET", "HEAD", "PUT", "POST", "DELETE", "REPLICATE", "SSYNC")
    log_name = "haneul.object"

    def __init__(self, conf=None, logger=None, hash_secrets=None, policies=None):
        """``hash_secrets`` and ``policies`` default to what haneul.conf says; tests pass
        secrets and may leave ``policies`` out, and then any policy index is accepted."""
        super().__init__(logger)
        conf = conf or {}
        if hash_secrets is None:
            hash_secrets = load_hash_secrets()
            if policies is None:
                policies = load_policies()
        self.policies = policies
        self.devices = conf.get("devices", "/srv/node")
        self.mount_check = config_true(conf.get("mount_check", "false"))
        self.disk_chunk_size = config_int(conf.get("disk_chunk_size", 65536), "disk_chunk_size", 1)
        self.network_chunk_size = config_int(
            conf.get("network_chunk_size", 65536), "network_chunk_size", 1
        )
        self.conn_timeout = config_float(conf.get("conn_timeout", 0.5), "conn_timeout", 0)
        self.container_update_timeout = config_float(
            conf.get("container_update_timeout", 1), "container_update_timeout", 0
        )
        self.max_upload_time = config_float(
            conf.get("max_upload_time", 86400), "max_upload_time", 0
        )
        self.reclaim_age = config_int(
            conf.get("reclaim_age", DEFAULT_RECLAIM_AGE), "reclaim_age", 0
        )
        self.allowed_headers = (
            frozenset(
                h.strip().lower()
                for h in conf.get("allowed_headers", DEFAULT_ALLOWED_HEADERS).split(",")
                if h.strip()
            )
            | {"x-delete-at"}
        ) - INTERNAL_KEYS
        self.diskfiles = DiskFileManager(
            hash_secrets,
            disk_chunk_size=self.disk_chunk_size,
            reclaim_age=self.reclaim_age,
            logger=self.logger,
            keep_cache_size=config_int(
                conf.get("keep_cache_size", DEFAULT_KEEP_CACHE_SIZE), "keep_cache_size", 0
            ),
        )
        self.ec_diskfiles = ECDiskFileManager(
            hash_secrets,
            disk_chunk_size=self.disk_chunk_size,
            reclaim_age=self.reclaim_age,
            logger=self.logger,
        )

    # -- request parsing ---------------------------------------------------------------

    def _object_target(self, req):
        """(device, partition, account, container, obj, policy index) of a request."""
        device, partition, account, container, obj = split_path(request_path(req), 5, 5, True)
        part = self._partition(partition)
        check_name("account", account)
        check_name("container", container)
        check_name("object", obj)
        return device, part, account, container, obj, self._policy_index(req)

    @staticmethod
    def _partition(partition):
        if len(partition) > MAX_PARTITION_DIGITS:
            raise HTTPError(400, f"invalid partition: {partition[:40]!r}")
        return check_partition(partition)

    @staticmethod
    def _timestamp(req):
        value = req.headers.get("X-Timestamp")
        if value is not None and len(value) > MAX_TIMESTAMP_LENGTH:
            raise HTTPError(400, "bad X-Timestamp: too long")
        return request_timestamp(req)

    def _policy_index(self, req):
        value = req.headers.get("X-Backend-Storage-Policy-Index", "0")
        index = digits(value, "X-Backend-Storage-Policy-Index")
        if self.policies is not None and self.policies.get_by_index(index) is None:
            raise HTTPError(503, f"no storage policy with index {index}")
        return index

    def _ec_policy(self, policy_index):
        """The erasure-coded policy of this index, or None (replicated, or unknown)."""
        policy = self.policies.get_by_index(policy_index) if self.policies is not None else None
        return policy if is_ec_policy(policy) else None

    def _manager(self, policy_index):
        """The DiskFileManager for a policy: erasure-coded fragments or whole objects."""
        return self.ec_diskfiles if self._ec_policy(policy_index) else self.diskfiles

    def _diskfile(self, device, part, account, container, obj, policy_index):
        dev_path = device_path(self.devices, device, self.mount_check)
        manager = self._manager(policy_index)
        df = manager.get_diskfile(dev_path, part, account, container, obj, policy_index)
        return dev_path, df

    def _metadata_headers(self, req):
        """User metadata, sysmeta and allowed headers of a PUT/POST, decoded and checked."""
        found = {}
        for key, value in header_items(req.environ):
            lower = key.lower()
            if lower.startswith(USER_PREFIXES) or lower in self.allowed_headers:
                found[canonical_header(key)] = header_str(value, key)
        check_metadata(found, "object")
        delete_at = found.get("X-Delete-At")
        if delete_at:
            when = digits(delete_at, "X-Delete-At (an integer)")
            if when <= time.time():
                raise HTTPError(400, "X-Delete-At is in the past")
            found["X-Delete-At"] = str(when)
        return {k: v for k, v in found.items() if v}

    def _content_type(self, req, default=DEFAULT_CONTENT_TYPE):
        value = req.headers.get("Content-Type")
        if value is None or not value.strip():
            return default
        return header_str(value, "Content-Type")

    @staticmethod
    def _body_length(req):
        """The declared body length, None for chunked; 411/400/413/501 when unusable."""
        encoding = req.headers.get("Transfer-Encoding")
        if encoding is not None:
            codings = [c.strip().lower() for c in encoding.split(",")]
            if codings != ["chunked"]:
                raise HTTPError(501, f"Transfer-Encoding {encoding!r} not supported")
            return None
        value = req.environ.get("CONTENT_LENGTH")
        if value is None or not value.strip():
            raise HTTPError(411, "missing Content-Length or Transfer-Encoding: chunked")
        length = digits(value, "Content-Length")
        if length > MAX_FILE_SIZE:
            raise HTTPError(413, f"object larger than {MAX_FILE_SIZE} bytes")
        return length

    def _read_body(self, req, writer, length):
        """Stream the request body into ``writer``; 499/408/413 if the client fails us."""
        stream = req.environ["wsgi.input"]
        deadline = time.monotonic() + self.max_upload_time
        remaining = length
        while remaining is None or remaining > 0:
            size = self.network_chunk_size
            if remaining is not None:
                size = min(size, remaining)
            try:
                chunk = stream.read(size)
            except TimeoutError:
                raise HTTPError(408, "timed out reading the request body") from None
            except (OSError, ValueError) as err:
                raise HTTPError(499, f"client disconnected: {err}") from None
            if not chunk:
                if remaining is None:
                    return
                raise HTTPError(499, "client disconnected before sending the whole body")
            if time.monotonic() > deadline:
                raise HTTPError(408, "upload took longer than max_upload_time")
            writer.write(chunk)
            if remaining is not None:
                remaining -= len(chunk)
            elif writer.bytes_written > MAX_FILE_SIZE:
                raise HTTPError(413, f"object larger than {MAX_FILE_SIZE} bytes")

    @staticmethod
    def _current_state(df):
        """(exists, data timestamp or tombstone's, metadata) of what is on disk."""
        try:
            with df.open():
                return True, df.data_timestamp, df.get_metadata()
        except DiskFileExpired as err:
            return False, err.data_timestamp, err.metadata
        except DiskFileNotExist as err:
            return False, err.timestamp, err.metadata
        except DiskFileCollision as err:
            raise HTTPError(403, str(err)) from None

    def _send_container_update(self, req, target, op, names, headers, dev_path, df, ts):
        if target is None:
            return
        account, container, obj = names
        headers = dict(headers)
        headers["X-Timestamp"] = ts.internal
        headers["X-Backend-Storage-Policy-Index"] = str(df.policy_index)
        headers["X-Trans-Id"] = req.environ.get("haneul.trans_id", "")
        # On a single-port node a row DELETE looks like an object DELETE (common.router).
        headers["X-Backend-Server-Type"] = "container"
        try:
            update_container(
                target,
                op,
                account,
                container,
                obj,
                headers,
                dev_path,
                df.hash,
                ts,
                df.policy_index,
                conn_timeout=self.conn_timeout,
                timeout=self.container_update_timeout,
            )
        except OSError as err:
            if is_no_space(err):
                raise HTTPError(507, "no space left for the container update") from None
            raise

    def _update_expiring_queue(self, req, queue, old_delete_at, new_delete_at, names, df, ts):
        """Add the expirer's queue row of a new X-Delete-At and drop the old one's.

        Only rows in the queue container the request names (``X-Delete-At-*``, from the
        proxy) can be reached; see common.expiring for why a missed row is harmless.
        """
        if queue is None or old_delete_at == new_delete_at:
            return
        trans_id = req.environ.get("haneul.trans_id", "")
        for op, delete_at in (("PUT", new_delete_at), ("DELETE", old_delete_at)):
            if not delete_at or expiring.bucket_for(delete_at) != queue.container:
                continue
            entry = expiring.entry_name(delete_at, *names)
            headers = expiring.row_headers(op, ts, df.policy_index, trans_id)
            row_hash = hash_path(
                expiring.EXPIRING_ACCOUNT,
                queue.container,
                entry,
                secrets=self.diskfiles.hash_secrets,
            )
            try:
                update_container(
                    ContainerTarget(queue.hosts, queue.devices, queue.partition),
                    op,
                    expiring.EXPIRING_ACCOUNT,
                    queue.container,
                    entry,
                    headers,
                    df.dev_path,
                    row_hash,
                    ts,
                    0,
                    conn_timeout=self.conn_timeout,
                    timeout=self.container_update_timeout,
                )
            except OSError as err:
                self.logger.error("cannot queue %s of %s for the expirer: %s", op, entry, err)

    def _put_request(self, req):
        """What every PUT reads from its request (replicated or a fragment archive):
        (timestamp, length, user metadata, content type, If-None-Match, client ETag)."""
        ts = self._timestamp(req)
        length = self._body_length(req)
        user_metadata = self._metadata_headers(req)
        content_type = self._content_type(req)
        if_none_match = req.headers.get("If-None-Match")
        if if_none_match is not None and if_none_match.strip() != "*":
            raise HTTPError(400, "If-None-Match on PUT supports only '*'")
        client_etag = req.headers.get("ETag")
        client_etag = conditions.normalize_etag(client_etag).lower() if client_etag else None
        return ts, length, user_metadata, content_type, if_none_match, client_etag

    def _store_body(
        self, req, df, ts, length, content_type, user_metadata, client_etag, extra=None, **put
    ):
        """Stream the body into ``df`` and make it the object at ``ts``: (etag, size).

        ``extra`` metadata and ``put`` options (a fragment's index, durability) are the
        erasure-coded PUT's additions.
        """
        try:
            with df.create(size=length) as writer:
                self._read_body(req, writer, length)
                etag = writer.etag
                if client_etag is not None and client_etag != etag:
                    raise HTTPError(422, "ETag does not match the body")
                metadata = {
                    "name": df.name,
                    "X-Timestamp": ts.internal,
                    "Content-Type": content_type,
                    "Content-Length": str(writer.bytes_written),
                    "ETag": etag,
                }
                metadata.update(user_metadata)
                metadata.update(extra or {})
                writer.put(metadata, **put)
        except DiskFileNoSpace:
            raise HTTPError(507, "no space left on device") from None
        return etag, writer.bytes_written

    # -- verbs ------------------------------------------------------------------------

    def PUT(self, req):
        target = self._object_target(req)
        ec_policy = self._ec_policy(target[-1])
        if ec_policy is not None:
            return ec_commit.put_fragment(self, req, ec_policy, target)
        device, part, account, container, obj, policy_index = target
        ts, length, user_metadata, content_type, if_none_match, client_etag = self._put_request(req)
        target = container_target(req.headers)
        queue = expiring.queue_target(req.headers)
        dev_path, df = self._diskfile(device, part, account, container, obj, policy_index)

        exists, orig_ts, orig_metadata = self._current_state(df)
        if if_none_match is not None and exists:
            raise HTTPError(412, "object exists", backend_timestamp_headers(orig_ts))
        if orig_ts is not None and orig_ts >= ts:
            raise HTTPError(409, "a newer write exists", backend_timestamp_headers(orig_ts))
        etag, size = self._store_body(req, df, ts, length, content_type, user_metadata, client_etag)
        update_headers = {
            "X-Size": str(size),
            "X-Content-Type": content_type,
            # A middleware (slo for S3 multipart) may ask the listing to show another
            # ETag than the stored bytes' MD5.
            "X-Etag": req.headers.get("X-Object-Sysmeta-Container-Update-Override-Etag") or etag,
        }
        names = (account, container, obj)
        self._send_container_update(req, target, "PUT", names, update_headers, dev_path, df, ts)
        old_delete_at = orig_metadata.get("X-Delete-At")
        new_delete_at = user_metadata.get("X-Delete-At")
        self._update_expiring_queue(req, queue, old_delete_at, new_delete_at, names, df, ts)
        resp = Response(status="201 Created", headerlist=[("Content-Type", "text/plain")])
        resp.headers["ETag"] = f'"{etag}"'
        return resp

    def POST(self, req):
        target = self._object_target(req)
        ec_policy = self._ec_policy(target[-1])
        if ec_policy is not None and ec_commit.is_commit(req):
            return ec_commit.commit_fragment(self, req, ec_policy, target)
        device, part, account, container, obj, policy_index = target
        ts = self._timestamp(req)
        user_metadata = self._metadata_headers(req)
        content_type = self._content_type(req, default=None)
        queue = expiring.queue_target(req.headers)
        _, df = self._diskfile(device, part, account, container, obj, policy_index)
        try:
            with df.open():
                orig_ts = df.timestamp
                old_delete_at = df.get_metadata().get("X-Delete-At")
        except DiskFileNotExist as err:
            raise HTTPError(404, "", backend_timestamp_headers(err.timestamp)) from None
        except DiskFileCollision as err:
            raise HTTPError(403, str(err)) from None
        if orig_ts >= ts:
            raise HTTPError(409, "a newer write exists", backend_timestamp_headers(orig_ts))
        metadata = {"name": df.name, "X-Timestamp": ts.internal}
        if content_type is not None:
            metadata["Content-Type"] = content_type
        metadata.update(user_metadata)
        try:
            df.write_metadata(metadata)
        except DiskFileNoSpace:
            raise HTTPError(507, "no space left on device") from None
        new_delete_at = user_metadata.get("X-Delete-At")
        names = (account, container, obj)
        self._update_expiring_queue(req, queue, old_delete_at, new_delete_at, names, df, ts)
        return Response(status="202 Accepted", headerlist=[("Content-Type", "text/plain")])

    def DELETE(self, req):
        device, part, account, container, obj, policy_index = self._object_target(req)
        ts = self._timestamp(req)
        if_delete_at = req.headers.get("X-If-Delete-At")
        if if_delete_at is not None:
            if_delete_at = str(digits(if_delete_at, "X-If-Delete-At (an integer)"))
        target = container_target(req.headers)
        queue = expiring.queue_target(req.headers)
        dev_path, df = self._diskfile(device, part, account, container, obj, policy_index)

        exists, orig_ts, orig_metadata = self._current_state(df)
        if if_delete_at is not None:
            if not orig_metadata.get("ETag"):
                raise HTTPError(404, "", backend_timestamp_headers(orig_ts))
            if orig_metadata.get("X-Delete-At") != if_delete_at:
                raise HTTPError(412, "X-If-Delete-At does not match")
        if orig_ts is not None and orig_ts >= ts:
            raise HTTPError(409, "a newer write exists", backend_timestamp_headers(orig_ts))
        try:
            df.delete(ts)
        except DiskFileNoSpace:
            raise HTTPError(507, "no space left on device") from None
        names = (account, container, obj)
        self._send_container_update(req, target, "DELETE", names, {}, dev_path, df, ts)
        old_delete_at = orig_metadata.get("X-Delete-At")
        self._update_expiring_queue(req, queue, old_delete_at, None, names, df, ts)
        if exists:
            return Response(status="204 No Content", headerlist=[])
        raise HTTPError(404, "", backend_timestamp_headers(ts))

    def GET(self, req):
        return self._get_or_head(req)

    def HEAD(self, req):
        return self._get_or_head(req)

    def _get_or_head(self, req):
        device, part, account, container, obj, policy_index = self._object_target(req)
        _, df = self._diskfile(device, part, account, container, obj, policy_index)
        try:
            df.open()
        except DiskFileNotExist as err:
            status = 412 if req.headers.get("If-Match") is not None else 404
            raise HTTPError(status, "", backend_timestamp_headers(err.timestamp)) from None
        except DiskFileCollision as err:
            raise HTTPError(403, str(err)) from None
        with df:
            return self._object_response(req, df)

    def _object_response(self, req, df):
        metadata = df.get_metadata()
        etag = metadata["ETag"]
        length = df.content_length
        last_modified = last_modified_of(df.timestamp)
        content_type = wsgi_str(metadata.get("Content-Type", DEFAULT_CONTENT_TYPE))
        headers = [
            ("Content-Type", content_type),
            ("ETag", f'"{etag}"'),
            ("Last-Modified", conditions.http_date(last_modified)),
            ("X-Timestamp", df.timestamp.internal),
            ("X-Backend-Timestamp", df.timestamp.internal),
            ("X-Backend-Data-Timestamp", df.data_timestamp.internal),
            ("Accept-Ranges", "bytes"),
        ]
        if df.frag_index is not None:
            headers.append((FRAG_INDEX_HEADER, str(df.frag_index)))
        headers.extend(
            (key, wsgi_str(value))
            for key, value in sorted(metadata.items())
            if key.lower() not in INTERNAL_KEYS
        )

        outcome = conditions.evaluate(req.headers, etag, last_modified)
        if outcome == 412:
            raise HTTPError(412, "precondition failed", {"ETag": f'"{etag}"'})
        if outcome == 304:
            return Response(status="304 Not Modified", headerlist=headers, app_iter=[])

        ranges = None
        spec = parse_range_header(req.headers.get("Range"))
        if spec is not None and conditions.range_applies(req.headers, etag, last_modified):
            ranges = ranges_for_length(spec, length)
            if not ranges:
                raise HTTPError(
                    416,
                    "requested range not satisfiable",
                    {"Content-Range": unsatisfiable_content_range(length)},
                )
        status = "200 OK"
        boundary = None
        body_length = length
        if ranges:
            status = "206 Partial Content"
            if len(ranges) == 1:
                start, stop = ranges[0]
                body_length = stop - start
                headers.append(("Content-Range", content_range(start, stop, length)))
            else:
                boundary = uuid.uuid4().hex
                body_length = multipart_length(ranges, boundary, content_type, length)
                headers[0] = ("Content-Type", f"multipart/byteranges;boundary={boundary}")
        headers.append(("Content-Length", str(body_length)))
        if req.method == "HEAD":
            return Response(status=status, headerlist=headers, app_iter=[])
        app_iter = df.reader().app_iter(ranges, content_type, boundary)
        return Response(status=status, headerlist=headers, app_iter=app_iter)

    def REPLICATE(self, req):
        device, partition, suffix_part = split_path(request_path(req), 2, 3, True)
        part = self._partition(partition)
        policy_index = self._policy_index(req)
        suffixes = suffix_part.split("-") if suffix_part else []
        if not all(layout.is_suffix(s) for s in suffixes):
            raise HTTPError(400, f"bad suffix list {suffix_part!r}")
        dev_path = device_path(self.devices, device, self.mount_check)
        try:
            hashes = self._manager(policy_index).get_hashes(dev_path, part, policy_index, suffixes)
        except LockTimeout as err:
            raise HTTPError(503, str(err)) from None
        body = msgpack.packb(hashes, use_bin_type=True)
        return Response(
            status="200 OK",
            headerlist=[
                ("Content-Type", "application/x-msgpack"),
                ("Content-Length", str(len(body))),
            ],
            app_iter=[body],
        )

    def SSYNC(self, req):
        return handle_ssync(self, req)


def app_factory(conf, logger=None):
    """Build the object app from a ``storage.conf`` section (a dict of strings)."""
    return ObjectApp(conf, logger=logger)
