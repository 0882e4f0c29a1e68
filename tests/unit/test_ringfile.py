"""The ring file format: what the builder writes is exactly what every server reads."""

import gzip
import json
import struct
from array import array

import pytest

from ring.ringfile import FORMAT_VERSION, MAGIC, RingData, RingFileError


def _devs(count):
    return [
        {
            "id": i,
            "region": 1,
            "zone": 1 + i % 3,
            "ip": "127.0.0.1",
            "port": 6200 + i,
            "device": f"d{i}",
            "weight": 100.0,
            "meta": "",
        }
        for i in range(count)
    ]


def _ring(part_power=4, replicas=3, devs=None, partial=None):
    parts = 1 << part_power
    devs = _devs(6) if devs is None else devs
    ids = [d["id"] for d in devs if d is not None]
    rows = [array("H", (ids[(p + r) % len(ids)] for p in range(parts))) for r in range(replicas)]
    if partial is not None:
        rows.append(array("H", (ids[p % len(ids)] for p in range(partial))))
    return RingData(part_power, devs, rows)


def _gz_bytes(path):
    return gzip.decompress(path.read_bytes())


def _write_gz(path, raw):
    path.write_bytes(gzip.compress(raw))


def test_round_trip_keeps_devices_and_table(tmp_path):
    data = _ring(part_power=6)
    path = tmp_path / "object.ring.gz"
    data.save(path)
    loaded = RingData.load(path)
    assert loaded.part_power == 6
    assert loaded.devs == data.devs
    assert [list(r) for r in loaded.replica2part2dev] == [list(r) for r in data.replica2part2dev]
    assert loaded.replica_count == 3.0


def test_removed_devices_stay_as_none(tmp_path):
    devs = _devs(4)
    devs[2] = None
    data = _ring(devs=devs)
    data.save(tmp_path / "r.ring.gz")
    assert RingData.load(tmp_path / "r.ring.gz").devs[2] is None


def test_fractional_replicas_round_trip(tmp_path):
    data = _ring(part_power=4, replicas=2, partial=8)
    assert data.replica_count == 2.5
    data.save(tmp_path / "r.ring.gz")
    loaded = RingData.load(tmp_path / "r.ring.gz")
    assert loaded.replica_count == 2.5
    assert [len(r) for r in loaded.replica2part2dev] == [16, 16, 8]


def test_many_devices_use_wide_arrays(tmp_path):
    devs = [None] * 70000
    devs[69999] = dict(_devs(1)[0], id=69999)
    data = RingData(2, devs, [array("I", [69999] * 4)])
    data.save(tmp_path / "r.ring.gz")
    loaded = RingData.load(tmp_path / "r.ring.gz")
    assert loaded.replica2part2dev[0].typecode == "I"
    assert list(loaded.replica2part2dev[0]) == [69999] * 4


def test_same_ring_gives_identical_bytes(tmp_path):
    _ring().save(tmp_path / "a.ring.gz")
    _ring().save(tmp_path / "b.ring.gz")
    assert (tmp_path / "a.ring.gz").read_bytes() == (tmp_path / "b.ring.gz").read_bytes()


def test_header_is_readable_json_after_magic(tmp_path):
    _ring().save(tmp_path / "r.ring.gz")
    raw = _gz_bytes(tmp_path / "r.ring.gz")
    magic, version, length = struct.unpack_from(">4sHI", raw)
    assert (magic, version) == (MAGIC, FORMAT_VERSION)
    header = json.loads(raw[10 : 10 + length])
    assert header["part_power"] == 4 and header["replica_count"] == 3.0


def test_missing_file_is_a_ring_file_error(tmp_path):
    with pytest.raises(RingFileError, match="not found"):
        RingData.load(tmp_path / "nope.ring.gz")


def test_not_gzip_is_a_ring_file_error(tmp_path):
    path = tmp_path / "r.ring.gz"
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(RingFileError, match="gzip"):
        RingData.load(path)


def test_truncated_gzip_is_a_ring_file_error(tmp_path):
    path = tmp_path / "r.ring.gz"
    _ring(part_power=8).save(path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(RingFileError):
        RingData.load(path)


def test_truncated_table_is_a_ring_file_error(tmp_path):
    path = tmp_path / "r.ring.gz"
    _ring().save(path)
    _write_gz(path, _gz_bytes(path)[:-5])
    with pytest.raises(RingFileError, match="truncated"):
        RingData.load(path)


def test_trailing_data_is_a_ring_file_error(tmp_path):
    path = tmp_path / "r.ring.gz"
    _ring().save(path)
    _write_gz(path, _gz_bytes(path) + b"\x00\x00")
    with pytest.raises(RingFileError, match="trailing"):
        RingData.load(path)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"HNR",
        b"\x80\x04\x95pickle, maybe a swift ring",
        struct.pack(">4sHI", b"RING", 1, 0),
    ],
)
def test_foreign_or_empty_content_is_a_ring_file_error(tmp_path, raw):
    path = tmp_path / "r.ring.gz"
    _write_gz(path, raw)
    with pytest.raises(RingFileError):
        RingData.load(path)


def test_future_format_version_is_refused(tmp_path):
    path = tmp_path / "r.ring.gz"
    _ring().save(path)
    raw = bytearray(_gz_bytes(path))
    struct.pack_into(">H", raw, 4, FORMAT_VERSION + 1)
    _write_gz(path, bytes(raw))
    with pytest.raises(RingFileError, match="version"):
        RingData.load(path)


@pytest.mark.parametrize(
    "header",
    [
        b"{not json",
        json.dumps({"part_power": 4}).encode(),
        json.dumps(
            {"part_power": 4, "typecode": "Q", "row_lengths": [], "devs": [], "replica_count": 0}
        ).encode(),
    ],
)
def test_corrupt_header_is_a_ring_file_error(tmp_path, header):
    path = tmp_path / "r.ring.gz"
    _write_gz(path, struct.pack(">4sHI", MAGIC, FORMAT_VERSION, len(header)) + header)
    with pytest.raises(RingFileError):
        RingData.load(path)
