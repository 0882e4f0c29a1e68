"""The builder file: a RingBuilder's state as msgpack behind a magic and a version.

Layout::

    b"HNRB"                 magic
    uint16 big-endian       format version (1)
    msgpack map             kind "haneul-ring-builder", part_power, replicas,
                            min_part_hours, overload, version, devs [dev or nil],
                            removing [dev ids], table nil | [one bytes per replica row,
                            int32 little-endian, -1 = unassigned], last_moved (bytes,
                            uint32 little-endian: the hour each partition last moved)

Never pickle: reading a builder file must not be able to run code.
"""

import struct
import sys
from array import array

import msgpack

MAGIC = b"HNRB"
FORMAT_VERSION = 1
KIND = "haneul-ring-builder"
KEYS = (
    "part_power",
    "replicas",
    "min_part_hours",
    "overload",
    "version",
    "devs",
    "removing",
    "table",
    "last_moved",
)
_PREAMBLE = struct.Struct(">4sH")


class BuilderFormatError(ValueError):
    """Bytes that are not a readable builder file; the message is one line."""


def encode(record):
    """The file bytes for ``record`` (KEYS; ``table`` rows and ``last_moved`` arrays)."""
    data = {key: record[key] for key in KEYS}
    data["kind"] = KIND
    data["table"] = None if record["table"] is None else [_pack(row) for row in record["table"]]
    data["last_moved"] = _pack(record["last_moved"])
    return _PREAMBLE.pack(MAGIC, FORMAT_VERSION) + msgpack.packb(data, use_bin_type=True)


def read(path):
    """The record in the builder file at ``path`` (see :func:`decode`)."""
    try:
        with open(path, "rb") as fp:
            raw = fp.read()
    except FileNotFoundError:
        raise BuilderFormatError(f"builder file not found: {path}") from None
    except OSError as err:
        raise BuilderFormatError(f"cannot read builder file {path}: {err.strerror}") from None
    return decode(raw, path)


def decode(raw, name="builder"):
    """Parse file bytes into a record: the KEYS, with ``table`` rows as ``array('i')``
    and ``last_moved`` as ``array('I')``. The values are not checked beyond their
    types; the builder does that."""
    if raw[:2] == b"\x1f\x8b":
        raise BuilderFormatError(f"{name} is gzip data (a ring file?), not a builder file")
    if raw[:1] == b"\x80":
        raise BuilderFormatError(
            f"{name} looks like a pickle (a Swift builder?); Haneul builders are msgpack"
        )
    if len(raw) < _PREAMBLE.size or raw[:4] != MAGIC:
        raise BuilderFormatError(f"{name} is not a Haneul ring builder file (bad magic)")
    _, version = _PREAMBLE.unpack_from(raw)
    if version != FORMAT_VERSION:
        raise BuilderFormatError(
            f"{name} has builder format version {version}; this code reads {FORMAT_VERSION}"
        )
    try:
        data = msgpack.unpackb(raw[_PREAMBLE.size :], raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as err:
        raise BuilderFormatError(f"{name} is corrupt: {type(err).__name__}: {err}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise BuilderFormatError(f"{name} is corrupt: not a ring builder record")
    missing = [key for key in KEYS if key not in data]
    if missing:
        raise BuilderFormatError(f"{name} is corrupt: missing {', '.join(missing)}")
    table = data["table"]
    if table is not None and not isinstance(table, list):
        raise BuilderFormatError(f"{name} is corrupt: the table is not a list")
    try:
        record = {key: data[key] for key in KEYS}
        record["table"] = None if table is None else [_unpack(row, "i") for row in table]
        record["last_moved"] = _unpack(data["last_moved"], "I")
    except BuilderFormatError as err:
        raise BuilderFormatError(f"{name} is corrupt: {err}") from None
    return record


def _pack(values):
    """An int array as little-endian bytes."""
    if sys.byteorder != "little":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _unpack(blob, typecode):
    if not isinstance(blob, bytes):
        raise BuilderFormatError(f"expected array bytes, found {type(blob).__name__}")
    values = array(typecode)
    if len(blob) % values.itemsize:
        raise BuilderFormatError("array bytes of a bad length")
    values.frombytes(blob)
    if sys.byteorder != "little":
        values.byteswap()
    return values
