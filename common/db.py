"""The SQLite broker base that container and account databases share.

One database file per container or account:
``<dev>/<containers|accounts>/<part>/<suffix>/<hash>/<hash>.db``. A broker is a short-lived
handle on one such file (a request makes one, uses it and closes it); its connection comes
from and goes back to ``common.db_pool.POOL``, because opening and closing a WAL database
per request costs a checkpoint and an fsync each time.

- Creation is atomic: the whole initial database is built in ``<dev>/tmp``, fsynced, then
  hard-linked under its final name (``link`` refuses to replace, so a racing creator gets
  ``DatabaseAlreadyExists``), so a crash never leaves a half-initialised DB in place.
- WAL journal with ``synchronous=NORMAL``: a commit appends to the WAL without an fsync and
  the WAL is fsynced at checkpoints. A power cut may lose the last few commits on this one
  node but never corrupts the file; every row also lives on the other replicas and
  replication brings it back. ``FULL`` would fsync on every row update and cap a container
  at a few hundred updates a second on a plain disk.
- Object-row updates are written straight into the database, no ``.pending`` queue: with
  WAL, pooled connections and one short transaction per update, a container takes a row
  update in ~0.25 ms of CPU (several thousand a second), well past what one node needs.
- Writers take the write lock up front (``BEGIN IMMEDIATE``), so a busy database fails
  before any work is done. SQLite's own busy wait is kept short (it blocks the whole
  process); longer waits happen in Python with ``time.sleep``, which the eventlet runner
  makes cooperative, for up to ``timeout`` seconds, then ``DatabaseLocked``.
- Every item row (objects or containers) carries ``deleted``; a delete is a row with
  ``deleted = 1``. ``merge_items`` is idempotent and order-independent (newest wins), which
  is what replication will need. Rows are never UPDATEd but deleted and reinserted, so a
  changed row gets a new ROWID and ``get_items_since`` finds it.
- The stat row's ``hash`` is the XOR of the MD5 of every row's identity, kept by triggers:
  two replicas with the same rows have the same hash, whatever order the rows came in.
- Metadata is JSON ``{name: [value, timestamp]}``; newest timestamp wins per key and an
  empty value is a deletion (kept, so that it can win over an older value elsewhere).
"""

import errno
import hashlib
import json
import os
import sqlite3
import time
import uuid
from contextlib import closing
from urllib.request import pathname2url

from common.db_pool import POOL
from common.fileops import fsync_dir, makedirs
from common.timestamp import Timestamp

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10
DEFAULT_TIMEOUT = 25.0
MERGE_BATCH = 200  # names per "WHERE name IN (...)" lookup
ZERO_HASH = "0" * 32

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26


class DatabaseError(Exception):
    """Base class of the broker's errors; carries the database path."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DatabaseNotFound(DatabaseError):
    """The database file does not exist."""


class DatabaseAlreadyExists(DatabaseError):
    """``initialize`` found a database already in place."""


class DatabaseCorrupt(DatabaseError):
    """The file is not a readable Haneul database of the expected kind (quarantine it)."""


class DatabaseSchemaError(DatabaseError):
    """The database was written by a newer (or unknown) schema version than this code."""


class DatabaseLocked(DatabaseError):
    """Another writer held the database for longer than the broker's timeout."""


def chexor(old_hex, name, stamp):
    """XOR the MD5 of ``name-stamp`` into a hex hash (its own inverse: add == remove)."""
    digest = hashlib.md5(f"{name}-{stamp}".encode(), usedforsecurity=False).digest()
    return f"{int(old_hex or ZERO_HASH, 16) ^ int.from_bytes(digest, 'big'):032x}"


def db_dir(device_path, datadir, partition, name_hash):
    """Where the database for ``name_hash`` lives on a device."""
    return os.path.join(device_path, datadir, str(partition), name_hash[-3:], name_hash)


def db_file_path(device_path, datadir, partition, name_hash):
    """The database file for ``name_hash`` on a device."""
    return os.path.join(db_dir(device_path, datadir, partition, name_hash), name_hash + ".db")


def device_of(db_file):
    """The device directory of ``<dev>/<datadir>/<part>/<suffix>/<hash>/<hash>.db``."""
    path = os.path.abspath(db_file)
    for _level in range(5):
        path = os.path.dirname(path)
    return path


def _is_busy(err):
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(err) or "busy" in str(err)


def _is_corrupt(err):
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(err)
    return "malformed" in text or "not a database" in text


