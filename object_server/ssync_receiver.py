"""The receiving end of SSYNC (see object_server.ssync for the protocol).

``handle_ssync(app, req)`` answers one ``SSYNC /<device>/<partition>`` request for the
object server ``app``: a check (what of the sender's objects this device lacks) or an
update (files to write). Every file is written through the diskfile writer, exactly
as a PUT, POST or DELETE would leave it, with the sender's timestamp. An older file
than what is on disk is harmless: the writer's cleanup removes whichever is obsolete.
"""

import hashlib

from webob import Response

from common.devices import device_path
from common.hashing import hash_path
from common.http import HTTPError, request_path, split_path
from common.timestamp import InvalidTimestamp, Timestamp
from object_server import layout, ssync
from object_server.diskfile import DiskFileNoSpace
from object_server.filenames import DATA, META, TOMBSTONE
from object_server.hashes import LockTimeout

EXTENSIONS = {"data": DATA, "tombstone": TOMBSTONE, "meta": META}


class _Truncated(Exception):
    """The request body ended before its frames did."""


class _Body:
    """Exact reads from a request body of known length."""

    def __init__(self, stream, length):
        self.stream = stream
        self.remaining = length

    def read(self, size):
        """Up to ``size`` bytes (fewer only at the end of the body)."""
        size = min(size, self.remaining)
        if size <= 0:
            return b""
        try:
            chunk = self.stream.read(size)
        except TimeoutError:
            raise HTTPError(408, "timed out reading the sync body") from None
        except (OSError, ValueError) as err:
            raise HTTPError(499, f"sender disconnected: {err}") from None
        if not chunk:
            raise _Truncated()
        self.remaining -= len(chunk)
        return chunk

    def read_exact(self, size):
        parts = []
        while size > 0:
            chunk = self.read(size)
            if not chunk:
                raise _Truncated()
            parts.append(chunk)
            size -= len(chunk)
        return b"".join(parts)


def _content_length(req):
    value = req.environ.get("CONTENT_LENGTH")
    if value is None or not value.strip():
        raise HTTPError(411, "SSYNC needs a Content-Length")
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise HTTPError(400, f"bad Content-Length {value[:40]!r}")
    return int(value)


def _answer(payload):
    body = ssync.pack_answer(payload)
    return Response(
        status="200 OK",
        headerlist=[("Content-Type", "application/x-msgpack"), ("Content-Length", str(len(body)))],
        app_iter=[body],
    )


def handle_ssync(app, req):
    """Answer one SSYNC request for the object server ``app``."""
    device, partition = split_path(request_path(req), 2, 2)
    part = app._partition(partition)
    policy_index = app._policy_index(req)
    phase = req.headers.get(ssync.PHASE_HEADER, "").strip().lower()
    if phase not in (ssync.CHECK, ssync.UPDATE):
        raise HTTPError(400, f"bad or missing {ssync.PHASE_HEADER}")
    length = _content_length(req)
    dev_path = device_path(app.devices, device, app.mount_check)
    body = _Body(req.environ["wsgi.input"], length)
    receiver = Receiver(app, dev_path, part, policy_index)
    try:
        if phase == ssync.CHECK:
            return _answer(receiver.check(body))
        return _answer(receiver.update(body))
    except _Truncated:
        raise HTTPError(499, "sync body ended early") from None
    except ssync.ProtocolError as err:
        raise HTTPError(400, str(err)) from None
    except LockTimeout as err:
        raise HTTPError(503, str(err)) from None


