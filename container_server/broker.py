"""The container database: one object row per name, and a stat row with the totals.

The stat row also remembers what was last reported to the account server
(``reported_*``) and where to report (``account_target``, JSON), so that a report that
could not be delivered when the container changed is retried by the container updater.
"""

import json

from common.db import DatabaseBroker
from common.listing import walk_listing
from common.timestamp import Timestamp

LISTING_COLUMNS = ("name", "created_at", "size", "content_type", "etag")


class ContainerBroker(DatabaseBroker):
    """One container's database file."""

    db_type = "container"
    datadir = "containers"
    stat_table = "container_stat"
    item_table = "object"
    application_id = 0x484E4331  # "HNC1"
    item_columns = (
        "name",
        "created_at",
        "size",
        "content_type",
        "etag",
        "deleted",
        "storage_policy_index",
    )
    tombstone_column = "created_at"
    count_column = "object_count"

    def _create_tables(self, conn):
        conn.execute(
            """CREATE TABLE container_stat (
                account TEXT NOT NULL,
                container TEXT NOT NULL,
                created_at TEXT NOT NULL,
                put_timestamp TEXT NOT NULL,
                delete_timestamp TEXT NOT NULL,
                status_changed_at TEXT NOT NULL,
                object_count INTEGER NOT NULL DEFAULT 0,
                bytes_used INTEGER NOT NULL DEFAULT 0,
                storage_policy_index INTEGER NOT NULL DEFAULT 0,
                metadata TEXT NOT NULL DEFAULT '{}',
                id TEXT NOT NULL,
                hash TEXT NOT NULL,
                reported_put_timestamp TEXT NOT NULL DEFAULT '0',
                reported_delete_timestamp TEXT NOT NULL DEFAULT '0',
                reported_object_count INTEGER NOT NULL DEFAULT 0,
                reported_bytes_used INTEGER NOT NULL DEFAULT 0,
                account_target TEXT NOT NULL DEFAULT ''
            )"""
        )
        conn.execute(
            """CREATE TABLE object (
                ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                created_at TEXT NOT NULL,
                size INTEGER NOT NULL,
                content_type TEXT NOT NULL,
                etag TEXT NOT NULL,
                deleted INTEGER NOT NULL DEFAULT 0,
                storage_policy_index INTEGER NOT NULL DEFAULT 0
            )"""
        )
        conn.execute("CREATE UNIQUE INDEX ix_object_name ON object (name)")
        conn.execute("CREATE INDEX ix_object_deleted_name ON object (deleted, name)")
        conn.execute(
            """CREATE TRIGGER object_insert AFTER INSERT ON object BEGIN
                UPDATE container_stat SET
                    object_count = object_count + (1 - new.deleted),
                    bytes_used = bytes_used + (CASE WHEN new.deleted THEN 0 ELSE new.size END),
                    hash = chexor(hash, new.name, new.created_at);
            END"""
        )
        conn.execute(
            """CREATE TRIGGER object_delete AFTER DELETE ON object BEGIN
                UPDATE container_stat SET
                    object_count = object_count - (1 - old.deleted),
                    bytes_used = bytes_used - (CASE WHEN old.deleted THEN 0 ELSE old.size END),
                    hash = chexor(hash, old.name, old.created_at);
            END"""
        )
        conn.execute(
            """CREATE TRIGGER object_update BEFORE UPDATE ON object BEGIN
                SELECT RAISE(FAIL, 'object rows are replaced, never updated');
            END"""
        )

    def _stat_defaults(self, put_timestamp, account="", container="", storage_policy_index=0):
        return {
            "account": account,
            "container": container,
            "storage_policy_index": int(storage_policy_index),
        }

    def _merge_item(self, old, new):
        if Timestamp(new["created_at"]) > Timestamp(old["created_at"]):
            return new
        return None

    # -- object rows -----------------------------------------------------------------------

    @staticmethod
    def object_row(name, timestamp, size, content_type, etag, deleted=0, storage_policy_index=0):
        """The item row (a dict for ``merge_items``) of an object PUT, or with
        ``deleted`` of a DELETE, at ``timestamp``."""
        return {
            "name": name,
            "created_at": Timestamp(timestamp).internal,
            "size": int(size),
            "content_type": content_type,
            "etag": etag,
            "deleted": 1 if deleted else 0,
            "storage_policy_index": int(storage_policy_index),
        }

    @classmethod
    def tombstone_row(cls, name, timestamp, storage_policy_index=0):
        """The item row of an object DELETE at ``timestamp``."""
        return cls.object_row(
            name, timestamp, 0, "application/deleted", "noetag", 1, storage_policy_index
        )

    def put_object(
        self, name, timestamp, size, content_type, etag, deleted=0, storage_policy_index=0
    ):
        """Record an object PUT (or, with ``deleted``, a DELETE) at ``timestamp``."""
        self.merge_items(
            [
                self.object_row(
                    name, timestamp, size, content_type, etag, deleted, storage_policy_index
                )
            ]
        )

    def delete_object(self, name, timestamp, storage_policy_index=0):
        """Record an object DELETE at ``timestamp`` (a tombstone row)."""
        self.merge_items([self.tombstone_row(name, timestamp, storage_policy_index)])

    def empty(self):
        """No live object rows."""
        return self.get_info()["object_count"] == 0

    def list_objects(self, params):
        """One page of the listing (``common.listing.ListingParams``).

        Entries are tuples ``(name, created_at, size, content_type, etag)`` or ``Subdir``.
        """

        def page(conn):
            def fetch(lower, inclusive, upper, reverse, count):
                return self.list_rows(
                    conn, LISTING_COLUMNS, lower, inclusive, upper, reverse, count
                )

            return walk_listing(fetch, params)

        return self.read(page)

    # -- the stat row ----------------------------------------------------------------------

    def set_storage_policy_index(self, index):
        """Change the policy (only done when a deleted container is created again)."""
        self._run(lambda conn: self._set_stat(conn, storage_policy_index=int(index)), write=True)

    def set_account_target(self, target):
        """Remember where reports go: ``{"partition": p, "nodes": [{ip, port, device}]}``."""
        text = json.dumps(target, sort_keys=True)
        self._run(lambda conn: self._set_stat(conn, account_target=text), write=True)

    @staticmethod
    def account_target(info):
        """The recorded report target of a stat row, or None."""
        return json.loads(info["account_target"]) if info.get("account_target") else None

    def reported(self, put_timestamp, delete_timestamp, object_count, bytes_used):
        """Record that the account server has acknowledged these values."""
        self._run(
            lambda conn: self._set_stat(
                conn,
                reported_put_timestamp=Timestamp(put_timestamp).internal,
                reported_delete_timestamp=Timestamp(delete_timestamp).internal,
                reported_object_count=int(object_count),
                reported_bytes_used=int(bytes_used),
            ),
            write=True,
        )

    @staticmethod
    def needs_report(info):
        """Whether the account has not yet heard the container's current state."""
        return (
            Timestamp(info["put_timestamp"]) > Timestamp(info["reported_put_timestamp"])
            or Timestamp(info["delete_timestamp"]) > Timestamp(info["reported_delete_timestamp"])
            or info["object_count"] != info["reported_object_count"]
            or info["bytes_used"] != info["reported_bytes_used"]
        )
