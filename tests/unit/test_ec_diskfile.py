"""Erasure-coded objects on real files (tmp_path, real xattrs): which fragment is served,
what cleanup keeps, committing, and the EC suffix hashes."""

import os
import time
import zlib

import pytest

from common.crc32 import CRC32
from common.hashing import HashSecrets
from common.timestamp import Timestamp
from object_server import layout
from object_server.diskfile import DiskFileDeleted, DiskFileNotExist
from object_server.ec_diskfile import (
    ECDiskFileManager,
    FragmentEtagMismatch,
    FragmentNotFound,
)
from object_server.ec_hashes import EMPTY, differing_suffixes, hash_ec_suffix, suffix_view
from object_server.filenames import DATA, TOMBSTONE, make_filename
from object_server.hashes import cleanup_hash_dir

SECRETS = HashSecrets("p", "s")
POLICY = 1
NOW = time.time()


def ts(offset):
    return Timestamp(NOW + offset)


@pytest.fixture
def manager():
    return ECDiskFileManager(SECRETS, reclaim_age=3600)


@pytest.fixture
def dev_path(tmp_path):
    path = tmp_path / "sda1"
    path.mkdir()
    return str(path)


def write_fragment(manager, dev_path, timestamp, frag, body=b"archive", obj="o", durable=False):
    df = manager.get_diskfile(dev_path, 0, "a", "c", obj, POLICY)
    with df.create() as writer:
        writer.write(body)
        metadata = {
            "name": df.name,
            "X-Timestamp": timestamp.internal,
            "Content-Length": str(len(body)),
            "ETag": writer.etag,
            "Content-Type": "text/plain",
        }
        writer.put(metadata, DATA, frag_index=frag, durable=durable)
    return df


def files(df):
    return sorted(os.listdir(df.datadir)) if os.path.isdir(df.datadir) else []


def test_only_durable_fragments_open(manager, dev_path):
    df = write_fragment(manager, dev_path, ts(1), 3)
    with pytest.raises(DiskFileNotExist):
        df.open()
    write_fragment(manager, dev_path, ts(0), 3, b"older", durable=True)
    with df.open():
        assert df.frag_index == 3 and df.data_timestamp == ts(0)
        assert b"".join(df.reader()) == b"older"


def test_preferred_fragment_index_is_opened_when_present(manager, dev_path):
    for frag in (1, 4):
        df = write_fragment(manager, dev_path, ts(0), frag, b"frag %d" % frag, durable=True)
    for frag in (1, 4):
        df = manager.get_fragment(dev_path, 0, df.hash, POLICY, frag)
        with df.open():
            assert df.frag_index == frag
            assert b"".join(df.reader()) == b"frag %d" % frag


def test_cleanup_keeps_durable_and_newer_pending_drops_older(manager, dev_path):
    write_fragment(manager, dev_path, ts(-10), 2, durable=True)
    write_fragment(manager, dev_path, ts(-5), 2)  # uncommitted, older than the next
    df = write_fragment(manager, dev_path, ts(0), 2, durable=True)
    write_fragment(manager, dev_path, ts(5), 2)  # uncommitted, newer
    assert files(df) == [
        make_filename(ts(0), DATA, 2, durable=True),
        make_filename(ts(5), DATA, 2),
    ]


def test_cleanup_reclaims_an_uncommitted_write_past_reclaim_age(manager, dev_path):
    write_fragment(manager, dev_path, ts(-7200), 2, durable=True)
    df = write_fragment(manager, dev_path, ts(-4000), 2)
    cleanup_hash_dir(df.datadir, reclaim_before=ts(-3600))
    assert files(df) == [make_filename(ts(-7200), DATA, 2, durable=True)]


def test_newer_tombstone_wins_over_every_fragment(manager, dev_path):
    write_fragment(manager, dev_path, ts(0), 2, durable=True)
    df = write_fragment(manager, dev_path, ts(1), 2)
    df.delete(ts(2))
    assert files(df) == [make_filename(ts(2), TOMBSTONE)]
    with pytest.raises(DiskFileDeleted):
        df.open()