class Receiver:
    """One device's partition, taking what a sender offers."""

    def __init__(self, app, dev_path, partition, policy_index):
        self.diskfiles = app.diskfiles
        self.chunk_size = app.network_chunk_size
        self.logger = app.logger
        self.dev_path = dev_path
        self.partition = partition
        self.policy_index = policy_index

    def check(self, body):
        """``{hash: wants}`` for the offered objects this device lacks or holds older."""
        if body.remaining > ssync.MAX_CHECK_BODY:
            raise HTTPError(413, f"check body larger than {ssync.MAX_CHECK_BODY} bytes")
        offered = ssync.unpack_check(body.read_exact(body.remaining))
        answer = {}
        for obj_hash, timestamp, deleted, meta_timestamp in offered:
            if not layout.is_hash(obj_hash):
                raise ssync.ProtocolError(f"not an object hash: {obj_hash!r:.60}")
            state = self.diskfiles.object_state(
                self.dev_path, self.partition, self.policy_index, obj_hash
            )
            local = None
            if state is not None:
                local = (state.timestamp, state.deleted, state.meta_timestamp)
            wants = ssync.wanted((timestamp, deleted, meta_timestamp), local)
            if wants:
                answer[obj_hash] = wants
        return answer

    def update(self, body):
        """Write every frame of the body; ``{"written": n, "failed": {hash: reason}}``."""
        written = 0
        failed = {}
        while body.remaining:
            size = ssync.FRAME_LENGTH.unpack(body.read_exact(ssync.FRAME_LENGTH.size))[0]
            if size > ssync.MAX_FRAME_HEADER:
                raise ssync.ProtocolError(f"frame header of {size} bytes")
            obj_hash, kind, metadata, length = ssync.parse_frame_header(body.read_exact(size))
            problem = self._problem(obj_hash, kind, metadata, length)
            if problem is None:
                problem = self._write(obj_hash, kind, metadata, length, body)
            else:
                _skip(body, length)
            if problem is None:
                written += 1
            else:
                self.logger.warning(
                    "ssync: not writing %s of %s in %s/%s: %s",
                    kind,
                    obj_hash,
                    self.dev_path,
                    self.partition,
                    problem,
                )
                failed[obj_hash] = problem
        return {"written": written, "failed": failed}

    def _problem(self, obj_hash, kind, metadata, length):
        """Why a frame cannot be written as it is, or None."""
        if not layout.is_hash(obj_hash):
            return "not an object hash"
        try:
            Timestamp(metadata.get("X-Timestamp", ""))
        except InvalidTimestamp:
            return "missing or bad X-Timestamp"
        name = metadata.get("name")
        if name is not None:
            names = name.split("/", 3)
            if len(names) != 4 or names[0] or not all(names[1:]):
                return f"bad name {name[:80]!r}"
            if hash_path(*names[1:], secrets=self.diskfiles.hash_secrets) != obj_hash:
                return "name does not hash to this object"
        if kind == "data":
            if name is None or not metadata.get("ETag"):
                return "data without a name or ETag"
            if metadata.get("Content-Length") != str(length):
                return "Content-Length does not match the frame"
        return None

    def _write(self, obj_hash, kind, metadata, length, body):
        """Write one frame's file (consuming its bytes); None, or what went wrong."""
        df = self.diskfiles.get_diskfile_from_hash(
            self.dev_path, self.partition, obj_hash, self.policy_index
        )
        remaining = length
        try:
            with df.create(size=length or None) as writer:
                md5 = hashlib.md5(usedforsecurity=False)
                while remaining:
                    chunk = body.read(min(self.chunk_size, remaining))
                    if not chunk:
                        raise _Truncated()
                    remaining -= len(chunk)
                    md5.update(chunk)
                    writer.write(chunk)
                if kind == "data" and md5.hexdigest() != metadata["ETag"].lower():
                    return "bytes do not match the ETag"
                writer.put(metadata, EXTENSIONS[kind])
        except DiskFileNoSpace:
            _skip(body, remaining)
            return "no space left on device"
        except OSError as err:
            _skip(body, remaining)
            return f"cannot write: {err}"
        return None


def _skip(body, length):
    while length > 0:
        chunk = body.read(min(length, 65536))
        if not chunk:
            raise _Truncated()
        length -= len(chunk)
