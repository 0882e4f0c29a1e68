"""The broker base: creation, schema checks, metadata, merging, replication helpers."""

import itertools
import os
import sqlite3

import pytest

from account_server.broker import AccountBroker
from common import db as dbmod
from common.db import (
    POOL,
    DatabaseAlreadyExists,
    DatabaseCorrupt,
    DatabaseLocked,
    DatabaseNotFound,
    DatabaseSchemaError,
    chexor,
    db_file_path,
    metadata_updates,
)
from common.listing import ListingParams
from common.timestamp import Timestamp
from container_server.broker import ContainerBroker

HASH = "0123456789abcdef0123456789abc123"


@pytest.fixture
def device(tmp_path):
    dev = tmp_path / "sda"
    dev.mkdir()
    return str(dev)


@pytest.fixture
def broker(device):
    path = db_file_path(device, "containers", 7, HASH)
    b = ContainerBroker(path)
    b.initialize("0000000001.00000", account="a", container="c")
    yield b
    b.close()


def obj_row(name, ts, size=1, deleted=0):
    return {
        "name": name,
        "created_at": Timestamp(ts).internal,
        "size": size,
        "content_type": "text/plain",
        "etag": "e" * 32,
        "deleted": deleted,
        "storage_policy_index": 0,
    }


# -- creation -----------------------------------------------------------------------------


def test_database_lives_at_the_swift_style_path(device, broker):
    expected = os.path.join(device, "containers", "7", HASH[-3:], HASH, HASH + ".db")
    assert broker.db_file == expected
    assert os.path.isfile(expected)
    assert broker.tmp_dir == os.path.join(device, "tmp")
    assert os.listdir(broker.tmp_dir) == []  # the build file was cleaned up


def test_initialize_sets_wal_schema_version_and_ids(broker):
    with sqlite3.connect(broker.db_file) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == dbmod.SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"incoming_sync", "outgoing_sync", "object", "container_stat"} <= tables
    info = broker.get_info()
    assert info["put_timestamp"] == "0000000001.00000"
    assert info["delete_timestamp"] == "0000000000.00000"
    assert info["account"] == "a" and info["container"] == "c"
    assert len(info["id"]) == 36
    other = ContainerBroker(broker.db_file.replace(HASH, HASH[:-3] + "fff"))
    other.initialize(1)
    assert other.get_info()["id"] != info["id"]


def test_initialize_twice_is_already_exists(broker):
    with pytest.raises(DatabaseAlreadyExists):
        broker.initialize(2)
    assert broker.get_info()["put_timestamp"] == "0000000001.00000"


def test_crash_while_building_leaves_nothing_under_the_final_name(device, monkeypatch):
    path = db_file_path(device, "containers", 1, HASH)
    b = ContainerBroker(path)

    def boom(self, conn, **_kw):
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("power cut")

    monkeypatch.setattr(ContainerBroker, "_create_tables", boom)
    with pytest.raises(RuntimeError):
        b.initialize(1)
    assert not os.path.exists(path)
    assert os.listdir(os.path.join(device, "tmp")) == []
    monkeypatch.undo()
    b.initialize(1)  # a later attempt works
    assert b.get_info()["object_count"] == 0


def test_racing_creator_loses_cleanly(device, monkeypatch):
    path = db_file_path(device, "containers", 1, HASH)
    first, second = ContainerBroker(path), ContainerBroker(path)
    monkeypatch.setattr(second, "exists", lambda: False)  # it looked before the first won
    first.initialize(1, account="a", container="first")
    with pytest.raises(DatabaseAlreadyExists):
        second.initialize(2, account="a", container="second")
    assert ContainerBroker(path).get_info()["container"] == "first"


def test_orphan_wal_is_not_replayed_into_a_new_database(device):
    path = db_file_path(device, "containers", 1, HASH)
    old = ContainerBroker(path)
    old.initialize(1, account="a", container="old")
    old.put_object("ghost", 2, 1, "t", "e")
    old.close()
    POOL.discard(path)
    holder = sqlite3.connect(path)  # keeps the WAL in place when the pool lets go
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    ContainerBroker(path).put_object("ghost2", 3, 1, "t", "e")
    POOL.discard(path)
    assert os.path.getsize(path + "-wal") > 0
    os.unlink(path)  # the database goes, its WAL stays behind
    holder.close()
    new = ContainerBroker(path)
    new.initialize(5, account="a", container="new")
    assert new.get_info()["container"] == "new"
    assert new.list_objects(ListingParams()) == []


def test_missing_database_is_not_created_by_reading(device):
    path = db_file_path(device, "containers", 1, HASH)
    with pytest.raises(DatabaseNotFound):
        ContainerBroker(path).get_info()
    assert not os.path.exists(path)


