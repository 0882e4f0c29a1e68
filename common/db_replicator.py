"""Replication of container and account databases over HTTP (Swift's db_replicator idea).

Each pass, for every database on this node's devices (those the ring places here), the
replicator compares it with the other primaries of its partition and pushes them what
they lack. One verb, answered by the container and account servers (``handle_replicate``)::

    REPLICATE /<dev>/<part>/<hash>        X-Backend-Server-Type: container | account
    {"op": "sync", "id", "max_row", "hash", "put_timestamp", "delete_timestamp",
     "metadata", ...}                                                  (JSON)
      -> 404: the remote has no such database
      -> 200 {the remote's same fields, "point"}: ``point`` is the last of our rows it
         holds (its incoming sync point for our id)

Both sides then merge each other's put/delete timestamps and metadata (newest wins).
If ``point >= max_row``, or the hashes match, nothing is sent. If the remote lacks the
database, or lags by more than ``per_diff * max_diffs`` rows, the whole file goes::

    REPLICATE ...   X-Replicate-Op: file, X-Replicate-Id, X-Replicate-Max-Row
    body: a consistent snapshot of the database (SQLite's backup, never the live file)
      -> 201 installed as a new replica (with an id of its own) / 202 merged into the
         one it had; either way JSON of the remote's stat fields

otherwise the rows after ``point`` go in batches of ``per_diff``::

    {"op": "merge_items", "items": [row, ...]}                        -> 204
    {"op": "merge_syncs", "syncs": [{"remote_id": our id, "sync_point": last row sent},
                                    ...our own incoming sync points]} -> 204

A database on a device that is not one of its partition's primaries (a handoff) goes
to every primary and is removed here once they all have it. A deleted database older
than ``reclaim_age`` is removed; a corrupt one is moved to ``<dev>/quarantined/``.
Files are removed or moved only as whole hash directories, so a database never
leaves its ``-wal`` behind.
"""

import errno
import json
import logging
import os
import shutil
import time
import uuid

from webob import Response

from common.backend import BackendConnection, BackendError, request
from common.concurrency import Pile
from common.config import config_float, config_int
from common.daemon import hash_secrets_of, load_ring, local_devices
from common.db import POOL, DatabaseCorrupt, DatabaseError, db_file_path, device_of
from common.devices import check_partition, device_path
from common.fileops import fsync_dir, makedirs
from common.hashing import hash_path, is_hex
from common.http import HTTPError, iter_request_body, request_path, split_path
from common.timestamp import Timestamp

MAX_RPC_BODY = 64 * 1024 * 1024
CHUNK = 65536
COUNTERS = (
    "dbs_checked",
    "no_change",
    "hash_match",
    "diff_syncs",
    "rows_pushed",
    "whole_copies",
    "handoff_pushes",
    "handoffs_removed",
    "reclaimed",
    "quarantined",
    "errors",
)


def stat_fields(broker, info):
    """What one replica tells another about its database."""
    return {
        "id": info["id"],
        "max_row": broker.get_max_row(),
        "hash": info["hash"],
        "created_at": info["created_at"],
        "put_timestamp": info["put_timestamp"],
        "delete_timestamp": info["delete_timestamp"],
        "metadata": json.loads(info["metadata"] or "{}"),
        "count": info[broker.count_column],
    }


def merge_info(broker, remote):
    """Take another replica's newer timestamps and metadata (ValueError if malformed)."""
    metadata = remote.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
        for v in metadata.values()
    ):
        raise ValueError("metadata must map names to [value, timestamp]")
    broker.merge_timestamps(
        Timestamp(remote["put_timestamp"]), Timestamp(remote["delete_timestamp"])
    )
    broker.update_metadata(metadata)


# -- removing and quarantining whole hash directories ----------------------------------


