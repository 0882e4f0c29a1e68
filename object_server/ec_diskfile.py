"""Erasure-coded objects on disk: fragment archives, and committing them.

An EC object's hash dir holds fragment archives named ``<ts>#<frag>.data`` while the
proxy's write is in flight and ``<ts>#<frag>#d.data`` once it is committed (durable).
Only durable fragments are ever served; a newer write that is not committed yet does
not hide the last durable one (object_server.filenames decides what is kept). A handoff
may hold several fragment indexes of one object side by side.

- ``ECDiskFileManager`` is the DiskFileManager of an EC policy: its DiskFiles are
  ECDiskFiles, its suffix hashes compare across fragment indexes
  (object_server.ec_hashes), and an archive's ``ETag`` is its CRC32 (common.crc32;
  archives written before that hold their MD5).
- ``ECDiskFile.open()`` picks a durable fragment (the preferred index if it is there);
  ``create()`` + ``put(..., frag_index=i)`` writes a non-durable archive;
  ``commit()`` merges the proxy's footer metadata into it and renames it durable.

The EC policy itself (k, m, segment size, the pyeclib driver) comes from
common.policies; ``ec_driver`` and friends read it.
"""

import errno
import hashlib
import os

from common.concurrency import run_in_thread
from common.crc32 import CRC32, is_crc32
from common.fileops import durable_rename
from common.hashing import is_hex
from object_server.diskfile import (
    DiskFile,
    DiskFileCollision,
    DiskFileError,
    DiskFileManager,
    DiskFileNoSpace,
    DiskFileNotExist,
    is_no_space,
)
from object_server.ec_hashes import hash_ec_suffix
from object_server.filenames import DATA, make_filename
from object_server.hashes import cleanup_hash_dir, invalidate_hash, purge_files
from object_server.metadata import MetadataError, read_metadata, write_metadata

EC_POLICY_TYPE = "erasure_coding"
FRAG_INDEX_HEADER = "X-Backend-Ec-Frag-Index"
FRAG_INDEX_KEY = "X-Object-Sysmeta-Ec-Frag-Index"
EC_ETAG_KEY = "X-Object-Sysmeta-Ec-Etag"
EC_CONTENT_LENGTH_KEY = "X-Object-Sysmeta-Ec-Content-Length"
EC_ARCHIVE_ETAG_KEY = "X-Object-Sysmeta-Ec-Frag-Archive-Etag"
EC_SEGMENT_SIZE_KEY = "X-Object-Sysmeta-Ec-Segment-Size"
# Set per fragment (or at commit): never copied from one fragment to another's write.
PER_FRAGMENT_KEYS = frozenset(
    k.lower() for k in (FRAG_INDEX_KEY, EC_ETAG_KEY, EC_CONTENT_LENGTH_KEY, EC_ARCHIVE_ETAG_KEY)
)

_drivers = {}


def is_ec_policy(policy):
    return policy is not None and getattr(policy, "policy_type", None) == EC_POLICY_TYPE


def fragment_count(policy):
    """k + m of an EC policy."""
    return int(policy.ec_ndata) + int(policy.ec_nparity)


def ec_driver(policy):
    """The policy's pyeclib driver (built here, once, if the policy has none)."""
    driver = getattr(policy, "driver", None)
    if driver is not None:
        return driver
    key = (policy.ec_type, int(policy.ec_ndata), int(policy.ec_nparity))
    if key not in _drivers:
        from pyeclib.ec_iface import ECDriver

        _drivers[key] = ECDriver(k=key[1], m=key[2], ec_type=key[0])
    return _drivers[key]


def archive_checksum(etag):
    """A fresh checksum of the kind an archive's stored ``ETag`` is, to check its bytes
    against: a CRC32 (common.crc32), or an MD5 for an archive written before archives
    had CRC32s (32 hex digits). None if ``etag`` is neither."""
    if is_crc32(etag):
        return CRC32()
    if is_hex(etag, 32):
        return hashlib.md5(usedforsecurity=False)
    return None


class FragmentNotFound(DiskFileNotExist):
    """No such fragment archive (to commit)."""


class FragmentEtagMismatch(DiskFileError):
    """The archive on disk is not the one the proxy sent (it has been deleted)."""


class ECDiskFileManager(DiskFileManager):
    """The DiskFileManager of an erasure-coded policy."""

    suffix_hasher = staticmethod(hash_ec_suffix)
    # An archive's checksum is a CRC32 (common.crc32): the proxy takes the same of what
    # it sends, and an MD5 on both sides was a third of an EC PUT's CPU.
    new_checksum = staticmethod(CRC32)

    @property
    def diskfile_class(self):
        return ECDiskFile

    def get_fragment(self, dev_path, partition, obj_hash, policy_index, frag_index):
        """The ECDiskFile of a hash dir, preferring fragment ``frag_index`` when opened."""
        df = self.get_diskfile_from_hash(dev_path, partition, obj_hash, policy_index)
        df.preferred_frag_index = frag_index
        return df


