"""The object auditor on real files: clean objects pass, corrupt ones are quarantined and
their suffixes marked for rehashing, stale tombstones are marked too, the pace is kept."""

import hashlib
import os
import time

import pytest
from helpers import EC_CONF, flip_byte

from common.hashing import HashSecrets
from common.timestamp import Timestamp
from object_server import layout
from object_server.auditor import ObjectAuditor, RateLimiter
from object_server.diskfile import DiskFileManager
from object_server.ec_diskfile import ECDiskFileManager
from object_server.metadata import XATTR_NAME

SECRETS = HashSecrets("pre", "suf")
PART = 3
T0 = time.time()


@pytest.fixture
def node(tmp_path):
    devices = tmp_path / "srv"
    (devices / "sda").mkdir(parents=True)
    conf_path = tmp_path / "haneul.conf"
    conf_path.write_text("[hash]\nprefix = pre\nsuffix = suf\n")
    return {
        "devices": str(devices),
        "haneul_conf": str(conf_path),
        "files_per_second": "0",
        "bytes_per_second": "0",
    }


@pytest.fixture
def dev(node):
    return os.path.join(node["devices"], "sda")


@pytest.fixture
def mgr():
    return DiskFileManager(SECRETS)


def put(mgr, dev, name, body=b"some bytes", policy=0, etag=None):
    df = mgr.get_diskfile(dev, PART, "a", "c", name, policy)
    metadata = {
        "name": df.name,
        "X-Timestamp": Timestamp(time.time()).internal,
        "Content-Length": str(len(body)),
        "ETag": etag or hashlib.md5(body).hexdigest(),
    }
    with df.create() as writer:
        writer.write(body)
        writer.put(metadata)
    return df


def data_file(df):
    return os.path.join(df.datadir, next(n for n in os.listdir(df.datadir) if n.endswith(".data")))


def invalid_suffixes(dev, policy=0):
    path = os.path.join(layout.partition_dir(dev, PART, policy), layout.INVALID_FILE)
    with open(path) as fp:
        return set(fp.read().split())


def test_clean_objects_are_read_and_left_alone(node, dev, mgr):
    for i in range(5):
        put(mgr, dev, f"o{i}", b"x" * (i * 1000))
    put(mgr, dev, "p1", b"in policy 1", policy=1)
    stats = ObjectAuditor(node).run_once()
    assert stats["objects_checked"] == 6
    assert stats["bytes"] == sum(i * 1000 for i in range(5)) + len(b"in policy 1")
    assert stats["quarantined"] == stats["errors"] == 0
    assert not os.path.exists(os.path.join(dev, "quarantined"))


def test_flipped_byte_is_quarantined_and_its_suffix_invalidated(node, dev, mgr):
    df = put(mgr, dev, "o", b"precious bytes")
    put(mgr, dev, "neighbour")
    mgr.get_hashes(dev, PART)  # a clean cache, so the invalidation shows
    path = data_file(df)
    with open(path, "r+b") as fp:
        fp.write(b"P")

    stats = ObjectAuditor(node).run_once()
    assert stats["quarantined"] == 1 and stats["objects_checked"] == 2
    assert not os.path.exists(df.datadir)
    moved = os.path.join(dev, "quarantined", "objects", df.hash)
    assert os.listdir(moved) == [os.path.basename(path)]
    assert layout.suffix_of(df.hash) in invalid_suffixes(dev)
    assert ObjectAuditor(node).run_once()["quarantined"] == 0  # it's gone from the walk


def test_truncated_file_and_bad_metadata_are_quarantined(node, dev, mgr):
    short = put(mgr, dev, "short", b"0123456789")
    os.truncate(data_file(short), 4)
    garbled = put(mgr, dev, "garbled")
    os.setxattr(data_file(garbled), XATTR_NAME, b"\xc1 not msgpack")
    bad_etag = put(mgr, dev, "bad-etag", etag="not an md5")
    fine = put(mgr, dev, "fine")

    stats = ObjectAuditor(node).run_once(devices=["sda"])
    assert stats["quarantined"] == 3
    quarantined = set(os.listdir(os.path.join(dev, "quarantined", "objects")))
    assert quarantined == {short.hash, garbled.hash, bad_etag.hash}
    assert os.path.isdir(fine.datadir)


def test_stale_tombstone_gets_its_suffix_rehashed_and_reclaimed(node, dev, mgr):
    old = mgr.get_diskfile(dev, PART, "a", "c", "long-gone")
    old.delete(Timestamp(time.time() - 1000))
    new = mgr.get_diskfile(dev, PART, "a", "c", "just-gone")
    new.delete(Timestamp(time.time()))
    DiskFileManager(SECRETS, reclaim_age=10**9).get_hashes(dev, PART)  # nothing reclaimed
    assert os.path.isdir(old.datadir)

    stats = ObjectAuditor({**node, "reclaim_age": "500"}).run_once()
    assert stats["stale_tombstones"] == 1 and stats["objects_checked"] == 0
    DiskFileManager(SECRETS, reclaim_age=500).get_hashes(dev, PART)
    assert not os.path.exists(old.datadir)
    assert os.path.isdir(new.datadir)