def remove_db(db_file):
    """Remove a database with everything beside it (``-wal``, ``-shm``), atomically."""
    POOL.discard(db_file)
    hash_dir = os.path.dirname(db_file)
    trash_dir = os.path.join(device_of(db_file), "tmp")
    makedirs(trash_dir)
    trash = os.path.join(trash_dir, f"{os.path.basename(hash_dir)}-{uuid.uuid4().hex}.removed")
    os.rename(hash_dir, trash)
    shutil.rmtree(trash, ignore_errors=True)
    suffix_dir = os.path.dirname(hash_dir)
    for path in (suffix_dir, os.path.dirname(suffix_dir)):
        try:
            os.rmdir(path)  # only if empty
        except OSError:
            break


def quarantine_db(db_file, datadir):
    """Move a corrupt database's hash directory to ``<dev>/quarantined/<datadir>/``."""
    POOL.discard(db_file)
    hash_dir = os.path.dirname(db_file)
    target_dir = os.path.join(device_of(db_file), "quarantined", datadir)
    makedirs(target_dir)
    target = os.path.join(target_dir, os.path.basename(hash_dir))
    if os.path.exists(target):
        target += f"-{uuid.uuid4().hex}"
    os.rename(hash_dir, target)
    return target


def iter_db_files(dev_path, datadir):
    """(partition, db file) of every ``<part>/<suffix>/<hash>/<hash>.db`` on a device."""
    for part_name in _listdir(os.path.join(dev_path, datadir)):
        if not part_name.isdigit():
            continue
        part_dir = os.path.join(dev_path, datadir, part_name)
        for suffix in _listdir(part_dir):
            for name_hash in _listdir(os.path.join(part_dir, suffix)):
                db_file = os.path.join(part_dir, suffix, name_hash, name_hash + ".db")
                if os.path.isfile(db_file):
                    yield int(part_name), db_file


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


# -- the server side: the REPLICATE verb -------------------------------------------------


def handle_replicate(app, req):
    """Answer ``REPLICATE /<dev>/<part>/<hash>`` for a container or account app."""
    device, partition, name_hash = split_path(request_path(req), 3, 3)
    if not is_hex(name_hash, 32):
        raise HTTPError(400, f"not a database hash: {name_hash[:40]!r}")
    part = check_partition(partition)
    dev_path = device_path(app.devices, device, app.mount_check)
    db_file = db_file_path(dev_path, app.broker_class.datadir, part, name_hash)
    broker = app.broker_class(db_file, timeout=app.db_lock_timeout, logger=app.logger)
    if req.headers.get("X-Replicate-Op") == "file":
        return _receive_file(app, req, broker, dev_path, name_hash)
    args = _json_body(req)
    op = args.get("op")
    with broker:
        if not broker.exists():
            raise HTTPError(404, "no such database")
        try:
            if op == "sync":
                merge_info(broker, args)
                answer = stat_fields(broker, broker.get_info())
                answer["point"] = broker.get_sync(str(args["id"]))
                return _json_response(200, answer)
            if op == "merge_items":
                items = args.get("items")
                if not isinstance(items, list) or not all(
                    isinstance(i, dict) and isinstance(i.get("name"), str) for i in items
                ):
                    raise ValueError("items must be a list of rows")
                broker.merge_items(items)
                return Response(status=204)
            if op == "merge_syncs":
                syncs = args.get("syncs")
                if not isinstance(syncs, list):
                    raise ValueError("syncs must be a list")
                broker.merge_syncs(
                    [
                        {"remote_id": str(s["remote_id"]), "sync_point": int(s["sync_point"])}
                        for s in syncs
                    ]
                )
                return Response(status=204)
        except (KeyError, TypeError, ValueError) as err:
            raise HTTPError(400, f"bad {op} request: {err}") from None
    raise HTTPError(400, f"unknown REPLICATE op {op!r}")