def merge_metadata(current, updates):
    """``current`` with ``updates`` ({name: (value, timestamp)}) merged in, newest per key."""
    merged = dict(current)
    for key, (value, stamp) in updates.items():
        stamp = Timestamp(stamp).internal
        old = merged.get(key)
        if old is None or Timestamp(old[1]) < Timestamp(stamp):
            merged[key] = [value, stamp]
    return merged


class DatabaseBroker:
    """One container or account database. Subclasses fill in the class attributes below."""

    db_type = ""  # "container" / "account"
    stat_table = ""
    item_table = ""
    application_id = 0  # PRAGMA application_id: which kind of Haneul DB this file is
    item_columns = ()  # every column of an item row but ROWID, "name" first
    tombstone_column = "created_at"  # when a deleted row was deleted (for reclaim)
    count_column = ""  # the stat column counting live rows

    def __init__(self, db_file, timeout=DEFAULT_TIMEOUT, tmp_dir=None, logger=None):
        self.db_file = db_file
        self.timeout = timeout
        self.logger = logger
        self.tmp_dir = tmp_dir or os.path.join(device_of(db_file), "tmp")
        self._conn = None
        self._file_id = None

    # -- subclass hooks ----------------------------------------------------------------

    def _create_tables(self, conn):
        """CREATE the stat and item tables, indexes and triggers."""
        raise NotImplementedError

    def _stat_defaults(self, put_timestamp, **fields):
        """Columns of the initial stat row besides the common ones."""
        return fields

    def _merge_item(self, old, new):
        """The row to keep for a name given the stored row (or None) and an incoming one.

        Both are dicts of ``item_columns``. Return None to keep ``old`` unchanged.
        """
        raise NotImplementedError

    def _is_deleted(self, info):
        """Whether the stat row ``info`` describes a deleted container/account."""
        return info[self.count_column] == 0 and Timestamp(info["delete_timestamp"]) > Timestamp(
            info["put_timestamp"]
        )

    # -- connections and transactions ----------------------------------------------------

    def exists(self):
        return os.path.exists(self.db_file)

    def close(self):
        """Done with the file: hand the connection back to the pool."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if conn.in_transaction:
                conn.close()
            else:
                POOL.give(self.db_file, conn, self._file_id)

    def _discard(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _open(self, path, create=False):
        """A connection with our settings and SQL functions; checks what the file is."""
        mode = "rwc" if create else "rw"
        uri = f"file:{pathname2url(path)}?mode={mode}"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as err:
            if not os.path.exists(path):
                raise DatabaseNotFound(path, "no such database") from None
            raise DatabaseCorrupt(path, f"cannot open: {err}") from None
        try:
            conn.create_function("chexor", 3, chexor, deterministic=True)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
            if not create:
                self._check_kind(conn, path)
        except sqlite3.DatabaseError as err:
            conn.close()
            if _is_corrupt(err):
                raise DatabaseCorrupt(path, str(err)) from None
            raise
        except DatabaseError:
            conn.close()
            raise
        return conn

    def _check_kind(self, conn, path):
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != self.application_id:
            raise DatabaseCorrupt(path, f"not a {self.db_type} database (application_id {app_id})")
        if version > SCHEMA_VERSION:
            raise DatabaseSchemaError(
                path, f"schema version {version} is newer than this code ({SCHEMA_VERSION})"
            )
        if version < 1:
            raise DatabaseCorrupt(path, f"unknown schema version {version}")

    @property
    def conn(self):
        if self._conn is None:
            try:
                st = os.stat(self.db_file)
            except FileNotFoundError:
                raise DatabaseNotFound(self.db_file, "no such database") from None
            file_id = (st.st_dev, st.st_ino)
            conn = POOL.take(self.db_file, file_id)
            self._conn = conn or self._open(self.db_file)
            self._file_id = file_id
        return self._conn

    def _run(self, func, write=False):
        """Run ``func(conn)`` in one transaction, retrying while another writer is busy."""
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                conn = self.conn
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as err:
                if not _is_busy(err):
                    self._raise_translated(err)
                if time.monotonic() >= deadline:
                    raise DatabaseLocked(self.db_file, "timed out waiting for the lock") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            except sqlite3.DatabaseError as err:
                self._raise_translated(err)
            try:
                result = func(conn)
                conn.execute("COMMIT")
                return result
            except sqlite3.DatabaseError as err:
                self._rollback(conn)
                self._raise_translated(err)
            except BaseException:
                self._rollback(conn)
                raise

    @staticmethod
    def _rollback(conn):
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _raise_translated(self, err):
        self._discard()
        if _is_corrupt(err) or "no such table" in str(err) or "no such column" in str(err):
            raise DatabaseCorrupt(self.db_file, str(err)) from None
        if _is_busy(err):
            raise DatabaseLocked(self.db_file, str(err)) from None
        raise err

    def checkpoint(self):
        """Copy the WAL into the database file and truncate it (before copying the file)."""
        self.close()
        POOL.discard(self.db_file)
        conn = self._open(self.db_file)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    # -- creation --------------------------------------------------------------------------

    def initialize(self, put_timestamp, **fields):
        """Create the database atomically; DatabaseAlreadyExists if one is in place."""
        if self.exists():
            raise DatabaseAlreadyExists(self.db_file, "database already exists")
        put_timestamp = Timestamp(put_timestamp).internal
        makedirs(self.tmp_dir)
        tmp_path = os.path.join(self.tmp_dir, f"{uuid.uuid4().hex}.db")
        try:
            conn = self._open(tmp_path, create=True)
            with closing(conn):
                conn.execute(f"PRAGMA application_id = {self.application_id}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("BEGIN")
                self._create_tables(conn)
                conn.execute(
                    "CREATE TABLE incoming_sync (remote_id TEXT PRIMARY KEY, "
                    "sync_point INTEGER NOT NULL, updated_at TEXT NOT NULL DEFAULT '0')"
                )
                conn.execute(
                    "CREATE TABLE outgoing_sync (remote_id TEXT PRIMARY KEY, "
                    "sync_point INTEGER NOT NULL, updated_at TEXT NOT NULL DEFAULT '0')"
                )
                row = {
                    "created_at": Timestamp.now().internal,
                    "put_timestamp": put_timestamp,
                    "delete_timestamp": Timestamp(0).internal,
                    "status_changed_at": put_timestamp,
                    "metadata": "{}",
                    "id": str(uuid.uuid4()),
                    "hash": ZERO_HASH,
                }
                row.update(self._stat_defaults(put_timestamp, **fields))
                cols = ", ".join(row)
                marks = ", ".join("?" * len(row))
                conn.execute(
                    f"INSERT INTO {self.stat_table} ({cols}) VALUES ({marks})", list(row.values())
                )
                conn.execute("COMMIT")
            # Closing the last connection checkpoints the WAL into the main file and
            # removes it; what is left is one self-contained file with WAL mode set.
            with open(tmp_path, "rb+") as fp:
                os.fsync(fp.fileno())
            hash_dir = os.path.dirname(self.db_file)
            makedirs(hash_dir)
            self._remove_orphan_wal()
            try:
                os.link(tmp_path, self.db_file)
            except OSError as err:
                if err.errno == errno.EEXIST:
                    raise DatabaseAlreadyExists(self.db_file, "database already exists") from None
                raise
            fsync_dir(hash_dir)
            fsync_dir(os.path.dirname(hash_dir))
        finally:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(tmp_path + suffix)
                except FileNotFoundError:
                    pass

    def _remove_orphan_wal(self):
        """A ``-wal``/``-shm`` without its database (left by a crash or a careless move)
        would be replayed into the new file; nothing can be using them, so remove them."""
        if os.path.exists(self.db_file):
            return
        for suffix in ("-wal", "-shm"):
            try:
                os.unlink(self.db_file + suffix)
            except FileNotFoundError:
                pass

    # -- the stat row ----------------------------------------------------------------------

    def get_info(self):
        """The stat row as a dict (``metadata`` is the raw JSON text)."""

        def read(conn):
            cur = conn.execute(f"SELECT * FROM {self.stat_table}")
            names = [d[0] for d in cur.description]
            row = cur.fetchone()
            if row is None:
                raise DatabaseCorrupt(self.db_file, "no stat row")
            return dict(zip(names, row, strict=True))

        return self._run(read)

    def is_deleted(self, info=None):
        """Deleted: ``delete_timestamp`` newer than ``put_timestamp`` and no rows left."""
        return self._is_deleted(info or self.get_info())

    def _set_stat(self, conn, **values):
        sets = ", ".join(f"{key} = ?" for key in values)
        conn.execute(f"UPDATE {self.stat_table} SET {sets}", list(values.values()))

    def _stat_row(self, conn):
        cur = conn.execute(f"SELECT * FROM {self.stat_table}")
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))

    def _update_timestamp(self, column, timestamp, extra=None):
        """Move ``column`` forward to ``timestamp`` (never back); track status changes."""
        stamp = Timestamp(timestamp).internal

        def update(conn):
            info = self._stat_row(conn)
            was_deleted = self._is_deleted(info)
            values = dict(extra or {})
            if Timestamp(info[column]) < Timestamp(stamp):
                values[column] = stamp
            if not values:
                return False
            self._set_stat(conn, **values)
            info.update(values)
            if self._is_deleted(info) != was_deleted:
                self._set_stat(conn, status_changed_at=stamp)
            return True

        return self._run(update, write=True)

    def update_put_timestamp(self, timestamp):
        """Record a (re-)PUT; the newest put timestamp wins."""
        return self._update_timestamp("put_timestamp", timestamp)

    def delete_db(self, timestamp):
        """Mark the database deleted as of ``timestamp`` (it really is once it has no rows)."""
        return self._update_timestamp("delete_timestamp", timestamp)

    # -- metadata --------------------------------------------------------------------------

    @property
    def metadata(self):
        """{name: [value, timestamp]}, deletions (empty values) included."""
        return json.loads(self.get_info()["metadata"] or "{}")

    def get_metadata(self, info=None):
        """{name: value} of the live metadata (empty values are deletions)."""
        raw = json.loads((info or self.get_info())["metadata"] or "{}")
        return {key: value for key, (value, _stamp) in raw.items() if value != ""}

    def update_metadata(self, updates):
        """Merge ``{name: (value, timestamp)}``; per key, the newest timestamp wins."""
        if not updates:
            return

        def update(conn):
            row = conn.execute(f"SELECT metadata FROM {self.stat_table}").fetchone()
            merged = merge_metadata(json.loads(row[0] or "{}"), updates)
            self._set_stat(conn, metadata=json.dumps(merged, sort_keys=True))

        self._run(update, write=True)

    # -- item rows -------------------------------------------------------------------------

    def merge_items(self, rows):
        """Merge item rows (dicts with ``item_columns``); newest wins per name."""
        rows = list(rows)
        if not rows:
            return
        cols = self.item_columns
        col_list = ", ".join(cols)
        insert = f"INSERT INTO {self.item_table} ({col_list}) VALUES ({', '.join('?' * len(cols))})"
        # Several rows for one name in a batch: merge them among themselves first.
        incoming = {}
        for row in rows:
            row = {col: row.get(col) for col in cols}
            prior = incoming.get(row["name"])
            if prior is not None:
                row = self._merge_item(prior, row) or prior
            incoming[row["name"]] = row

        def merge(conn):
            names = list(incoming)
            for start in range(0, len(names), MERGE_BATCH):
                chunk = names[start : start + MERGE_BATCH]
                marks = ", ".join("?" * len(chunk))
                cur = conn.execute(
                    f"SELECT ROWID, {col_list} FROM {self.item_table} WHERE name IN ({marks})",
                    chunk,
                )
                existing = {r[1]: (r[0], dict(zip(cols, r[1:], strict=True))) for r in cur}
                for name in chunk:
                    new = incoming[name]
                    found = existing.get(name)
                    if found is not None:
                        new = self._merge_item(found[1], new)
                        if new is None:
                            continue
                        conn.execute(f"DELETE FROM {self.item_table} WHERE ROWID = ?", (found[0],))
                    conn.execute(insert, [new[col] for col in cols])

        self._run(merge, write=True)

    def get_items_since(self, row_id, count):
        """Up to ``count`` rows with ROWID > ``row_id`` in ROWID order (for replication)."""
        cols = ("ROWID",) + tuple(self.item_columns)

        def read(conn):
            cur = conn.execute(
                f"SELECT {', '.join(cols)} FROM {self.item_table} "
                "WHERE ROWID > ? ORDER BY ROWID LIMIT ?",
                (row_id, count),
            )
            return [dict(zip(cols, r, strict=True)) for r in cur]

        return self._run(read)

    def get_max_row(self):
        """The highest ROWID ever handed out (-1 for none)."""

        def read(conn):
            row = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (self.item_table,)
            ).fetchone()
            return row[0] if row else -1

        return self._run(read)

    def list_rows(self, conn, columns, lower, lower_inclusive, upper, reverse, count):
        """A cursor over live rows with ``lower <(=) name < upper`` in name order.

        ``lower``/``upper`` may be None (unbounded). Uses the (deleted, name) index, so a
        page costs a range scan of exactly the rows it returns.
        """
        where = ["deleted = 0"]
        args = []
        if lower is not None:
            where.append("name >= ?" if lower_inclusive else "name > ?")
            args.append(lower)
        if upper is not None:
            where.append("name < ?")
            args.append(upper)
        order = "DESC" if reverse else "ASC"
        args.append(count)
        return conn.execute(
            f"SELECT {', '.join(columns)} FROM {self.item_table} "
            f"WHERE {' AND '.join(where)} ORDER BY name {order} LIMIT ?",
            args,
        )

    def read(self, func):
        """Run ``func(conn)`` in a read transaction (one consistent snapshot)."""
        return self._run(func)

    def reclaim(self, age, now=None):
        """Forget deletions older than ``age`` seconds: tombstone rows and empty metadata."""
        now = time.time() if now is None else now
        cutoff = Timestamp(max(now - age, 0)).internal

        def reclaim(conn):
            cur = conn.execute(
                f"DELETE FROM {self.item_table} WHERE deleted = 1 AND {self.tombstone_column} < ?",
                (cutoff,),
            )
            removed = cur.rowcount
            row = conn.execute(f"SELECT metadata FROM {self.stat_table}").fetchone()
            meta = json.loads(row[0] or "{}")
            kept = {
                key: val
                for key, val in meta.items()
                if val[0] != "" or Timestamp(val[1]) >= Timestamp(cutoff)
            }
            if len(kept) != len(meta):
                self._set_stat(conn, metadata=json.dumps(kept, sort_keys=True))
            return removed

        return self._run(reclaim, write=True)

    # -- sync points (for the replicator) --------------------------------------------------

    def get_syncs(self, incoming=True):
        """[{remote_id, sync_point}] for the replicas we pulled from / pushed to."""
        table = "incoming_sync" if incoming else "outgoing_sync"

        def read(conn):
            cur = conn.execute(f"SELECT remote_id, sync_point FROM {table}")
            return [{"remote_id": r[0], "sync_point": r[1]} for r in cur]

        return self._run(read)

    def get_sync(self, remote_id, incoming=True):
        """The sync point recorded for ``remote_id`` (-1 if none)."""
        for sync in self.get_syncs(incoming):
            if sync["remote_id"] == remote_id:
                return sync["sync_point"]
        return -1

    def merge_syncs(self, syncs, incoming=True):
        """Record sync points; a point only ever moves forward."""
        table = "incoming_sync" if incoming else "outgoing_sync"
        now = Timestamp.now().internal

        def write(conn):
            for sync in syncs:
                conn.execute(
                    f"INSERT INTO {table} (remote_id, sync_point, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(remote_id) DO UPDATE SET "
                    "sync_point = max(sync_point, excluded.sync_point), "
                    "updated_at = excluded.updated_at",
                    (sync["remote_id"], int(sync["sync_point"]), now),
                )

        self._run(write, write=True)

    def merge_timestamps(self, put_timestamp, delete_timestamp):
        """Take another replica's put/delete timestamps where they are newer."""
        info = self.get_info()
        changed = False
        if Timestamp(put_timestamp) > Timestamp(info["put_timestamp"]):
            changed |= self.update_put_timestamp(put_timestamp)
        if Timestamp(delete_timestamp) > Timestamp(info["delete_timestamp"]):
            changed |= self.delete_db(delete_timestamp)  # an account's also marks it DELETED
        return changed

    def snapshot(self, path):
        """Copy the database, WAL included, into a new file at ``path``, to send it whole.

        SQLite's backup reads one consistent snapshot and never writes this file, so
        writers go on meanwhile; the copy is a single self-contained file once closed.
        """
        dest = sqlite3.connect(path)
        try:
            self.conn.backup(dest)
        except sqlite3.DatabaseError as err:
            self._raise_translated(err)
        finally:
            dest.close()

    def reset_identity(self, source_id, source_max_row):
        """Make a whole-file copy of replica ``source_id`` a replica of its own.

        It gets a new id, forgets the source's outgoing sync points, and records that it
        holds the source's rows up to ``source_max_row``. Returns the new id.
        """
        new_id = str(uuid.uuid4())

        def write(conn):
            self._set_stat(conn, id=new_id)
            conn.execute("DELETE FROM outgoing_sync")

        self._run(write, write=True)
        self.merge_syncs([{"remote_id": source_id, "sync_point": source_max_row}])
        return new_id


def _header_case(name):
    return "-".join(part.capitalize() for part in name.split("-"))


def metadata_updates(headers, prefixes, names, timestamp):
    """{Header-Name: (value, timestamp)} for the headers a PUT/POST stores as metadata.

    Headers starting with one of ``prefixes`` (lower case, e.g. ``x-container-meta-``) or
    named in ``names`` are kept; ``X-Remove-<name>`` stores an empty value (a deletion).
    """
    stamp = Timestamp(timestamp).internal
    removals, sets = {}, {}
    for key, value in headers.items():
        lower = key.lower()
        target, value = (
            ("x-" + lower[len("x-remove-") :], "")
            if lower.startswith("x-remove-")
            else (lower, value)
        )
        if target.startswith(tuple(prefixes)) or target in names:
            (removals if lower != target else sets)[_header_case(target)] = (value, stamp)
    removals.update(sets)
    return removals