def test_commit_renames_and_merges_the_footer(manager, dev_path):
    df = write_fragment(manager, dev_path, ts(0), 5, b"bytes")
    footer = {"X-Object-Sysmeta-Ec-Etag": "e" * 32, "X-Object-Sysmeta-Ec-Content-Length": "99"}
    metadata, fresh = df.commit(ts(0), 5, footer, df_etag(b"bytes"))
    assert fresh and metadata["X-Object-Sysmeta-Ec-Etag"] == "e" * 32
    assert files(df) == [make_filename(ts(0), DATA, 5, durable=True)]
    _, fresh = df.commit(ts(0), 5, footer, df_etag(b"bytes"))
    assert not fresh
    with df.open():
        assert df.get_metadata()["X-Object-Sysmeta-Ec-Content-Length"] == "99"
        assert df.get_metadata()["X-Object-Sysmeta-Ec-Frag-Archive-Etag"] == df_etag(b"bytes")


def df_etag(data):
    """What the proxy sends as an archive's checksum: its CRC32 (common.crc32)."""
    return CRC32(data).hexdigest()


def test_an_archives_etag_is_its_crc32_not_its_md5(manager, dev_path):
    df = write_fragment(manager, dev_path, ts(0), 5, b"bytes", durable=True)
    with df.open():
        assert df.get_metadata()["ETag"] == df_etag(b"bytes") == f"crc32:{zlib.crc32(b'bytes'):08x}"


def test_commit_refuses_a_missing_or_mismatched_archive(manager, dev_path):
    df = write_fragment(manager, dev_path, ts(0), 5, b"bytes")
    with pytest.raises(FragmentNotFound):
        df.commit(ts(0), 4, {}, None)
    with pytest.raises(FragmentEtagMismatch):
        df.commit(ts(0), 5, {}, df_etag(b"other"))
    assert files(df) == []


def suffix_of(df):
    return os.path.dirname(df.datadir)


def test_suffix_hash_ignores_the_fragment_index_and_uncommitted_writes(manager, tmp_path):
    devs = {}
    for frag in (0, 3):
        dev = tmp_path / f"dev{frag}"
        dev.mkdir()
        devs[frag] = str(dev)
        for i in range(3):
            write_fragment(manager, str(dev), ts(i), frag, b"%d" % frag, obj="o", durable=True)
    df0 = manager.get_diskfile(devs[0], 0, "a", "c", "o", POLICY)
    df3 = manager.get_diskfile(devs[3], 0, "a", "c", "o", POLICY)
    value0, value3 = hash_ec_suffix(suffix_of(df0)), hash_ec_suffix(suffix_of(df3))
    assert set(value0) == {"none", "0"} and set(value3) == {"none", "3"}
    assert value0["none"] == value3["none"] == EMPTY
    assert value0["0"] == value3["3"]
    assert suffix_view(value0, 0) == suffix_view(value3, 3)

    write_fragment(manager, devs[0], ts(10), 0)  # in flight: no difference yet
    assert hash_ec_suffix(suffix_of(df0)) == value0
    df0.delete(ts(20))
    suffix = os.path.basename(suffix_of(df0))
    local, remote = {suffix: hash_ec_suffix(suffix_of(df0))}, {suffix: value3}
    assert differing_suffixes(local, remote, 0, 3) == [suffix]
    df3.delete(ts(20))
    remote = {suffix: hash_ec_suffix(suffix_of(df3))}
    assert differing_suffixes(local, remote, 0, 3) == []


def test_handoff_suffix_hash_has_an_entry_per_fragment_index(manager, dev_path):
    for frag in (1, 4):
        df = write_fragment(manager, dev_path, ts(0), frag, durable=True)
    value = hash_ec_suffix(suffix_of(df))
    assert set(value) == {"none", "1", "4"} and value["1"] == value["4"]
    assert suffix_view(value, 2) is None  # holds nothing durable of index 2


def test_empty_suffix_is_removed_and_hashes_to_none(manager, dev_path):
    df = write_fragment(manager, dev_path, ts(-7200), 1)
    assert hash_ec_suffix(suffix_of(df), reclaim_before=ts(-3600)) is None
    assert not os.path.exists(suffix_of(df))


def test_manager_get_hashes_caches_ec_values(manager, dev_path):
    df = write_fragment(manager, dev_path, ts(0), 2, durable=True)
    hashes = manager.get_hashes(dev_path, 0, POLICY)
    suffix = layout.suffix_of(df.hash)
    assert set(hashes[suffix]) == {"none", "2"}
    assert manager.get_hashes(dev_path, 0, POLICY) == hashes
