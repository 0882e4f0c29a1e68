"""What the container and account WSGI apps share: config, finding a broker, DB errors,
and the verbs that work alike on either database (POST, HEAD, REPLICATE).

A database error is not a bug in the request: a corrupt file answers 500 (and is logged
in one line, for the auditor to quarantine it), a database held by another writer for
too long answers 503, so the proxy tries another replica either way.
"""

from webob import Response

from common.config import config_float, config_true
from common.constraints import check_metadata
from common.db import (
    DatabaseCorrupt,
    DatabaseLocked,
    DatabaseSchemaError,
    db_file_path,
    metadata_updates,
)
from common.db_replicator import handle_replicate
from common.devices import check_partition, device_path
from common.hashing import hash_path, load_hash_secrets
from common.http import HTTPError, WSGIApp, request_timestamp
from common.listing import listing_format
from common.timestamp import Timestamp


class DatabaseApp(WSGIApp):
    """Base of the container and account apps.

    A subclass sets ``broker_class``, ``kind`` (``account``/``container``: the metadata
    it checks), ``row_name`` (what a longer path names: ``a container``...) and
    ``meta_prefixes``/``saved_headers`` (the metadata a POST keeps), and gives
    ``_open(req)`` (``(broker, *names, row)``, ``row`` None unless the path names a row),
    ``_live_info(broker)`` (the stat row, else a 404) and ``_headers(broker, info)``.
    """

    broker_class = None
    kind = None
    row_name = None
    meta_prefixes = ()
    saved_headers = frozenset()

    def __init__(self, conf, logger=None, hash_secrets=None):
        super().__init__(logger)
        conf = conf or {}
        self.devices = conf.get("devices", "/srv/node")
        self.mount_check = config_true(conf.get("mount_check", "false"))
        self.db_lock_timeout = config_float(
            conf.get("db_lock_timeout", "25"), "db_lock_timeout", minimum=0
        )
        self.auto_create_account_prefix = conf.get("auto_create_account_prefix", ".")
        self.hash_secrets = hash_secrets or load_hash_secrets()

    def handle(self, req):
        try:
            return super().handle(req)
        except DatabaseCorrupt as err:
            self.logger.error("corrupt database: %s", err)
            raise HTTPError(500, "database is corrupt") from None
        except DatabaseSchemaError as err:
            self.logger.error("database from a newer version: %s", err)
            raise HTTPError(500, "database schema is newer than this server") from None
        except DatabaseLocked as err:
            self.logger.warning("database busy: %s", err)
            raise HTTPError(503, "database is busy") from None

    def get_broker(self, device, partition, *names):
        """The broker for ``names`` (account[, container]) on a device (507 if absent)."""
        dev_path = device_path(self.devices, device, self.mount_check)
        part = check_partition(partition)
        name_hash = hash_path(*names, secrets=self.hash_secrets)
        path = db_file_path(dev_path, self.broker_class.datadir, part, name_hash)
        return self.broker_class(path, timeout=self.db_lock_timeout, logger=self.logger)

    def _open_database(self, req, verb):
        """``(broker, *names)`` for a request on the database itself; 400 for a row path."""
        broker, *names, row = self._open(req)
        if row is not None:
            raise HTTPError(400, f"{verb} {self.row_name} row is not supported")
        return (broker, *names)

    def POST(self, req):
        broker = self._open_database(req, "POST to")[0]
        timestamp = request_timestamp(req)
        check_metadata(req.headers, self.kind)
        with broker:
            info = self._live_info(broker)
            broker.update_metadata(
                metadata_updates(req.headers, self.meta_prefixes, self.saved_headers, timestamp)
            )
            return no_content(backend_headers(info))

    def HEAD(self, req):
        broker = self._open_database(req, "HEAD of")[0]
        _fmt, content_type = listing_format(req)
        with broker:
            info = self._live_info(broker)
            return no_content(self._headers(broker, info), content_type)

    def REPLICATE(self, req):
        """Database replication between servers (common.db_replicator)."""
        return handle_replicate(self, req)

    def is_auto_create(self, account):
        """Accounts under the auto-create prefix (``.expiring_objects``...) make themselves."""
        prefix = self.auto_create_account_prefix
        return bool(prefix) and account.startswith(prefix)


def backend_headers(info):
    """The timestamps of a stat row, for the proxy and replicators."""
    return {
        "X-Backend-Timestamp": Timestamp(info["created_at"]).internal,
        "X-Backend-Put-Timestamp": Timestamp(info["put_timestamp"]).internal,
        "X-Backend-Delete-Timestamp": Timestamp(info["delete_timestamp"]).internal,
        "X-Backend-Status-Changed-At": Timestamp(info["status_changed_at"]).internal,
    }


def info_headers(broker, info):
    """Headers common to a HEAD/GET: timestamps and the live metadata."""
    headers = backend_headers(info)
    headers["X-Timestamp"] = Timestamp(info["created_at"]).normal
    headers["X-Put-Timestamp"] = Timestamp(info["put_timestamp"]).normal
    headers.update(broker.get_metadata(info))
    return headers


def not_found(info=None, headers=None):
    """A 404 that still tells replicators what the database knows, if it exists."""
    extra = dict(headers or {})
    if info is not None:
        extra.update(backend_headers(info))
    return HTTPError(404, "not found", extra)


def no_content(headers=None, content_type=None):
    """A 204 with ``headers`` (and an empty body)."""
    resp = Response(status=204, headers=headers or {})
    if content_type:
        resp.headers["Content-Type"] = content_type
    return resp


def created_or_accepted(created, headers=None):
    """201 for something new, 202 for an update of something that was already there."""
    return Response(status=201 if created else 202, headers=headers or {})
