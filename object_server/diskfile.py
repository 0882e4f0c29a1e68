"""Objects on disk: the one seam through which object files are found, read and written.

- ``DiskFileManager`` finds objects on a device (by name or by hash), answers suffix
  hashes and lists partitions' objects for replication, deletes a handoff's copies,
  cleans ``tmp/`` and quarantines corrupt hash dirs.
- ``DiskFile`` is one object: ``open()`` reads its current state (data + newest POST
  metadata, or a tombstone), ``reader()`` streams its bytes, ``create()`` starts a new
  ``.data``, ``write_metadata()`` adds a ``.meta``, ``delete()`` writes a ``.ts``.
- ``DiskFileWriter`` streams into ``<dev>/tmp``, hashing on the way; ``put()`` stores
  the metadata, fsyncs, renames into the hash dir, fsyncs the dir, removes what the new
  file made obsolete and marks the suffix for rehashing.
- ``DiskFileReader`` yields the bytes (never the metadata footer), whole or by ranges.

Errors are exceptions callers map to HTTP: ``DiskFileNotExist`` and its kinds (deleted,
expired, quarantined) are 404, ``DiskFileNoSpace`` is 507.
"""

import errno
import hashlib
import logging
import os
import tempfile
import time
import uuid

from common.byteranges import multipart_body
from common.concurrency import run_in_thread
from common.fileops import durable_rename, fsync_dir, makedirs
from common.hashing import hash_path, load_hash_secrets
from common.timestamp import Timestamp
from object_server import layout
from object_server.filenames import DATA, META, TOMBSTONE, gather, make_filename
from object_server.hashes import (
    cleanup_hash_dir,
    get_hashes,
    hash_suffix,
    invalidate_hash,
    list_partitions,
    purge_files,
    read_object_state,
    remove_empty_partition,
    yield_object_states,
)
from object_server.metadata import MetadataError, read_metadata, write_metadata

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DEFAULT_CHUNK_SIZE = 65536
DEFAULT_RECLAIM_AGE = 7 * 24 * 3600
# Objects larger than this leave the page cache once written (keep_cache_size).
DEFAULT_KEEP_CACHE_SIZE = 4 * 1024 * 1024
FALLOCATE_FROM = 65536  # bytes: smaller bodies are written without reserving space first
OPEN_ATTEMPTS = 3
# Keys of a .data file's metadata that a POST's .meta does not replace.
# Kept from the .data when a POST replaces the metadata (a manifest stays a manifest).
DATAFILE_KEYS = frozenset(
    {"name", "content-length", "etag", "content-type", "x-static-large-object"}
)
SYSMETA_PREFIX = "x-object-sysmeta-"
IMMUTABLE_KEYS = ("name", "Content-Length", "ETag")


class DiskFileError(Exception):
    """Something is wrong with an object on disk."""


class DiskFileNotExist(DiskFileError):
    """No current object. ``timestamp`` is that of whatever state is there, if any."""

    def __init__(self, msg="object does not exist", timestamp=None, metadata=None):
        super().__init__(msg)
        self.timestamp = timestamp
        self.metadata = metadata or {}


class DiskFileDeleted(DiskFileNotExist):
    """The newest state is a tombstone."""


class DiskFileExpired(DiskFileNotExist):
    """The object's X-Delete-At has passed. ``data_timestamp`` is its data's."""

    def __init__(self, msg, timestamp, metadata, data_timestamp):
        super().__init__(msg, timestamp, metadata)
        self.data_timestamp = data_timestamp


class DiskFileQuarantined(DiskFileNotExist):
    """The object was found corrupt and moved aside."""


class DiskFileCollision(DiskFileError):
    """The hash dir holds another name (a hash collision, or a badly moved file)."""


class DiskFileNoSpace(DiskFileError):
    """The device is full (ENOSPC or EDQUOT); nothing partial was left behind."""


def is_no_space(err):
    return isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS


def merge_metadata(data_metadata, meta_metadata):
    """The object's metadata: the .data's system keys overlaid with the newest .meta.

    A POST replaces user metadata, transient sysmeta and the other POSTable headers
    (so a key it does not name is gone); it may set Content-Type and sysmeta; it can
    never change the name, length or ETag. Without a .meta (None) it is the data's.
    """
    if meta_metadata is None:
        return dict(data_metadata)
    merged = {
        key: value
        for key, value in data_metadata.items()
        if key.lower() in DATAFILE_KEYS or key.lower().startswith(SYSMETA_PREFIX)
    }
    merged.update(meta_metadata)
    for key in IMMUTABLE_KEYS:
        if key in data_metadata:
            merged[key] = data_metadata[key]
    return merged


