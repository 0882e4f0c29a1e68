"""The object disk layer on the real filesystem: layout, metadata, cleanup, hashes, errors."""

import errno
import hashlib
import os
import time

import msgpack
import pytest
import xattr

from common.hashing import HashSecrets, hash_path
from common.timestamp import Timestamp
from object_server import layout
from object_server.diskfile import (
    DiskFileDeleted,
    DiskFileExpired,
    DiskFileManager,
    DiskFileNoSpace,
    DiskFileNotExist,
    DiskFileQuarantined,
)
from object_server.metadata import INLINE_LIMIT, XATTR_NAME, read_metadata

SECRETS = HashSecrets("p", "s")


@pytest.fixture
def dev(tmp_path):
    path = tmp_path / "sda1"
    path.mkdir()
    return str(path)


@pytest.fixture
def mgr():
    return DiskFileManager(SECRETS, disk_chunk_size=7)


def ts(seconds):
    return Timestamp(seconds)


def put(df, body, timestamp, extra=None):
    metadata = {
        "name": df.name,
        "X-Timestamp": Timestamp(timestamp).internal,
        "Content-Type": "text/plain",
        "Content-Length": str(len(body)),
        "ETag": hashlib.md5(body).hexdigest(),
    }
    metadata.update(extra or {})
    with df.create(size=len(body)) as writer:
        for i in range(0, len(body), 5):
            writer.write(body[i : i + 5])
        assert writer.etag == metadata["ETag"]
        return writer.put(metadata)


def files_in(df):
    return sorted(os.listdir(df.datadir)) if os.path.isdir(df.datadir) else []


def test_layout_follows_the_design(dev, mgr):
    df = mgr.get_diskfile(dev, 7, "AUTH_a", "c", "o", policy_index=0)
    obj_hash = hash_path("AUTH_a", "c", "o", secrets=SECRETS)
    path = put(df, b"hello", ts(1))
    assert path == os.path.join(
        dev, "objects", "7", obj_hash[-3:], obj_hash, ts(1).internal + ".data"
    )
    df2 = mgr.get_diskfile(dev, 7, "AUTH_a", "c", "o", policy_index=2)
    path2 = put(df2, b"hello", ts(1))
    assert path2.startswith(os.path.join(dev, "objects-2", "7", obj_hash[-3:], obj_hash) + "/")
    assert os.listdir(os.path.join(dev, "tmp")) == []