class ECDiskFile(DiskFile):
    """One erasure-coded object on one device (see the module doc)."""

    preferred_frag_index = None

    def _choose_datafile(self, ondisk):
        durable = [i for i in ondisk.data if i.durable and i.frag_index is not None]
        for info in durable:
            if info.frag_index == self.preferred_frag_index:
                return info
        return durable[0] if durable else None

    def has_durable(self, timestamp, frag_index):
        """Whether fragment ``frag_index`` of the write at ``timestamp`` is committed here."""
        name = make_filename(timestamp, DATA, frag_index, durable=True)
        return os.path.exists(os.path.join(self.datadir, name))

    def commit(self, timestamp, frag_index, footer, archive_etag=None):
        """Make ``<ts>#<frag>.data`` durable with ``footer`` merged into its metadata.

        Returns ``(metadata, newly_committed)``: an archive already durable at that
        timestamp is left as it is. Raises FragmentNotFound if neither exists,
        FragmentEtagMismatch (after deleting it) if its checksum (its ``ETag``, see
        ``ECDiskFileManager.new_checksum``) is not ``archive_etag``,
        DiskFileCollision if it belongs to another name, DiskFileNoSpace.
        """
        pending = make_filename(timestamp, DATA, frag_index, durable=False)
        durable = make_filename(timestamp, DATA, frag_index, durable=True)
        pending_path = os.path.join(self.datadir, pending)
        durable_path = os.path.join(self.datadir, durable)
        try:
            fd = os.open(pending_path, os.O_RDWR)
        except FileNotFoundError:
            return self._committed_already(durable_path), False
        try:
            metadata, content_length, footer_offset = self._read_pending(fd, pending)
            if archive_etag is not None and archive_etag.lower() != metadata.get("ETag"):
                os.close(fd)
                fd = None
                purge_files(self.datadir, [pending])
                raise FragmentEtagMismatch(
                    f"{pending}: archive checksum {metadata.get('ETag')}, proxy sent {archive_etag}"
                )
            metadata.update(footer)
            metadata[EC_ARCHIVE_ETAG_KEY] = metadata.get("ETag", "")
            if footer_offset is not None:
                os.ftruncate(fd, content_length)  # the old footer goes; a new one may come
            write_metadata(fd, metadata, content_length)
            # One trip to a thread for the blocking part (each trip costs CPU).
            run_in_thread(_make_durable, fd, pending_path, durable_path)
        except FileNotFoundError:
            # A concurrent commit of the same archive won the race to the rename.
            return self._committed_already(durable_path), False
        except OSError as err:
            if is_no_space(err):
                raise DiskFileNoSpace(str(err)) from err
            raise
        finally:
            if fd is not None:
                os.close(fd)
        cleanup_hash_dir(self.datadir)
        invalidate_hash(os.path.dirname(self.datadir))
        return metadata, True

    def _read_pending(self, fd, filename):
        """(metadata, content length, footer offset) of an uncommitted archive."""
        try:
            stored = read_metadata(fd)
            metadata = dict(stored.metadata)
            content_length = int(metadata["Content-Length"])
        except (MetadataError, KeyError, ValueError) as err:
            # Not committed, so never served: drop it rather than quarantine.
            os.unlink(os.path.join(self.datadir, filename))
            raise FragmentNotFound(f"{filename}: unreadable metadata ({err})") from None
        if self.name is not None and metadata.get("name") != self.name:
            raise DiskFileCollision(
                f"{self.datadir} holds {metadata.get('name')!r}, not {self.name!r}"
            )
        return metadata, content_length, stored.footer_offset

    def _committed_already(self, durable_path):
        """The metadata of an archive committed before; FragmentNotFound if there is none."""
        try:
            fd = os.open(durable_path, os.O_RDONLY)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR):
                raise FragmentNotFound("no such fragment archive") from None
            raise
        try:
            return read_metadata(fd).metadata
        except MetadataError as err:
            raise FragmentNotFound(f"{durable_path}: unreadable metadata ({err})") from None
        finally:
            os.close(fd)


def _make_durable(fd, pending_path, durable_path):
    """The blocking part of a commit: fsync the archive, rename it durable, fsync the
    dir; then drop the archive's pages from the page cache.

    Left cached, clean pages pile up, and every archive written meanwhile lands on
    pages the machine has not touched for a while: measured in this VM, the copy into
    the page cache then runs at 0.7-0.85 GB/s a core instead of 3.7, a fifth of a
    node's CPU in an EC PUT. Dropped pages are reused by the next write at once. An
    archive is seldom read back soon (a GET reads k of the k + m, from whichever nodes
    answer first), so the cache is better spent elsewhere; Swift's object server drops
    what a PUT wrote too (``drop_buffer_cache``).
    """
    durable_rename(fd, pending_path, durable_path)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