class DiskFileManager:
    """Finds and makes DiskFiles on devices; what a server or replicator holds on to.

    ``diskfile_class`` and ``suffix_hasher`` are what an erasure-coded policy's manager
    (object_server.ec_diskfile) replaces.
    """

    suffix_hasher = staticmethod(hash_suffix)

    @staticmethod
    def new_checksum():
        """The running checksum a writer keeps of a .data's bytes (its ``ETag``): the
        object's MD5, which is what the API promises for a whole object."""
        return hashlib.md5(usedforsecurity=False)

    @property
    def diskfile_class(self):
        return DiskFile

    def __init__(
        self,
        hash_secrets=None,
        disk_chunk_size=DEFAULT_CHUNK_SIZE,
        reclaim_age=DEFAULT_RECLAIM_AGE,
        logger=None,
        keep_cache_size=DEFAULT_KEEP_CACHE_SIZE,
    ):
        self._hash_secrets = hash_secrets
        self.disk_chunk_size = disk_chunk_size
        self.keep_cache_size = keep_cache_size
        self.reclaim_age = reclaim_age
        self.logger = logger or logging.getLogger("haneul.object.diskfile")

    @property
    def hash_secrets(self):
        if self._hash_secrets is None:
            self._hash_secrets = load_hash_secrets()
        return self._hash_secrets

    def get_diskfile(self, dev_path, partition, account, container, obj, policy_index=0):
        """The DiskFile of ``/account/container/obj`` in ``partition`` on a device."""
        obj_hash = hash_path(account, container, obj, secrets=self.hash_secrets)
        name = f"/{account}/{container}/{obj}"
        return self.diskfile_class(self, dev_path, partition, policy_index, obj_hash, name)

    def get_diskfile_from_hash(self, dev_path, partition, obj_hash, policy_index=0):
        """The DiskFile of a hash dir whose name we don't know (replication)."""
        if not layout.is_hash(obj_hash):
            raise ValueError(f"not an object hash: {obj_hash!r}")
        return self.diskfile_class(self, dev_path, partition, policy_index, obj_hash, None)

    def get_hashes(self, dev_path, partition, policy_index=0, recalculate=()):
        """``{suffix: md5-hex}`` of a partition (see object_server.hashes)."""
        return get_hashes(
            dev_path, partition, policy_index, recalculate, self.reclaim_age, self.suffix_hasher
        )

    # -- replication: what a partition holds, and moving a handoff's copy away -----------

    def partitions(self, dev_path, policy_index=0):
        """The partition numbers that have a directory on a device, sorted."""
        return list_partitions(layout.objects_dir(dev_path, policy_index))

    def yield_hashes(self, dev_path, partition, policy_index=0, suffixes=None):
        """An ObjectState per object of a partition (or of some of its suffixes)."""
        part_dir = layout.partition_dir(dev_path, partition, policy_index)
        return yield_object_states(part_dir, suffixes)

    def object_state(self, dev_path, partition, policy_index, obj_hash):
        """The ObjectState of one object; None if it has no data file or tombstone."""
        return read_object_state(layout.hash_dir(dev_path, partition, policy_index, obj_hash))

    def purge(self, dev_path, partition, policy_index, obj_hash, filenames):
        """Delete the named files of an object (see object_server.hashes.purge_files)."""
        purge_files(layout.hash_dir(dev_path, partition, policy_index, obj_hash), filenames)

    def remove_partition_if_empty(self, dev_path, partition, policy_index=0):
        """Rehash a partition and delete its directory if no object is left; True if gone."""
        self.get_hashes(dev_path, partition, policy_index)
        return remove_empty_partition(layout.partition_dir(dev_path, partition, policy_index))

    def quarantine(self, dev_path, policy_index, hash_dir, reason=""):
        """Move a hash dir to ``<dev>/quarantined/objects[-N]/<hash>``; return where to."""
        obj_hash = os.path.basename(hash_dir.rstrip("/"))
        target_dir = layout.quarantine_dir(dev_path, policy_index)
        makedirs(target_dir)
        target = os.path.join(target_dir, obj_hash)
        try:
            os.rename(hash_dir, target)
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            target = f"{target}-{uuid.uuid4().hex}"
            os.rename(hash_dir, target)
        self.logger.warning("quarantined %s to %s: %s", hash_dir, target, reason)
        invalidate_hash(os.path.dirname(hash_dir.rstrip("/")))
        return target

    def cleanup_tmp(self, dev_path, older_than):
        """Remove files in ``<dev>/tmp`` older than ``older_than`` seconds (crash leftovers)."""
        tmp = layout.tmp_dir(dev_path)
        cutoff = time.time() - older_than
        removed = 0
        try:
            names = os.listdir(tmp)
        except FileNotFoundError:
            return 0
        for name in names:
            path = os.path.join(tmp, name)
            try:
                if os.stat(path).st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
            except (FileNotFoundError, IsADirectoryError):
                continue
        return removed