def test_unmounted_device_is_skipped(node, dev, mgr):
    put(mgr, dev, "o")
    stats = ObjectAuditor({**node, "mount_check": "true"}).run_once()
    assert stats["objects_checked"] == 0


def test_rate_limiter_keeps_the_pace():
    now = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(10, burst=1.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(30):
        limiter.spend(1)
    assert now[0] == pytest.approx(102.9)  # 30 units at 10/s: 2.9 s after the first
    now[0] += 60  # a long idle stretch buys at most one second of burst
    slept.clear()
    for _ in range(20):
        limiter.spend(1)
    assert sum(slept) == pytest.approx(0.9)


def test_files_per_second_slows_a_pass(node, dev, mgr):
    for i in range(6):
        put(mgr, dev, f"o{i}")
    started = time.monotonic()
    ObjectAuditor({**node, "files_per_second": "50"}).run_once()
    assert time.monotonic() - started >= 5 / 50 * 0.9


# -- erasure-coded fragment archives -----------------------------------------------------

EC_POLICY = 1


@pytest.fixture
def ec_node(node, tmp_path):
    conf_path = tmp_path / "haneul-ec.conf"
    conf_path.write_text(EC_CONF)
    return {**node, "haneul_conf": str(conf_path)}


def put_archive(dev, name, frag_index, body, etag=None, durable=True):
    """A fragment archive as the object server stores it (its ETag: the writer's CRC32,
    or ``etag``, e.g. an MD5 as archives had before CRC32s)."""
    df = ECDiskFileManager(SECRETS).get_diskfile(dev, PART, "a", "c", name, EC_POLICY)
    with df.create() as writer:
        writer.write(body)
        metadata = {
            "name": df.name,
            "X-Timestamp": Timestamp(T0).internal,
            "Content-Length": str(len(body)),
            "ETag": etag or writer.etag,
        }
        writer.put(metadata, frag_index=frag_index, durable=durable)
    return df


def archive_file(df, frag_index):
    return os.path.join(df.datadir, f"{Timestamp(T0).internal}#{frag_index}#d.data")


def test_fragment_archives_are_checked_against_their_crc32(ec_node, dev):
    clean = put_archive(dev, "clean", 2, b"fragment two " * 100)
    flipped = put_archive(dev, "flipped", 3, b"fragment three " * 100)
    flip_byte(archive_file(flipped, 3), 700)
    in_flight = put_archive(dev, "in-flight", 4, b"not committed", durable=False)
    flip_byte(in_flight.datadir + "/" + os.listdir(in_flight.datadir)[0])

    stats = ObjectAuditor(ec_node).run_once()
    assert stats["objects_checked"] == 2 and stats["quarantined"] == 1
    assert stats["bytes"] == 2 * 1300 + 200
    moved = os.path.join(dev, "quarantined", "objects-1", flipped.hash)
    assert os.listdir(moved) == [os.path.basename(archive_file(flipped, 3))]
    assert os.path.exists(archive_file(clean, 2))
    assert os.path.isdir(in_flight.datadir)  # only committed archives are audited
    assert layout.suffix_of(flipped.hash) in invalid_suffixes(dev, EC_POLICY)


def test_every_archive_a_handoff_holds_is_checked(ec_node, dev):
    for frag_index in (0, 1, 5):
        df = put_archive(dev, "o", frag_index, b"archive %d " % frag_index * 50)
    flip_byte(archive_file(df, 5), 10)

    stats = ObjectAuditor(ec_node).run_once()
    assert stats["objects_checked"] == 3 and stats["quarantined"] == 1
    assert not os.path.exists(df.datadir)  # the hash dir goes as a whole, as for replicas


def test_archives_written_with_an_md5_are_still_checked(ec_node, dev):
    body = b"an archive from before CRC32s"
    old = put_archive(dev, "old", 1, body, etag=hashlib.md5(body).hexdigest())
    bad = put_archive(dev, "old-bad", 1, body, etag=hashlib.md5(body).hexdigest())
    flip_byte(archive_file(bad, 1))
    odd = put_archive(dev, "odd", 1, body, etag="sha1:whatever")

    stats = ObjectAuditor(ec_node).run_once()
    assert stats["objects_checked"] == 3 and stats["quarantined"] == 2
    quarantined = set(os.listdir(os.path.join(dev, "quarantined", "objects-1")))
    assert quarantined == {bad.hash, odd.hash}
    assert os.path.exists(archive_file(old, 1))
