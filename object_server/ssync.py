"""The SSYNC verb: how a replicator pushes objects to another object server over HTTP.

A sync of some suffixes of a partition is a run of batches; each batch is two requests,
both ``SSYNC /<device>/<partition>`` with ``X-Backend-Storage-Policy-Index`` and
``X-Backend-Ssync-Phase``, and both with a ``Content-Length`` body:

1. ``check``: the body is a msgpack list of ``[hash, timestamp, deleted, meta_timestamp]``
   (what the sender holds: the timestamp of its .data or tombstone, whether it is a
   tombstone, the timestamp of a newer .meta or nil; timestamps in their internal
   form). The receiver answers 200 with a msgpack map of only the hashes it lacks or
   holds older, each to what it wants: ``"d"`` (the .data or tombstone), ``"m"`` (the
   .meta) or ``"dm"``.
2. ``update``: the body is a run of frames, one a file: a 4-byte big-endian length, a
   msgpack header ``{"hash", "kind": "data" | "tombstone" | "meta", "metadata": {...},
   "length": n}``, then ``n`` bytes of the object (data frames only; 0 otherwise). The
   receiver writes each file through the diskfile writer (temp file, fsync, rename, the
   sender's timestamp kept, the suffix marked for rehashing), checks a data frame's
   bytes against its ETag, and answers 200 with msgpack
   ``{"written": count, "failed": {hash: reason}}``.

Memory stays bounded on both sides: at most ``CHECK_BATCH`` objects are compared per
check, at most ``UPDATE_BATCH`` objects are sent per update (their files are opened
before it starts, so its length is known), and object bytes are streamed.
"""

import struct

import msgpack

from common.timestamp import InvalidTimestamp, Timestamp

PHASE_HEADER = "X-Backend-Ssync-Phase"
CHECK = "check"
UPDATE = "update"
CHECK_BATCH = 1000
UPDATE_BATCH = 32
MAX_CHECK_BODY = 4 * 1024 * 1024  # CHECK_BATCH entries take about 100 KiB
MAX_ANSWER = 4 * 1024 * 1024
MAX_FRAME_HEADER = 64 * 1024  # metadata is at most a few KiB
FRAME_LENGTH = struct.Struct(">I")
KINDS = ("data", "tombstone", "meta")


class ProtocolError(Exception):
    """A sync message that does not follow the protocol."""


# -- the check phase -----------------------------------------------------------------------


def pack_check(states):
    """The body of a check request for some ObjectStates."""
    return msgpack.packb(
        [
            [
                s.hash,
                s.timestamp.internal,
                s.deleted,
                s.meta_timestamp.internal if s.meta_timestamp else None,
            ]
            for s in states
        ],
        use_bin_type=True,
    )


def unpack_check(body):
    """``[(hash, timestamp, deleted, meta_timestamp or None)]`` from a check body."""
    try:
        entries = msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise ProtocolError(f"check body is not msgpack: {err}") from None
    if not isinstance(entries, list):
        raise ProtocolError("check body is not a list")
    parsed = []
    for entry in entries:
        if not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[0], str):
            raise ProtocolError(f"bad check entry {entry!r:.100}")
        obj_hash, timestamp, deleted, meta_timestamp = entry
        parsed.append(
            (
                obj_hash,
                _timestamp(timestamp),
                bool(deleted),
                None if meta_timestamp is None else _timestamp(meta_timestamp),
            )
        )
    return parsed


def _timestamp(value):
    try:
        return Timestamp(value)
    except (InvalidTimestamp, TypeError, ValueError):
        raise ProtocolError(f"bad timestamp {value!r:.60}") from None


def wanted(sender, local):
    """What a receiver holding ``local`` wants of the sender's copy: "", "d", "m" or "dm".

    Both are ``(timestamp, deleted, meta_timestamp)``; ``local`` is None when the
    receiver has nothing. Newest wins; at one instant a tombstone beats data (as on
    disk). A .meta is only worth having on top of data, and only if newer than what
    the receiver will hold.
    """
    sender_ts, sender_deleted, sender_meta = sender
    if local is None:
        want_data, local_meta = True, None
    else:
        local_ts, local_deleted, local_meta = local
        want_data = sender_ts > local_ts or (
            sender_ts == local_ts and sender_deleted and not local_deleted
        )
    if want_data:
        base_ts, base_deleted = sender_ts, sender_deleted
    else:
        base_ts, base_deleted = local_ts, local_deleted
    want_meta = (
        sender_meta is not None
        and not base_deleted
        and sender_meta > base_ts
        and (local_meta is None or sender_meta > local_meta)
    )
    return ("d" if want_data else "") + ("m" if want_meta else "")


def pack_answer(answer):
    return msgpack.packb(answer, use_bin_type=True)


def unpack_answer(body, kind=dict):
    """A msgpack answer of the receiver, checked to be a ``kind``."""
    try:
        answer = msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise ProtocolError(f"answer is not msgpack: {err}") from None
    if not isinstance(answer, kind):
        raise ProtocolError(f"answer is not a {kind.__name__}")
    return answer


# -- the update phase -----------------------------------------------------------------------


def frame_header(obj_hash, kind, metadata, length=0):
    """The bytes that start a frame: its length prefix and msgpack header."""
    header = msgpack.packb(
        {"hash": obj_hash, "kind": kind, "metadata": metadata, "length": length},
        use_bin_type=True,
    )
    return FRAME_LENGTH.pack(len(header)) + header


def parse_frame_header(data):
    """``(hash, kind, metadata, length)`` of a frame's msgpack header."""
    try:
        header = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise ProtocolError(f"frame header is not msgpack: {err}") from None
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a map")
    obj_hash = header.get("hash")
    kind = header.get("kind")
    metadata = header.get("metadata")
    length = header.get("length")
    if not isinstance(obj_hash, str) or kind not in KINDS:
        raise ProtocolError(f"bad frame hash or kind: {obj_hash!r:.60} {kind!r:.20}")
    if not isinstance(length, int) or length < 0 or (length and kind != "data"):
        raise ProtocolError(f"bad frame length {length!r:.20} for {kind}")
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ProtocolError("frame metadata is not a map of strings")
    return obj_hash, kind, metadata, length