class DiskFile:
    """One object on one device. Open it to read its state; create/delete to write."""

    def __init__(self, manager, dev_path, partition, policy_index, obj_hash, name):
        self.manager = manager
        self.dev_path = dev_path
        self.partition = int(partition)
        self.policy_index = int(policy_index)
        self.hash = obj_hash
        self.name = name
        self.datadir = layout.hash_dir(dev_path, partition, policy_index, obj_hash)
        self._fd = None
        self._metadata = None
        self._datafile_metadata = None
        self._meta_metadata = None
        self._data_timestamp = None
        self._frag_index = None
        self._content_length = None

    # -- reading -------------------------------------------------------------------

    def open(self, check_expiry=True, now=None):
        """Read the object's current state; raises DiskFileNotExist (or a kind of it).

        Keeps the .data open, so a concurrent newer write removing it cannot pull the
        bytes from under a reader. Close with ``close()`` or use ``with df.open():``.
        """
        for _attempt in range(OPEN_ATTEMPTS):
            if self._try_open():
                break
        else:
            raise DiskFileNotExist("object kept changing while opening")
        if check_expiry:
            delete_at = self._metadata.get("X-Delete-At")
            now = time.time() if now is None else now
            if delete_at is not None and delete_at.isdigit() and int(delete_at) <= now:
                metadata = self._metadata
                self.close()
                raise DiskFileExpired(
                    "object expired", self.timestamp_of(metadata), metadata, self._data_timestamp
                )
        return self

    def _try_open(self):
        """One attempt at open(); False if files vanished underneath (a newer write)."""
        try:
            names = os.listdir(self.datadir)
        except FileNotFoundError:
            raise DiskFileNotExist() from None
        except NotADirectoryError:
            self._quarantine("hash dir is not a directory")
        ondisk = gather(names)
        if ondisk.deleted:
            raise DiskFileDeleted("object deleted", ondisk.base.timestamp)
        if ondisk.base is None:
            raise DiskFileNotExist()
        datafile = self._choose_datafile(ondisk)
        if datafile is None:
            raise DiskFileNotExist()
        data_path = os.path.join(self.datadir, datafile.filename)
        try:
            fd = os.open(data_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            data_metadata, content_length = self._read_data_metadata(fd, datafile.filename)
            meta_metadata = None
            if ondisk.meta is not None:
                meta_metadata = self._read_meta_file(ondisk.meta.filename)
                if meta_metadata is None:
                    os.close(fd)
                    return False
        except BaseException:
            os.close(fd)
            raise
        self.close()
        self._fd = fd
        self._datafile_metadata = data_metadata
        self._meta_metadata = meta_metadata
        self._metadata = merge_metadata(data_metadata, meta_metadata)
        self._data_timestamp = datafile.timestamp
        self._frag_index = datafile.frag_index
        self._content_length = content_length
        return True

    def _choose_datafile(self, ondisk):
        """The FileInfo of the .data to serve of an OnDisk whose base is data (or None)."""
        return ondisk.data[0]

    def _read_data_metadata(self, fd, filename):
        try:
            stored = read_metadata(fd)
            metadata = stored.metadata
            content_length = int(metadata["Content-Length"])
            Timestamp(metadata["X-Timestamp"])
        except (MetadataError, KeyError, ValueError) as err:
            self._quarantine(f"{filename}: bad metadata ({err})")
        if self.name is not None and metadata.get("name") != self.name:
            raise DiskFileCollision(
                f"{self.datadir} holds {metadata.get('name')!r}, not {self.name!r}"
            )
        size = os.fstat(fd).st_size
        footer_ok = stored.footer_offset is None or stored.footer_offset == content_length
        if not footer_ok or size != stored.expected_size(content_length):
            self._quarantine(f"{filename}: size {size} does not match its metadata")
        return metadata, content_length

    def _read_meta_file(self, filename):
        """The metadata of a .meta file; None if it vanished."""
        try:
            fd = os.open(os.path.join(self.datadir, filename), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            metadata = read_metadata(fd).metadata
            Timestamp(metadata["X-Timestamp"])
            return metadata
        except (MetadataError, KeyError, ValueError) as err:
            self._quarantine(f"{filename}: bad metadata ({err})")
        finally:
            os.close(fd)

    def _quarantine(self, reason):
        self.close()
        self.quarantine(reason)
        raise DiskFileQuarantined(f"quarantined: {reason}")

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def timestamp_of(metadata):
        return Timestamp(metadata["X-Timestamp"])

    def _need_open(self):
        if self._metadata is None:
            raise DiskFileError("DiskFile not open")

    def get_metadata(self):
        """The object's metadata: the data's, overlaid by the newest POST."""
        self._need_open()
        return dict(self._metadata)

    def get_datafile_metadata(self):
        self._need_open()
        return dict(self._datafile_metadata)

    def get_meta_metadata(self):
        """The newest .meta's own metadata (None without one), as replication sends it."""
        self._need_open()
        return None if self._meta_metadata is None else dict(self._meta_metadata)

    @property
    def timestamp(self):
        """The newest write (PUT or POST) of the open object."""
        self._need_open()
        return self.timestamp_of(self._metadata)

    @property
    def data_timestamp(self):
        """The PUT that made the open object's bytes."""
        self._need_open()
        return self._data_timestamp

    @property
    def content_length(self):
        self._need_open()
        return self._content_length

    @property
    def frag_index(self):
        """The fragment index of the open .data (None for a replicated object)."""
        self._need_open()
        return self._frag_index

    def reader(self):
        """A DiskFileReader over the open object's bytes; it now owns the open file."""
        self._need_open()
        if self._fd is None:
            raise DiskFileError("the open file was already handed to a reader")
        fd, self._fd = self._fd, None
        return DiskFileReader(
            fd,
            self._content_length,
            self.manager.disk_chunk_size,
            on_truncated=lambda: self.quarantine("data file shorter than its metadata"),
        )

    # -- writing -------------------------------------------------------------------

    def create(self, size=None):
        """A DiskFileWriter for a new .data; ``size`` (if known) is reserved up front."""
        writer = DiskFileWriter(self, size)
        writer.open()
        return writer

    def write_metadata(self, metadata):
        """Write a .meta holding ``metadata`` (which carries its X-Timestamp)."""
        self._write_empty(metadata, META)

    def delete(self, timestamp):
        """Write a tombstone at ``timestamp``."""
        timestamp = Timestamp(timestamp)
        metadata = {"X-Timestamp": timestamp.internal}
        if self.name is not None:
            metadata["name"] = self.name
        self._write_empty(metadata, TOMBSTONE)

    def _write_empty(self, metadata, ext):
        with self.create() as writer:
            writer.put(metadata, ext)

    def quarantine(self, reason=""):
        """Move this object's hash dir aside; returns where it went (None if gone)."""
        self.close()
        try:
            return self.manager.quarantine(self.dev_path, self.policy_index, self.datadir, reason)
        except FileNotFoundError:
            return None


class DiskFileWriter:
    """Streams a new file into ``<dev>/tmp``; ``put()`` makes it the object's newest."""

    def __init__(self, diskfile, size=None):
        self.diskfile = diskfile
        self.size = size
        self.fd = None
        self.tmp_path = None
        self.bytes_written = 0
        self._checksum = diskfile.manager.new_checksum()
        self._fallocated = False
        self.put_path = None

    def open(self):
        tmp = layout.tmp_dir(self.diskfile.dev_path)
        try:
            try:
                self.fd, self.tmp_path = tempfile.mkstemp(dir=tmp, prefix=".haneul-")
            except FileNotFoundError:  # a new device (or its tmp was removed)
                makedirs(tmp)
                self.fd, self.tmp_path = tempfile.mkstemp(dir=tmp, prefix=".haneul-")
            # Reserving space up front pays for big bodies (less fragmentation, ENOSPC
            # before the upload); for a few KiB it is one more syscall for nothing.
            if self.size and self.size >= FALLOCATE_FROM:
                os.posix_fallocate(self.fd, 0, self.size)
                self._fallocated = True
        except OSError as err:
            self._fail(err)
        return self

    def _fail(self, err):
        """Discard the temp file and re-raise ``err`` as what the caller expects."""
        self.abandon()
        if is_no_space(err):
            raise DiskFileNoSpace(str(err)) from err
        raise err

    def write(self, chunk):
        """Append ``chunk`` to the file, updating the checksum."""
        view = memoryview(chunk)
        try:
            while view:
                done = os.write(self.fd, view)
                view = view[done:]
        except OSError as err:
            self._fail(err)
        self._checksum.update(chunk)
        self.bytes_written += len(chunk)

    @property
    def etag(self):
        """The checksum of what was written so far (the manager's ``new_checksum``)."""
        return self._checksum.hexdigest()

    def put(self, metadata, ext=DATA, frag_index=None, durable=False):
        """Make the written file the object's ``ext`` at ``metadata['X-Timestamp']``.

        fsync the file, rename it into the hash dir, fsync that dir (and any dirs this
        made), clean obsolete files, mark the suffix for rehashing. A ``frag_index``
        makes it an erasure-coded fragment archive (``<ts>#<frag>[#d].data``).
        """
        df = self.diskfile
        timestamp = Timestamp(metadata["X-Timestamp"])
        filename = make_filename(timestamp, ext, frag_index, durable)
        target = os.path.join(df.datadir, filename)
        try:
            if self._fallocated and self.size != self.bytes_written:
                os.ftruncate(self.fd, self.bytes_written)
            write_metadata(self.fd, metadata, self.bytes_written)
            # The fsyncs wait on the disk: one trip to a thread for all of them, so this
            # server's other requests go on meanwhile (each trip costs CPU of its own).
            drop_cache = self.bytes_written > df.manager.keep_cache_size
            run_in_thread(_finalize, self.fd, self.tmp_path, target, df.dev_path, drop_cache)
        except OSError as err:
            self._fail(err)
        os.close(self.fd)
        self.fd = None
        self.tmp_path = None
        self.put_path = target
        cleanup_hash_dir(df.datadir)
        invalidate_hash(os.path.dirname(df.datadir))
        return target

    def abandon(self):
        """Close and delete the temp file, if it is still ours."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tmp_path is not None:
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass
            self.tmp_path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abandon()


def _finalize(fd, tmp_path, target, stop_at, drop_cache=False):
    """Make the written temp file ``target``, durably: the blocking part of a put.

    The file's data reaches the disk before its rename, so a crash never leaves an
    empty file under the final name; the hash dir (and the parent of every dir made
    for it, up to ``stop_at``) is fsynced after, so the name itself survives.
    """
    created = _makedirs(os.path.dirname(target), stop_at)
    durable_rename(fd, tmp_path, target)
    for path in created:
        fsync_dir(os.path.dirname(path))
    if drop_cache:
        # Clean pages of big objects pile up, and the next writes' copies into the page
        # cache then run several times slower (measured here; Swift drops them too).
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _makedirs(path, stop_at):
    """mkdir -p ``path``; the dirs it had to create, deepest first."""
    missing = []
    current = path
    while current != stop_at and not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    if missing:
        makedirs(path)
    return missing


class DiskFileReader:
    """The bytes of an open .data, read with pread in ``chunk_size`` pieces.

    Iterating yields the whole body; ``app_iter(ranges, ...)`` gives a WSGI app_iter of
    one range or a multipart/byteranges body. The footer (if any) lies past
    ``content_length`` and is never read. ``close()`` closes the file.
    """

    def __init__(self, fd, content_length, chunk_size, on_truncated=None):
        self.fd = fd
        self.content_length = content_length
        self.chunk_size = chunk_size
        self.on_truncated = on_truncated
        self.bytes_read = 0

    def iter_range(self, start, stop):
        """Yield the bytes in ``[start, stop)``."""
        position = start
        stop = min(stop, self.content_length)
        while position < stop and self.fd is not None:
            chunk = os.pread(self.fd, min(self.chunk_size, stop - position), position)
            if not chunk:
                self.close()
                if self.on_truncated is not None:
                    self.on_truncated()
                return
            position += len(chunk)
            self.bytes_read += len(chunk)
            yield chunk

    def __iter__(self):
        try:
            yield from self.iter_range(0, self.content_length)
        finally:
            self.close()

    def app_iter(self, ranges=None, content_type=None, boundary=None):
        """A WSGI app_iter: the whole body, one ``(start, stop)``, or a multipart body."""
        if not ranges:
            body = self.iter_range(0, self.content_length)
        elif len(ranges) == 1:
            body = self.iter_range(*ranges[0])
        else:
            body = multipart_body(
                ranges, boundary, content_type, self.content_length, self.iter_range
            )
        return _ClosingIter(body, self.close)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _ClosingIter:
    """An iterable that calls ``close`` when the WSGI server is done with it."""

    def __init__(self, iterable, close):
        self._iterable = iterable
        self._close = close

    def __iter__(self):
        return iter(self._iterable)

    def close(self):
        close = getattr(self._iterable, "close", None)
        if close is not None:
            close()
        self._close()
