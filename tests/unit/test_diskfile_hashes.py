"""Suffix hashes: invalidation on every write, the msgpack cache, reclaiming, locking."""

import hashlib
import os
import threading
import time

import msgpack
import pytest

from common.hashing import HashSecrets
from common.timestamp import Timestamp
from object_server import layout
from object_server.diskfile import DiskFileManager
from object_server.hashes import LockTimeout, get_hashes, partition_lock

SECRETS = HashSecrets("p", "s")


@pytest.fixture
def dev(tmp_path):
    path = tmp_path / "sda1"
    path.mkdir()
    return str(path)


@pytest.fixture
def mgr():
    return DiskFileManager(SECRETS, reclaim_age=3600)


def write(mgr, dev, name, seconds, part=5, policy=0):
    df = mgr.get_diskfile(dev, part, "a", "c", name, policy)
    meta = {
        "name": df.name,
        "X-Timestamp": Timestamp(seconds).internal,
        "Content-Length": "1",
        "ETag": hashlib.md5(b"x").hexdigest(),
    }
    with df.create() as writer:
        writer.write(b"x")
        writer.put(meta)
    return df


def expected_suffix_hash(dev, part, suffix, policy=0):
    suffix_dir = os.path.join(layout.partition_dir(dev, part, policy), suffix)
    lines = []
    for obj_hash in sorted(os.listdir(suffix_dir)):
        for name in sorted(os.listdir(os.path.join(suffix_dir, obj_hash))):
            lines.append(f"{obj_hash}/{name}\n")
    return hashlib.md5("".join(lines).encode()).hexdigest()


def test_every_write_marks_its_suffix_invalid(dev, mgr):
    df = write(mgr, dev, "o", 1)
    part_dir = layout.partition_dir(dev, 5, 0)
    with open(os.path.join(part_dir, "hashes.invalid")) as fp:
        assert fp.read().split() == [df.hash[-3:]]
    df.delete(Timestamp(2))
    with open(os.path.join(part_dir, "hashes.invalid")) as fp:
        assert fp.read().split() == [df.hash[-3:]] * 2


def test_get_hashes_hashes_the_file_names_and_consolidates(dev, mgr):
    df = write(mgr, dev, "o", 1)
    suffix = df.hash[-3:]
    hashes = mgr.get_hashes(dev, 5)
    assert hashes == {suffix: expected_suffix_hash(dev, 5, suffix)}
    part_dir = layout.partition_dir(dev, 5, 0)
    with open(os.path.join(part_dir, "hashes.invalid")) as fp:
        assert fp.read() == ""
    with open(os.path.join(part_dir, "hashes.msgpack"), "rb") as fp:
        assert msgpack.unpackb(fp.read())["hashes"] == hashes


def test_hash_changes_with_a_write_and_only_that_suffix_is_rehashed(dev, mgr):
    now = time.time()
    first = write(mgr, dev, "o", now)
    names = iter(f"obj{i}" for i in range(1000))
    other = write(mgr, dev, next(names), 1)
    while other.hash[-3:] == first.hash[-3:]:
        other = write(mgr, dev, next(names), 1)
    before = mgr.get_hashes(dev, 5)
    assert set(before) == {first.hash[-3:], other.hash[-3:]}
    # Tamper with the cached value of the untouched suffix: it must be served from cache.
    part_dir = layout.partition_dir(dev, 5, 0)
    with open(os.path.join(part_dir, "hashes.msgpack"), "rb") as fp:
        state = msgpack.unpackb(fp.read())
    state["hashes"][other.hash[-3:]] = "cached"
    with open(os.path.join(part_dir, "hashes.msgpack"), "wb") as fp:
        fp.write(msgpack.packb(state))
    first.delete(Timestamp(now + 1))
    after = mgr.get_hashes(dev, 5)
    assert after[first.hash[-3:]] != before[first.hash[-3:]]
    assert after[other.hash[-3:]] == "cached"
    # Asking for a suffix by name recomputes it.
    again = mgr.get_hashes(dev, 5, recalculate=[other.hash[-3:]])
    assert again[other.hash[-3:]] == before[other.hash[-3:]]


