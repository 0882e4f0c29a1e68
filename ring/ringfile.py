"""The ring file: what the builder hands to every server.

Layout, all inside one gzip stream:

    b"HNRG"                      magic
    uint16 big-endian            format version (1)
    uint32 big-endian            length of the JSON header
    JSON header                  {"part_power", "replica_count", "devs", "typecode",
                                  "row_lengths"}
    one packed array per replica row, little-endian, of "H" (< 65,536 devices) or "I"

A row maps partition -> device id; a fractional replica count makes the last row
shorter than 2 ** part_power.
"""

import gzip
import json
import os
import struct
import sys
from array import array

from common.fileops import atomic_write_bytes

MAGIC = b"HNRG"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct(">4sHI")


class RingFileError(Exception):
    """A ring file that is missing, corrupt or not a Haneul ring."""


class RingData:
    """The lookup table of a ring: devices and the replica -> partition -> device rows."""

    __slots__ = ("part_power", "devs", "replica2part2dev")

    def __init__(self, part_power, devs, replica2part2dev):
        self.part_power = part_power
        self.devs = devs
        self.replica2part2dev = replica2part2dev

    @property
    def replica_count(self):
        """Replicas as a float: full rows plus the fraction of the last partial row."""
        parts = 1 << self.part_power
        return sum(len(row) for row in self.replica2part2dev) / parts

    def to_bytes(self):
        """Serialize into the (uncompressed) ring file layout."""
        max_id = max((d["id"] for d in self.devs if d is not None), default=0)
        typecode = "H" if max_id < 0xFFFF else "I"
        header = {
            "part_power": self.part_power,
            "replica_count": self.replica_count,
            "devs": self.devs,
            "typecode": typecode,
            "row_lengths": [len(row) for row in self.replica2part2dev],
        }
        blob = json.dumps(header, sort_keys=True).encode("utf-8")
        chunks = [_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(blob)), blob]
        for row in self.replica2part2dev:
            packed = row if row.typecode == typecode else array(typecode, row)
            if sys.byteorder != "little":
                packed = array(typecode, packed)
                packed.byteswap()
            chunks.append(packed.tobytes())
        return b"".join(chunks)

    def save(self, path):
        """Write the gzipped ring file atomically (temp file, fsync, rename)."""
        # mtime=0 keeps the file byte-identical for identical rings.
        atomic_write_bytes(path, gzip.compress(self.to_bytes(), compresslevel=6, mtime=0))

    @classmethod
    def load(cls, path):
        """Read a ring file; anything that is not a valid Haneul ring is a RingFileError."""
        try:
            with open(path, "rb") as fp:
                raw = gzip.decompress(fp.read())
        except FileNotFoundError:
            raise RingFileError(f"ring file not found: {path}") from None
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise RingFileError(f"{path} is not a ring file (bad gzip: {err})") from None
        return cls.from_bytes(raw, path)

    @classmethod
    def from_bytes(cls, raw, name="ring"):
        """Parse the uncompressed layout."""
        if len(raw) < _PREAMBLE.size:
            raise RingFileError(f"{name} is not a ring file (too short)")
        magic, version, header_len = _PREAMBLE.unpack_from(raw)
        if magic != MAGIC:
            raise RingFileError(f"{name} is not a Haneul ring file (bad magic {magic!r})")
        if version != FORMAT_VERSION:
            raise RingFileError(f"{name} has ring format version {version}, not {FORMAT_VERSION}")
        start = _PREAMBLE.size
        try:
            header = json.loads(raw[start : start + header_len])
            part_power = int(header["part_power"])
            typecode = header["typecode"]
            row_lengths = [int(n) for n in header["row_lengths"]]
            devs = header["devs"]
        except (ValueError, KeyError, TypeError) as err:
            raise RingFileError(f"{name} has a corrupt header: {err}") from None
        if typecode not in ("H", "I"):
            raise RingFileError(f"{name} has an unknown array type {typecode!r}")
        offset = start + header_len
        itemsize = array(typecode).itemsize
        rows = []
        for length in row_lengths:
            end = offset + length * itemsize
            if end > len(raw):
                raise RingFileError(f"{name} is truncated")
            row = array(typecode)
            row.frombytes(raw[offset:end])
            if sys.byteorder != "little":
                row.byteswap()
            rows.append(row)
            offset = end
        if offset != len(raw):
            raise RingFileError(f"{name} has trailing data")
        return cls(part_power, devs, rows)


def ring_mtime(path):
    """The file's modification time, or None if it is gone (used to notice reloads)."""
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None
