"""The account database: one row per container (as last reported) and the totals.

Container rows merge as in Swift: the newest put and delete timestamps are kept, the
counts are the latest report's, and a row whose delete timestamp is newer than its put
timestamp (with no objects left) is a deleted row: it drops out of listings and totals.
Totals, overall and per storage policy, are kept by triggers.
"""

from common.db import DatabaseBroker
from common.listing import walk_listing
from common.timestamp import Timestamp

LISTING_COLUMNS = ("name", "object_count", "bytes_used", "put_timestamp")
DELETED_STATUS = "DELETED"

_ROW_IDENTITY = (
    "{row}.put_timestamp || '-' || {row}.delete_timestamp || '-' || "
    "{row}.object_count || '-' || {row}.bytes_used"
)


def _totals_sql(row, sign):
    """SQL setting totals for a row inserted (sign +) or deleted (sign -)."""
    live = f"(1 - {row}.deleted)"
    return (
        f"container_count = container_count {sign} {live}, "
        f"object_count = object_count {sign} {live} * {row}.object_count, "
        f"bytes_used = bytes_used {sign} {live} * {row}.bytes_used"
    )


class AccountBroker(DatabaseBroker):
    """One account's database file."""

    db_type = "account"
    datadir = "accounts"
    stat_table = "account_stat"
    item_table = "container"
    application_id = 0x484E4341  # "HNCA"
    item_columns = (
        "name",
        "put_timestamp",
        "delete_timestamp",
        "object_count",
        "bytes_used",
        "deleted",
        "storage_policy_index",
    )
    tombstone_column = "delete_timestamp"
    count_column = "container_count"

    def _create_tables(self, conn):
        conn.execute(
            """CREATE TABLE account_stat (
                account TEXT NOT NULL,
                created_at TEXT NOT NULL,
                put_timestamp TEXT NOT NULL,
                delete_timestamp TEXT NOT NULL,
                status_changed_at TEXT NOT NULL,
                container_count INTEGER NOT NULL DEFAULT 0,
                object_count INTEGER NOT NULL DEFAULT 0,
                bytes_used INTEGER NOT NULL DEFAULT 0,
                metadata TEXT NOT NULL DEFAULT '{}',
                id TEXT NOT NULL,
                hash TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT ''
            )"""
        )
        conn.execute(
            """CREATE TABLE container (
                ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                put_timestamp TEXT NOT NULL,
                delete_timestamp TEXT NOT NULL,
                object_count INTEGER NOT NULL,
                bytes_used INTEGER NOT NULL,
                deleted INTEGER NOT NULL DEFAULT 0,
                storage_policy_index INTEGER NOT NULL DEFAULT 0
            )"""
        )
        conn.execute(
            """CREATE TABLE policy_stat (
                storage_policy_index INTEGER PRIMARY KEY,
                container_count INTEGER NOT NULL DEFAULT 0,
                object_count INTEGER NOT NULL DEFAULT 0,
                bytes_used INTEGER NOT NULL DEFAULT 0
            )"""
        )
        conn.execute("CREATE UNIQUE INDEX ix_container_name ON container (name)")
        conn.execute("CREATE INDEX ix_container_deleted_name ON container (deleted, name)")
        conn.execute(
            f"""CREATE TRIGGER container_insert AFTER INSERT ON container BEGIN
                UPDATE account_stat SET {_totals_sql("new", "+")},
                    hash = chexor(hash, new.name, {_ROW_IDENTITY.format(row="new")});
                INSERT OR IGNORE INTO policy_stat (storage_policy_index)
                    VALUES (new.storage_policy_index);
                UPDATE policy_stat SET {_totals_sql("new", "+")}
                    WHERE storage_policy_index = new.storage_policy_index;
            END"""
        )
        conn.execute(
            f"""CREATE TRIGGER container_delete AFTER DELETE ON container BEGIN
                UPDATE account_stat SET {_totals_sql("old", "-")},
                    hash = chexor(hash, old.name, {_ROW_IDENTITY.format(row="old")});
                UPDATE policy_stat SET {_totals_sql("old", "-")}
                    WHERE storage_policy_index = old.storage_policy_index;
            END"""
        )
        conn.execute(
            """CREATE TRIGGER container_update BEFORE UPDATE ON container BEGIN
                SELECT RAISE(FAIL, 'container rows are replaced, never updated');
            END"""
        )

    def _stat_defaults(self, put_timestamp, account=""):
        return {"account": account}

    def _merge_item(self, old, new):
        merged = dict(new)
        for key in ("put_timestamp", "delete_timestamp"):
            if Timestamp(old[key]) > Timestamp(merged[key]):
                merged[key] = old[key]
        merged["deleted"] = _deleted(merged)
        if merged == old:
            return None
        return merged

    def _is_deleted(self, info):
        return info.get("status") == DELETED_STATUS or super()._is_deleted(info)

    # -- container rows --------------------------------------------------------------------

    def put_container(
        self, name, put_timestamp, delete_timestamp, object_count, bytes_used, policy_index=0
    ):
        """Record a container report."""
        row = {
            "name": name,
            "put_timestamp": Timestamp(put_timestamp).internal,
            "delete_timestamp": Timestamp(delete_timestamp).internal,
            "object_count": int(object_count),
            "bytes_used": int(bytes_used),
            "storage_policy_index": int(policy_index),
        }
        row["deleted"] = _deleted(row)
        self.merge_items([row])

    def list_containers(self, params):
        """One page of the listing: ``(name, object_count, bytes_used, put_timestamp)`` tuples
        or ``Subdir`` entries."""

        def page(conn):
            def fetch(lower, inclusive, upper, reverse, count):
                return self.list_rows(
                    conn, LISTING_COLUMNS, lower, inclusive, upper, reverse, count
                )

            return walk_listing(fetch, params)

        return self.read(page)

    def get_policy_stats(self):
        """{policy index: {container_count, object_count, bytes_used}} of live containers."""

        def read(conn):
            cur = conn.execute(
                "SELECT storage_policy_index, container_count, object_count, bytes_used "
                "FROM policy_stat WHERE container_count > 0"
            )
            return {
                r[0]: {"container_count": r[1], "object_count": r[2], "bytes_used": r[3]}
                for r in cur
            }

        return self.read(read)

    # -- the account -----------------------------------------------------------------------

    def delete_db(self, timestamp):
        """Mark the account deleted (status DELETED) for the reaper to empty it."""
        return self._update_timestamp(
            "delete_timestamp", timestamp, extra={"status": DELETED_STATUS}
        )

    def is_status_deleted(self, info=None):
        """The account was DELETEd (whatever containers it still has)."""
        return (info or self.get_info())["status"] == DELETED_STATUS


def _deleted(row):
    gone = Timestamp(row["delete_timestamp"]) > Timestamp(row["put_timestamp"])
    return 1 if gone and row["object_count"] == 0 else 0