# -- what the file is ---------------------------------------------------------------------


def test_garbage_file_is_database_corrupt(device):
    path = db_file_path(device, "containers", 1, HASH)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as fp:
        fp.write(b"this is not sqlite at all" * 100)
    with pytest.raises(DatabaseCorrupt):
        ContainerBroker(path).get_info()


def test_damaged_pages_are_database_corrupt(broker):
    broker.merge_items([obj_row(f"o{i:05d}" + "x" * 200, 2) for i in range(2000)])
    broker.close()
    POOL.clear()
    size = os.path.getsize(broker.db_file)
    with open(broker.db_file, "r+b") as fp:
        fp.seek(size // 2)
        fp.write(b"\xff" * (size // 3))
    b = ContainerBroker(broker.db_file)
    with pytest.raises(DatabaseCorrupt):
        b.list_objects(ListingParams(limit=10000))
        b.get_items_since(-1, 10000)


def test_account_db_opened_as_container_is_corrupt(device):
    path = db_file_path(device, "accounts", 1, HASH)
    AccountBroker(path).initialize(1, account="a")
    with pytest.raises(DatabaseCorrupt):
        ContainerBroker(path).get_info()


def test_newer_schema_version_is_a_clear_error(broker):
    broker.close()
    POOL.clear()
    with sqlite3.connect(broker.db_file) as conn:
        conn.execute(f"PRAGMA user_version = {dbmod.SCHEMA_VERSION + 1}")
    with pytest.raises(DatabaseSchemaError, match="newer"):
        ContainerBroker(broker.db_file).get_info()


def test_replaced_file_is_reopened_not_served_from_the_pool(device, broker):
    broker.put_object("old", 2, 1, "t", "e")
    broker.checkpoint()
    broker.get_info()
    broker.close()  # a pooled connection to the old file stays open
    other = ContainerBroker(db_file_path(device, "containers", 2, HASH))
    other.initialize(1, account="a", container="other")
    other.put_object("new", 2, 1, "t", "e")
    other.checkpoint()  # a replacement copies a checkpointed file, as replication will
    os.replace(other.db_file, broker.db_file)
    b = ContainerBroker(broker.db_file)
    assert b.get_info()["container"] == "other"
    assert [r[0] for r in b.list_objects(ListingParams())] == ["new"]


def test_moved_database_is_not_found_through_the_pool(broker):
    broker.get_info()
    broker.close()
    os.rename(broker.db_file, broker.db_file + ".quarantined")
    with pytest.raises(DatabaseNotFound):
        ContainerBroker(broker.db_file).get_info()


def test_busy_database_times_out_as_locked(broker):
    holder = sqlite3.connect(broker.db_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        b = ContainerBroker(broker.db_file, timeout=0.1)
        with pytest.raises(DatabaseLocked):
            b.put_object("o", 2, 1, "t", "e")
        assert b.get_info()["object_count"] == 0  # readers are not blocked (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# -- timestamps and deletion ---------------------------------------------------------------


def test_put_timestamp_only_moves_forward(broker):
    broker.update_put_timestamp(5)
    broker.update_put_timestamp(3)
    assert broker.get_info()["put_timestamp"] == Timestamp(5).internal


def test_is_deleted_needs_newer_delete_and_no_rows(broker):
    broker.put_object("o", 2, 1, "t", "e")
    broker.delete_db(3)
    assert not broker.is_deleted()  # still has an object
    broker.delete_object("o", 4)
    assert broker.is_deleted()
    broker.delete_db(5)
    assert broker.get_info()["status_changed_at"] == Timestamp(1).internal  # no flip at 5
    broker.update_put_timestamp(6)
    assert not broker.is_deleted()
    assert broker.get_info()["status_changed_at"] == Timestamp(6).internal


# -- metadata -----------------------------------------------------------------------------


def test_metadata_newest_wins_per_key(broker):
    broker.update_metadata(
        {"X-Container-Meta-Color": ("blue", 5), "X-Container-Meta-Size": ("1", 5)}
    )
    broker.update_metadata(
        {"X-Container-Meta-Color": ("red", 4), "X-Container-Meta-Size": ("2", 6)}
    )
    assert broker.get_metadata() == {"X-Container-Meta-Color": "blue", "X-Container-Meta-Size": "2"}
    assert broker.metadata["X-Container-Meta-Color"] == ["blue", Timestamp(5).internal]


def test_empty_metadata_value_deletes_on_read_but_is_kept(broker):
    broker.update_metadata({"X-Container-Meta-Color": ("blue", 5)})
    broker.update_metadata({"X-Container-Meta-Color": ("", 6)})
    assert broker.get_metadata() == {}
    broker.update_metadata({"X-Container-Meta-Color": ("green", 5.5)})  # older than the delete
    assert broker.get_metadata() == {}
    assert broker.metadata["X-Container-Meta-Color"][0] == ""


def test_metadata_updates_from_headers():
    headers = {
        "X-Container-Meta-Color": "blue",
        "x-remove-container-meta-size": "x",
        "X-Container-Read": ".r:*",
        "X-Object-Meta-Nope": "n",
        "Content-Type": "text/plain",
    }
    got = metadata_updates(headers, ("x-container-meta-",), {"x-container-read"}, 7)
    stamp = Timestamp(7).internal
    assert got == {
        "X-Container-Meta-Color": ("blue", stamp),
        "X-Container-Meta-Size": ("", stamp),
        "X-Container-Read": (".r:*", stamp),
    }


# -- item rows ----------------------------------------------------------------------------


def test_merge_items_newest_created_at_wins(broker):
    broker.merge_items([obj_row("o", 5, size=5)])
    broker.merge_items([obj_row("o", 4, size=4)])
    assert broker.get_info()["bytes_used"] == 5
    broker.merge_items([obj_row("o", 6, deleted=1)])
    info = broker.get_info()
    assert (info["object_count"], info["bytes_used"]) == (0, 0)
    broker.merge_items([obj_row("o", 5.5, size=9)])  # older than the delete
    assert broker.list_objects(ListingParams()) == []


def test_merge_is_order_independent_including_the_hash(device):
    rows = [
        obj_row("a", 2, 1),
        obj_row("b", 3, 2),
        obj_row("a", 4, 3),
        obj_row("b", 5, 0, deleted=1),
        obj_row("c", 6, 7),
    ]
    results = set()
    for n, perm in enumerate(itertools.permutations(rows)):
        if n % 7:
            continue  # a spread of the 120 orders is plenty
        b = ContainerBroker(db_file_path(device, "containers", n, HASH))
        b.initialize(1)
        for row in perm:
            b.merge_items([row])
        info = b.get_info()
        results.add((info["object_count"], info["bytes_used"], info["hash"]))
        b.close()
    assert len(results) == 1
    count, used, digest = results.pop()
    assert (count, used) == (2, 10)
    expected = "0" * 32
    for name, ts in (("a", 4), ("b", 5), ("c", 6)):
        expected = chexor(expected, name, Timestamp(ts).internal)
    assert digest == expected


def test_merge_within_one_batch_keeps_the_newest(broker):
    broker.merge_items([obj_row("o", 3, 3), obj_row("o", 9, 9), obj_row("o", 5, 5)])
    assert broker.get_info()["bytes_used"] == 9


def test_get_items_since_follows_changes(broker):
    broker.merge_items([obj_row("a", 2), obj_row("b", 2)])
    first = broker.get_items_since(-1, 10)
    assert [r["name"] for r in first] == ["a", "b"]
    point = first[-1]["ROWID"]
    assert broker.get_items_since(point, 10) == []
    broker.merge_items([obj_row("a", 3, deleted=1)])
    changed = broker.get_items_since(point, 10)
    assert [(r["name"], r["deleted"]) for r in changed] == [("a", 1)]
    assert broker.get_max_row() == changed[0]["ROWID"]
    assert len(broker.get_items_since(-1, 1)) == 1


def test_reclaim_drops_old_tombstones_and_deleted_metadata(broker):
    broker.merge_items([obj_row("old", 100, deleted=1), obj_row("new", 900, deleted=1)])
    broker.merge_items([obj_row("live", 100)])
    broker.update_metadata({"X-Container-Meta-A": ("", 100), "X-Container-Meta-B": ("", 900)})
    assert broker.reclaim(age=500, now=1000) == 1
    names = {r["name"] for r in broker.get_items_since(-1, 10)}
    assert names == {"new", "live"}
    assert set(broker.metadata) == {"X-Container-Meta-B"}


def test_sync_points_only_move_forward(broker):
    assert broker.get_sync("remote") == -1
    broker.merge_syncs([{"remote_id": "remote", "sync_point": 5}])
    broker.merge_syncs([{"remote_id": "remote", "sync_point": 3}])
    assert broker.get_sync("remote") == 5
    broker.merge_syncs([{"remote_id": "r2", "sync_point": 1}], incoming=False)
    assert broker.get_syncs(incoming=False) == [{"remote_id": "r2", "sync_point": 1}]
    assert broker.get_sync("r2") == -1


def test_rows_are_never_updated_in_place(broker):
    broker.put_object("o", 2, 1, "t", "e")
    with sqlite3.connect(broker.db_file) as conn:
        conn.create_function("chexor", 3, chexor)
        with pytest.raises(sqlite3.DatabaseError, match="replaced"):
            conn.execute("UPDATE object SET size = 5")