def test_same_objects_on_two_devices_hash_the_same(tmp_path, mgr):
    devs = []
    for name in ("d1", "d2"):
        path = tmp_path / name
        path.mkdir()
        devs.append(str(path))
        write(mgr, str(path), "o", 1)
        write(mgr, str(path), "p", 2)
    assert mgr.get_hashes(devs[0], 5) == mgr.get_hashes(devs[1], 5)
    write(mgr, devs[1], "p", 3)
    assert mgr.get_hashes(devs[0], 5) != mgr.get_hashes(devs[1], 5, recalculate=())


def test_missing_or_corrupt_cache_means_a_full_rehash(dev, mgr):
    df = write(mgr, dev, "o", 1)
    part_dir = layout.partition_dir(dev, 5, 0)
    good = mgr.get_hashes(dev, 5)
    with open(os.path.join(part_dir, "hashes.msgpack"), "wb") as fp:
        fp.write(b"\xc1garbage")
    assert mgr.get_hashes(dev, 5) == good
    os.unlink(os.path.join(part_dir, "hashes.msgpack"))
    assert mgr.get_hashes(dev, 5) == good == {df.hash[-3:]: good[df.hash[-3:]]}


def test_old_tombstones_are_reclaimed_and_empty_suffixes_vanish(dev, mgr):
    df = write(mgr, dev, "o", 1)
    df.delete(Timestamp(time.time() - 7200))  # older than reclaim_age (3600)
    assert mgr.get_hashes(dev, 5) == {}
    assert not os.path.exists(df.datadir)
    assert not os.path.exists(os.path.dirname(df.datadir))


def test_recent_tombstones_stay(dev, mgr):
    df = write(mgr, dev, "o", 1)
    df.delete(Timestamp(time.time()))
    assert list(mgr.get_hashes(dev, 5)) == [df.hash[-3:]]


def test_missing_partition_has_no_hashes(dev, mgr):
    assert mgr.get_hashes(dev, 99) == {}
    assert not os.path.exists(layout.partition_dir(dev, 99, 0))


def test_policies_hash_separately(dev, mgr):
    df = write(mgr, dev, "o", 1, policy=1)
    assert mgr.get_hashes(dev, 5, policy_index=0) == {}
    assert list(get_hashes(dev, 5, 1)) == [df.hash[-3:]]


def test_partition_lock_excludes_and_times_out(dev, mgr):
    write(mgr, dev, "o", 1)
    part_dir = layout.partition_dir(dev, 5, 0)
    held = threading.Event()
    release = threading.Event()

    def holder():
        with partition_lock(part_dir):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        held.wait(5)
        with pytest.raises(LockTimeout):
            with partition_lock(part_dir, timeout=0.1):
                pass
    finally:
        release.set()
        thread.join()
    with partition_lock(part_dir, timeout=1):
        pass


def test_concurrent_writers_and_hashers_lose_no_invalidation(dev, mgr):
    errors = []

    def writer(prefix):
        try:
            for i in range(15):
                write(mgr, dev, f"{prefix}{i}", 1 + i)
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(p,)) for p in "xyz"]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        mgr.get_hashes(dev, 5)
        time.sleep(0.005)
    for thread in threads:
        thread.join()
    assert errors == []
    final = mgr.get_hashes(dev, 5)
    part_dir = layout.partition_dir(dev, 5, 0)
    suffixes = [s for s in os.listdir(part_dir) if layout.is_suffix(s)]
    assert final == {s: expected_suffix_hash(dev, 5, s) for s in suffixes}


def test_makedirs_outlasts_a_cleaner_removing_an_empty_parent(tmp_path, monkeypatch):
    # A hasher may rmdir an empty suffix dir between os.makedirs' check of the parent
    # and its mkdir of the child: that is a retry, not a failed write.
    from common import fileops

    real_makedirs = os.makedirs
    failures = iter([FileNotFoundError(2, "parent removed"), None])

    def racing(path, exist_ok=False):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_makedirs(path, exist_ok=exist_ok)

    monkeypatch.setattr(os, "makedirs", racing)
    target = tmp_path / "suffix" / "hash"
    fileops.makedirs(str(target))
    assert target.is_dir()
    monkeypatch.setattr(os, "makedirs", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError))
    with pytest.raises(FileNotFoundError):
        fileops.makedirs(str(tmp_path / "gone" / "x"))