def _json_body(req):
    length = req.content_length
    if length is None:
        raise HTTPError(411, "REPLICATE needs a Content-Length")
    if length > MAX_RPC_BODY:
        raise HTTPError(413, "REPLICATE body too large")
    try:
        args = json.loads(req.body_file.read(length) or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise HTTPError(400, "REPLICATE body is not JSON") from None
    if not isinstance(args, dict):
        raise HTTPError(400, "REPLICATE body must be a JSON object")
    return args


def _json_response(status, value):
    body = json.dumps(value).encode("utf-8")
    return Response(status=status, body=body, content_type="application/json", charset=None)


def _receive_file(app, req, broker, dev_path, name_hash):
    """Take a whole database: install it as a new replica, or merge it into ours."""
    source_id = req.headers.get("X-Replicate-Id", "").strip()
    max_row = req.headers.get("X-Replicate-Max-Row", "").strip()
    if not source_id or not max_row.lstrip("-").isdigit():
        raise HTTPError(400, "a database file needs X-Replicate-Id and X-Replicate-Max-Row")
    length = req.content_length
    if length is None:
        raise HTTPError(411, "a database file needs a Content-Length")
    tmp_dir = os.path.join(dev_path, "tmp")
    makedirs(tmp_dir)
    tmp_path = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.db")
    try:
        _write_body(req, tmp_path, length)
        incoming = app.broker_class(tmp_path, timeout=app.db_lock_timeout, tmp_dir=tmp_dir)
        try:
            names = _names_of(incoming.get_info())
            if hash_path(*names, secrets=app.hash_secrets) != name_hash:
                raise HTTPError(400, "the database sent is not the one named")
            incoming.reset_identity(source_id, int(max_row))
        except DatabaseCorrupt as err:
            kind = app.broker_class.db_type
            raise HTTPError(400, f"not a {kind} database: {err.reason}") from None
        finally:
            incoming.close()
            POOL.discard(tmp_path)  # the last connection: the copy is one file again
        with broker:
            if not broker.exists() and _install(tmp_path, broker.db_file):
                return _json_response(201, stat_fields(broker, broker.get_info()))
            merge_whole(broker, tmp_path, tmp_dir)
            return _json_response(202, stat_fields(broker, broker.get_info()))
    finally:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(tmp_path + suffix)
            except FileNotFoundError:
                pass


def _write_body(req, path, length):
    with open(path, "wb") as fp:
        for chunk in iter_request_body(req.environ["wsgi.input"], length, CHUNK):
            fp.write(chunk)
        fp.flush()
        os.fsync(fp.fileno())


def _names_of(info):
    if "container" in info:
        return info["account"], info["container"]
    return (info["account"],)


def _install(tmp_path, db_file):
    """Link a received database under its name; False if one appeared meanwhile."""
    if os.path.exists(tmp_path + "-wal"):
        raise HTTPError(500, "received database still has a WAL open")
    hash_dir = os.path.dirname(db_file)
    makedirs(hash_dir)
    for suffix in ("-wal", "-shm"):  # left by a crash: must not be replayed into it
        try:
            os.unlink(db_file + suffix)
        except FileNotFoundError:
            pass
    try:
        os.link(tmp_path, db_file)
    except OSError as err:
        if err.errno == errno.EEXIST:
            return False
        raise
    fsync_dir(hash_dir)
    fsync_dir(os.path.dirname(hash_dir))
    return True


def merge_whole(broker, other_path, tmp_dir=None, batch=1000):
    """Merge every row, timestamp, metadata and sync point of another file into ``broker``."""
    other = type(broker)(other_path, timeout=broker.timeout, tmp_dir=tmp_dir)
    try:
        point = -1
        while True:
            rows = other.get_items_since(point, batch)
            if not rows:
                break
            broker.merge_items([_row(r) for r in rows])
            point = rows[-1]["ROWID"]
        info = other.get_info()
        merge_info(broker, stat_fields(other, info))
        broker.merge_syncs(other.get_syncs(incoming=True))
    finally:
        other.close()
        POOL.discard(other_path)


def _row(row):
    return {key: value for key, value in row.items() if key != "ROWID"}


# -- the daemon side ---------------------------------------------------------------------


class DatabaseReplicator:
    """One pass (``run_once``) of replication for every database of one kind on this node.

    Subclasses set ``name``, ``broker_class``, ``server_type`` and ``ring_name``.
    """

    name = ""
    broker_class = None
    server_type = ""
    ring_name = ""

    def __init__(self, conf, logger=None, ring=None):
        conf = conf or {}
        self.conf = conf
        self.logger = logger or logging.getLogger(f"haneul.{self.name}")
        self.devices = conf.get("devices", "/srv/node")
        self.per_diff = config_int(conf.get("per_diff", "1000"), "per_diff", 1)
        self.max_diffs = config_int(conf.get("max_diffs", "100"), "max_diffs", 1)
        self.conn_timeout = config_float(conf.get("conn_timeout", "0.5"), "conn_timeout", 0)
        self.node_timeout = config_float(conf.get("node_timeout", "10"), "node_timeout", 0)
        self.reclaim_age = config_float(conf.get("reclaim_age", "604800"), "reclaim_age", 0)
        self.concurrency = config_int(conf.get("concurrency", "4"), "concurrency", 1)
        self.db_lock_timeout = config_float(conf.get("db_lock_timeout", "25"), "db_lock_timeout", 0)
        self._ring = ring

    @property
    def ring(self):
        if self._ring is None:
            self._ring = load_ring(self.conf, self.ring_name, hash_secrets_of(self.conf))
        return self._ring

    def run_once(self, devices=None):
        """Replicate every local database once; returns the counters."""
        stats = dict.fromkeys(COUNTERS, 0)
        ring = self.ring
        pile = Pile(self.concurrency)
        for dev_name, dev in local_devices(ring, self.conf, devices).items():
            dev_path = os.path.join(self.devices, dev_name)
            for part, db_file in iter_db_files(dev_path, self.broker_class.datadir):
                pile.spawn(self.replicate_db, ring, dev, part, db_file, stats)
        for result in pile:
            if isinstance(result, Exception):
                self.logger.error("replication failed: %r", result)
                stats["errors"] += 1
        return stats

    def reclaimable(self, broker, info):
        """A deleted database whose deletion is older than ``reclaim_age``."""
        cutoff = time.time() - self.reclaim_age
        return broker.is_deleted(info) and Timestamp(info["delete_timestamp"]).timestamp < cutoff

    def replicate_db(self, ring, local_dev, part, db_file, stats):
        """Bring the other replicas of one database up to date (see the module doc)."""
        stats["dbs_checked"] += 1
        broker = self.broker_class(db_file, timeout=self.db_lock_timeout, logger=self.logger)
        try:
            with broker:
                broker.reclaim(self.reclaim_age)
                info = broker.get_info()
                if self.reclaimable(broker, info):
                    broker.close()
                    remove_db(db_file)
                    stats["reclaimed"] += 1
                    return
                before = (info["hash"], broker.get_max_row())
                nodes = ring.get_part_nodes(part)
                primary = any(node["id"] == local_dev["id"] for node in nodes)
                handoffs = (n for n in ring.get_more_nodes(part) if n["id"] != local_dev["id"])
                results = []
                for node in nodes:
                    if node["id"] == local_dev["id"]:
                        continue
                    done = self.replicate_to(broker, node, part, stats)
                    if not done and primary:
                        # A primary is down: give a handoff a copy meanwhile.
                        stand_in = next(handoffs, None)
                        if stand_in and self.replicate_to(broker, stand_in, part, stats):
                            stats["handoff_pushes"] += 1
                    results.append(done)
                if primary or not results or not all(results):
                    return
                if (broker.get_info()["hash"], broker.get_max_row()) != before:
                    return  # written meanwhile: push again next pass
                broker.close()
                remove_db(db_file)
                stats["handoffs_removed"] += 1
        except DatabaseCorrupt as err:
            broker.close()
            target = quarantine_db(db_file, self.broker_class.datadir)
            self.logger.error("quarantined %s to %s: %s", db_file, target, err.reason)
            stats["quarantined"] += 1
        except DatabaseError as err:
            self.logger.error("cannot replicate %s: %s", db_file, err)
            stats["errors"] += 1

    # -- one database to one node ------------------------------------------------------

    def replicate_to(self, broker, node, part, stats):
        """Make ``node``'s replica hold every row of ours; True if it does now."""
        name_hash = os.path.basename(broker.db_file)[:-3]
        path = f"/{part}/{name_hash}"
        info = broker.get_info()
        local = stat_fields(broker, info)
        try:
            result = self._rpc(node, path, {"op": "sync", **local})
            if result.status == 404:
                return self._send_file(broker, node, path, local, stats)
            if result.status != 200:
                return self._failed(node, path, f"sync answered {result.status}", stats)
            remote = json.loads(result.body)
            merge_info(broker, remote)
            point = int(remote["point"])
            if point >= local["max_row"]:
                stats["no_change"] += 1
                return True
            if remote["hash"] == local["hash"]:
                stats["hash_match"] += 1
                syncs = [{"remote_id": local["id"], "sync_point": local["max_row"]}]
                return self._ok(self._rpc(node, path, {"op": "merge_syncs", "syncs": syncs}))
            if local["max_row"] - point > self.per_diff * self.max_diffs:
                return self._send_file(broker, node, path, local, stats)
            return self._push_rows(broker, node, path, local, remote, point, stats)
        except BackendError as err:
            return self._failed(node, path, str(err), stats)
        except (KeyError, TypeError, ValueError) as err:
            return self._failed(node, path, f"bad answer: {err}", stats)

    def _push_rows(self, broker, node, path, local, remote, point, stats):
        known = broker.get_syncs(incoming=True)  # before the rows: all of them get sent
        sent = point
        while True:
            rows = broker.get_items_since(sent, self.per_diff)
            if not rows:
                break
            items = [_row(r) for r in rows]
            result = self._rpc(node, path, {"op": "merge_items", "items": items})
            if not self._ok(result):
                return self._failed(node, path, f"merge_items answered {result.status}", stats)
            sent = rows[-1]["ROWID"]
            stats["rows_pushed"] += len(rows)
            if len(rows) < self.per_diff:
                break
        syncs = [{"remote_id": local["id"], "sync_point": sent}, *known]
        result = self._rpc(node, path, {"op": "merge_syncs", "syncs": syncs})
        if not self._ok(result):
            return self._failed(node, path, f"merge_syncs answered {result.status}", stats)
        broker.merge_syncs([{"remote_id": remote["id"], "sync_point": sent}], incoming=False)
        stats["diff_syncs"] += 1
        return True

    def _send_file(self, broker, node, path, local, stats):
        tmp_dir = os.path.join(device_of(broker.db_file), "tmp")
        makedirs(tmp_dir)
        snapshot = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.db")
        try:
            broker.snapshot(snapshot)
            headers = {
                "X-Backend-Server-Type": self.server_type,
                "X-Replicate-Op": "file",
                "X-Replicate-Id": local["id"],
                "X-Replicate-Max-Row": str(local["max_row"]),
                "Content-Type": "application/octet-stream",
                "Content-Length": str(os.path.getsize(snapshot)),
            }
            conn = BackendConnection.open(
                node, "REPLICATE", path, headers, self.conn_timeout, self.node_timeout
            )
            try:
                with open(snapshot, "rb") as fp:
                    while chunk := fp.read(CHUNK):
                        conn.send(chunk)
                resp = conn.getresponse()
                body = conn.read(MAX_RPC_BODY)
            finally:
                conn.close()
            if resp.status not in (201, 202):
                return self._failed(node, path, f"file answered {resp.status}", stats)
            remote = json.loads(body)
            sync = {"remote_id": remote["id"], "sync_point": local["max_row"]}
            broker.merge_syncs([sync], incoming=False)
            stats["whole_copies"] += 1
            return True
        finally:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(snapshot + suffix)
                except FileNotFoundError:
                    pass

    def _rpc(self, node, path, args):
        headers = {"X-Backend-Server-Type": self.server_type, "Content-Type": "application/json"}
        body = json.dumps(args).encode("utf-8")
        return request(
            node,
            "REPLICATE",
            path,
            headers,
            body,
            self.conn_timeout,
            self.node_timeout,
            max_body=MAX_RPC_BODY,
        )

    @staticmethod
    def _ok(result):
        return 200 <= result.status < 300

    def _failed(self, node, path, why, stats):
        self.logger.warning(
            "%s: REPLICATE %s:%s/%s%s failed: %s",
            self.name,
            node["ip"],
            node["port"],
            node["device"],
            path,
            why,
        )
        stats["errors"] += 1
        return False
