"""The sending end of SSYNC (see object_server.ssync for the protocol).

``Sender(...).sync(states)`` offers a partition's objects (ObjectStates, typically those
of the suffixes that differ) to one remote device and streams it the files it wants.
Files are read through DiskFile at the moment they are sent, so an object that changed
since it was listed is sent as it is now (or skipped if it is gone).
"""

import logging
from itertools import islice

from common.backend import BackendConnection, BackendError
from object_server import ssync
from object_server.diskfile import DiskFileDeleted, DiskFileError, DiskFileNotExist


class SyncError(Exception):
    """The remote could not be synced (unreachable, an error status, a bad answer)."""


class SyncResult:
    """What one sync did: objects offered, objects (and files) sent, hashes that failed."""

    __slots__ = ("offered", "objects_sent", "files_sent", "failed")

    def __init__(self):
        self.offered = 0
        self.objects_sent = 0
        self.files_sent = 0
        self.failed = {}


class _Frame:
    """One file to send: its header bytes and, for data, its length and reader."""

    __slots__ = ("obj_hash", "head", "length", "reader")

    def __init__(self, obj_hash, kind, metadata, length=0, reader=None):
        self.obj_hash = obj_hash
        self.head = ssync.frame_header(obj_hash, kind, metadata, length)
        self.length = length
        self.reader = reader

    @property
    def size(self):
        return len(self.head) + self.length

    def close(self):
        if self.reader is not None:
            self.reader.close()


def _batches(iterable, size):
    iterator = iter(iterable)
    while batch := list(islice(iterator, size)):
        yield batch


class Sender:
    """Pushes one local partition's objects to one remote device (a ring node dict)."""

    def __init__(
        self,
        diskfiles,
        node,
        dev_path,
        partition,
        policy_index,
        conn_timeout=0.5,
        node_timeout=10.0,
        logger=None,
    ):
        self.diskfiles = diskfiles
        self.node = node
        self.dev_path = dev_path
        self.partition = partition
        self.policy_index = policy_index
        self.conn_timeout = conn_timeout
        self.node_timeout = node_timeout
        self.logger = logger or logging.getLogger("object-replicator")

    def sync(self, states):
        """Offer ``states`` and send what the remote wants; a SyncResult (SyncError if the
        remote cannot be talked to). Hashes in ``result.failed`` were refused."""
        result = SyncResult()
        for batch in _batches(states, ssync.CHECK_BATCH):
            result.offered += len(batch)
            wants = self.check(batch)
            todo = [(s, wants[s.hash]) for s in batch if wants.get(s.hash)]
            for group in _batches(todo, ssync.UPDATE_BATCH):
                self.update(group, result)
        return result

    def _headers(self, phase, length):
        return {
            "X-Backend-Storage-Policy-Index": str(self.policy_index),
            "X-Backend-Server-Type": "object",
            ssync.PHASE_HEADER: phase,
            "Content-Length": str(length),
            "Content-Type": "application/x-msgpack",
        }

    def _open(self, phase, length):
        try:
            return BackendConnection.open(
                self.node,
                "SSYNC",
                f"/{self.partition}",
                self._headers(phase, length),
                self.conn_timeout,
                self.node_timeout,
            )
        except BackendError as err:
            raise SyncError(str(err)) from None

    def _answer(self, conn, kind=dict):
        try:
            resp = conn.getresponse()
            body = conn.read(ssync.MAX_ANSWER + 1)
        except BackendError as err:
            raise SyncError(str(err)) from None
        finally:
            conn.close()
        if resp.status != 200:
            raise SyncError(f"{self._where()}: SSYNC answered {resp.status}: {body[:200]!r}")
        try:
            return ssync.unpack_answer(body, kind)
        except ssync.ProtocolError as err:
            raise SyncError(f"{self._where()}: {err}") from None

    def _where(self):
        return f"{self.node['ip']}:{self.node['port']}/{self.node['device']}/{self.partition}"

    def check(self, states):
        """``{hash: "d" | "m" | "dm"}``: what the remote wants of these objects."""
        body = ssync.pack_check(states)
        conn = self._open(ssync.CHECK, len(body))
        try:
            conn.send(body)
        except BackendError as err:
            raise SyncError(str(err)) from None
        wants = self._answer(conn)
        return {h: w for h, w in wants.items() if isinstance(w, str)}

    def update(self, todo, result):
        """Send the files of ``[(state, wants)]`` in one request; tally into ``result``."""
        frames = []
        try:
            for state, wants in todo:
                frames.extend(self._frames(state.hash, wants))
            if not frames:
                return
            conn = self._open(ssync.UPDATE, sum(f.size for f in frames))
            try:
                for frame in frames:
                    self._send_frame(conn, frame)
            except BackendError as err:
                raise SyncError(str(err)) from None
            except BaseException:
                conn.close()
                raise
            answer = self._answer(conn)
        finally:
            for frame in frames:
                frame.close()
        failed = answer.get("failed") or {}
        result.failed.update(failed)
        sent = {f.obj_hash for f in frames}
        result.objects_sent += len(sent - set(failed))
        result.files_sent += sum(1 for f in frames if f.obj_hash not in failed)

    def _send_frame(self, conn, frame):
        conn.send(frame.head)
        if frame.reader is None:
            return
        sent = 0
        for chunk in frame.reader:
            conn.send(chunk)
            sent += len(chunk)
        if sent != frame.length:
            # The file was cut short under us (and quarantined): the request can't be
            # completed honestly, so drop it; the remote keeps what came before.
            conn.close()
            raise SyncError(f"{frame.obj_hash}: read {sent} of {frame.length} bytes")

    def _frames(self, obj_hash, wants):
        """The frames that give the remote what it wants of one object, as it is now."""
        df = self.diskfiles.get_diskfile_from_hash(
            self.dev_path, self.partition, obj_hash, self.policy_index
        )
        try:
            df.open(check_expiry=False)
        except DiskFileDeleted as err:
            if "d" in wants and err.timestamp is not None:
                return [_Frame(obj_hash, "tombstone", {"X-Timestamp": err.timestamp.internal})]
            return []
        except DiskFileNotExist:
            return []  # gone (or quarantined) since it was listed
        except DiskFileError as err:
            self.logger.warning("ssync: cannot read %s: %s", df.datadir, err)
            return []
        with df:
            frames = []
            if "d" in wants:
                metadata = df.get_datafile_metadata()
                frames.append(_Frame(obj_hash, "data", metadata, df.content_length, df.reader()))
            meta = df.get_meta_metadata()
            if "m" in wants and meta is not None:
                frames.append(_Frame(obj_hash, "meta", meta))
            return frames