def test_put_then_read_back_whole_and_ranges(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    body = bytes(range(256)) * 3
    put(df, body, ts(10), {"X-Object-Meta-Color": "blue"})
    with mgr.get_diskfile(dev, 0, "a", "c", "o").open() as opened:
        assert opened.content_length == len(body)
        assert opened.data_timestamp == ts(10)
        assert opened.get_metadata()["X-Object-Meta-Color"] == "blue"
        reader = opened.reader()
        chunks = list(reader)
    assert b"".join(chunks) == body
    assert max(len(c) for c in chunks) == 7  # disk_chunk_size: streamed, not slurped
    assert reader.fd is None  # closed after the last chunk
    with mgr.get_diskfile(dev, 0, "a", "c", "o").open() as opened:
        it = opened.reader().app_iter([(5, 20)])
        assert b"".join(it) == body[5:20]
        it.close()


def test_small_metadata_lives_in_the_xattr(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    path = put(df, b"abc", ts(1))
    envelope = msgpack.unpackb(xattr.getxattr(path, XATTR_NAME))
    assert envelope["v"] == 1 and envelope["m"]["ETag"] == hashlib.md5(b"abc").hexdigest()
    assert os.path.getsize(path) == 3  # no footer


def test_maximum_metadata_goes_to_a_footer_and_reads_back(dev, mgr):
    # 90 keys, 4 KiB of user metadata in all, plus system metadata and a long name.
    obj = "o" * 1024
    meta = {}
    for i in range(90):
        name = f"K{i:02d}"
        meta[f"X-Object-Meta-{name}"] = "v" * (45 - len(name))
    assert sum(len(k) - len("X-Object-Meta-") + len(v) for k, v in meta.items()) <= 4096
    df = mgr.get_diskfile(dev, 0, "a" * 256, "c" * 256, obj)
    body = b"x" * 1000
    path = put(df, body, ts(1), meta)
    envelope = msgpack.unpackb(xattr.getxattr(path, XATTR_NAME))
    assert "f" in envelope and "m" not in envelope
    offset, length, _ = envelope["f"]
    assert offset == len(body)
    assert os.path.getsize(path) == len(body) + length > len(body) + INLINE_LIMIT
    with mgr.get_diskfile(dev, 0, "a" * 256, "c" * 256, obj).open() as opened:
        got = opened.get_metadata()
        assert {k: got[k] for k in meta} == meta
        assert got["name"] == f"/{'a' * 256}/{'c' * 256}/{obj}"
        assert b"".join(opened.reader()) == body  # the footer is not part of the object


def test_footer_corruption_quarantines(dev, mgr):
    meta = {f"X-Object-Meta-K{i}": "v" * 200 for i in range(20)}
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    path = put(df, b"data", ts(1), meta)
    with open(path, "r+b") as fp:
        fp.seek(10)
        fp.write(b"\xff\xff")
    with pytest.raises(DiskFileQuarantined):
        mgr.get_diskfile(dev, 0, "a", "c", "o").open()
    assert not os.path.exists(df.datadir)
    assert os.listdir(layout.quarantine_dir(dev, 0)) == [df.hash]


def test_truncated_data_file_quarantines(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    path = put(df, b"0123456789", ts(1))
    os.truncate(path, 4)
    with pytest.raises(DiskFileQuarantined):
        mgr.get_diskfile(dev, 0, "a", "c", "o").open()


def test_missing_xattr_quarantines(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    path = put(df, b"abc", ts(1))
    xattr.removexattr(path, XATTR_NAME)
    with pytest.raises(DiskFileQuarantined):
        mgr.get_diskfile(dev, 0, "a", "c", "o").open()


def test_newer_data_obsoletes_older_and_old_meta(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    put(df, b"one", ts(1))
    df.write_metadata({"name": df.name, "X-Timestamp": ts(2).internal, "X-Object-Meta-A": "1"})
    assert files_in(df) == [ts(1).internal + ".data", ts(2).internal + ".meta"]
    with mgr.get_diskfile(dev, 0, "a", "c", "o").open() as opened:
        assert opened.get_metadata()["X-Object-Meta-A"] == "1"
        assert opened.timestamp == ts(2) and opened.data_timestamp == ts(1)
    put(df, b"three", ts(3))
    assert files_in(df) == [ts(3).internal + ".data"]


def test_meta_replaces_user_metadata_but_not_system(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    put(df, b"one", ts(1), {"X-Object-Meta-Old": "x", "X-Object-Sysmeta-Keep": "k"})
    df.write_metadata(
        {"X-Timestamp": ts(2).internal, "X-Object-Meta-New": "y", "Content-Length": "999"}
    )
    with mgr.get_diskfile(dev, 0, "a", "c", "o").open() as opened:
        got = opened.get_metadata()
    assert "X-Object-Meta-Old" not in got
    assert got["X-Object-Meta-New"] == "y"
    assert got["X-Object-Sysmeta-Keep"] == "k"
    assert got["Content-Length"] == "3"
    assert got["X-Timestamp"] == ts(2).internal


def test_newer_meta_survives_an_older_put_and_two_metas_keep_newest(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    put(df, b"one", ts(1))
    df.write_metadata({"X-Timestamp": ts(5).internal})
    df.write_metadata({"X-Timestamp": ts(6).internal})
    put(df, b"two", ts(3))
    assert files_in(df) == [ts(3).internal + ".data", ts(6).internal + ".meta"]


def test_tombstone_obsoletes_everything_older(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    put(df, b"one", ts(1))
    df.write_metadata({"X-Timestamp": ts(2).internal})
    df.delete(ts(3))
    assert files_in(df) == [ts(3).internal + ".ts"]
    with pytest.raises(DiskFileDeleted) as err:
        mgr.get_diskfile(dev, 0, "a", "c", "o").open()
    assert err.value.timestamp == ts(3)
    put(df, b"back", ts(4))
    assert files_in(df) == [ts(4).internal + ".data"]


def test_older_write_arriving_late_is_cleaned_away(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    df.delete(ts(5))
    put(df, b"late", ts(4))
    assert files_in(df) == [ts(5).internal + ".ts"]


def test_missing_object_and_expired_object(dev, mgr):
    with pytest.raises(DiskFileNotExist) as err:
        mgr.get_diskfile(dev, 0, "a", "c", "nothing").open()
    assert err.value.timestamp is None
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    put(df, b"x", ts(1), {"X-Delete-At": str(int(time.time()) - 1)})
    with pytest.raises(DiskFileExpired) as err:
        mgr.get_diskfile(dev, 0, "a", "c", "o").open()
    assert err.value.data_timestamp == ts(1)
    with mgr.get_diskfile(dev, 0, "a", "c", "o").open(check_expiry=False) as opened:
        assert opened.content_length == 1


def test_abandoned_writer_leaves_nothing(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    with df.create(size=100) as writer:
        writer.write(b"partial")
        assert os.path.exists(writer.tmp_path)
    assert os.listdir(os.path.join(dev, "tmp")) == []
    assert not os.path.exists(df.datadir)


def test_cleanup_tmp_removes_only_old_leftovers(dev, mgr):
    tmp = os.path.join(dev, "tmp")
    os.makedirs(tmp)
    old, new = os.path.join(tmp, "old"), os.path.join(tmp, "new")
    for path in (old, new):
        open(path, "wb").close()
    os.utime(old, (time.time() - 1000, time.time() - 1000))
    assert mgr.cleanup_tmp(dev, older_than=500) == 1
    assert os.listdir(tmp) == ["new"]


def _raise_enospc_for(monkeypatch, func_name, fds):
    real = getattr(os, func_name)

    def failing(fd, *args):
        if fd in fds:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, *args)

    monkeypatch.setattr(os, func_name, failing)


def test_disk_full_while_writing_leaves_nothing(dev, mgr, monkeypatch):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    writer = df.create(size=10)
    writer.write(b"12345")
    _raise_enospc_for(monkeypatch, "write", {writer.fd})
    with pytest.raises(DiskFileNoSpace):
        writer.write(b"67890")
    assert writer.fd is None
    assert os.listdir(os.path.join(dev, "tmp")) == []
    assert not os.path.exists(df.datadir)


def test_disk_full_when_reserving_space(dev, mgr, monkeypatch):
    monkeypatch.setattr(
        os, "posix_fallocate", lambda *a: (_ for _ in ()).throw(OSError(errno.EDQUOT, "quota"))
    )
    with pytest.raises(DiskFileNoSpace):
        mgr.get_diskfile(dev, 0, "a", "c", "o").create(size=1 << 20)
    assert os.listdir(os.path.join(dev, "tmp")) == []
    # A small body is not reserved for: the disk being full shows at its write instead.
    mgr.get_diskfile(dev, 0, "a", "c", "o").create(size=10).abandon()


def test_disk_full_writing_the_footer(dev, mgr, monkeypatch):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    writer = df.create(size=2)
    writer.write(b"ab")
    _raise_enospc_for(monkeypatch, "pwrite", {writer.fd})
    big = {f"X-Object-Meta-K{i}": "v" * 200 for i in range(20)}
    big.update({"name": df.name, "X-Timestamp": ts(1).internal, "Content-Length": "2"})
    big["ETag"] = writer.etag
    with pytest.raises(DiskFileNoSpace):
        writer.put(big)
    assert os.listdir(os.path.join(dev, "tmp")) == []
    assert not os.path.exists(df.datadir)


def test_quarantine_moves_the_hash_dir(dev, mgr):
    df = mgr.get_diskfile(dev, 3, "a", "c", "o", policy_index=1)
    put(df, b"x", ts(1))
    first = df.quarantine("test")
    assert first == os.path.join(dev, "quarantined", "objects-1", df.hash)
    assert os.listdir(first) == [ts(1).internal + ".data"]
    put(df, b"y", ts(2))
    second = df.quarantine("again")
    assert second.startswith(first + "-") and os.path.isdir(second)
    assert not os.path.exists(df.datadir)


def test_open_reads_a_file_kept_open_despite_a_newer_write(dev, mgr):
    df = mgr.get_diskfile(dev, 0, "a", "c", "o")
    put(df, b"old bytes", ts(1))
    opened = mgr.get_diskfile(dev, 0, "a", "c", "o").open()
    put(df, b"new", ts(2))
    assert b"".join(opened.reader()) == b"old bytes"


def test_read_metadata_rejects_garbage(tmp_path):
    from object_server.metadata import MetadataError

    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        xattr.setxattr(fd, XATTR_NAME, b"\xc1not msgpack")
        with pytest.raises(MetadataError):
            read_metadata(fd)
        xattr.setxattr(fd, XATTR_NAME, msgpack.packb({"v": 1, "m": {"a": 1}}))
        with pytest.raises(MetadataError):
            read_metadata(fd)
        xattr.setxattr(fd, XATTR_NAME, msgpack.packb({"v": 1, "f": [0, 10, "00"]}))
        with pytest.raises(MetadataError):
            read_metadata(fd)
    finally:
        os.close(fd)


def test_objects_above_keep_cache_size_leave_the_page_cache(dev, monkeypatch):
    advised = []
    real_fadvise = os.posix_fadvise

    def spy(fd, offset, length, advice):
        advised.append(advice)
        return real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    mgr = DiskFileManager(SECRETS, keep_cache_size=100)
    put(mgr.get_diskfile(dev, 0, "a", "c", "small"), b"s" * 100, ts(10))
    assert advised == []
    big = os.urandom(1000)
    put(mgr.get_diskfile(dev, 0, "a", "c", "big"), big, ts(10))
    assert advised == [os.POSIX_FADV_DONTNEED]
    with mgr.get_diskfile(dev, 0, "a", "c", "big").open() as opened:
        assert b"".join(opened.reader()) == big
