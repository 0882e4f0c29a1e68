"""An object file's metadata: msgpack in an xattr, or in a footer when it is too big.

The xattr ``user.haneul.metadata`` always holds a small msgpack envelope:

- ``{"v": 1, "m": {...metadata...}}`` when the packed metadata is at most
  ``INLINE_LIMIT`` bytes, or
- ``{"v": 1, "f": [offset, length, md5-hex]}``: the packed metadata was appended to the
  file itself at ``offset`` (right after the object's bytes) and the xattr only points
  at it.

Why 2 KiB inline: ext4 keeps all of a file's xattrs in the spare room of the inode plus
one extra block (about 4 KiB minus headers), shared with entries we don't own (SELinux
labels, POSIX ACLs, IMA hashes). Object metadata can reach 4 KiB of user metadata plus
a 1.5 KiB name plus system keys, which would not fit; 2 KiB leaves that shared room
comfortably free while the common case (a few short headers) never touches the footer.
XFS would take much more, but one rule for every filesystem keeps the reader simple.
"""

import errno
import hashlib
import os

import msgpack
import xattr

XATTR_NAME = "user.haneul.metadata"
INLINE_LIMIT = 2048
ENVELOPE_VERSION = 1
# setxattr errors that mean "this value does not fit here", not "the disk is broken".
_TOO_BIG = {errno.ENOSPC, errno.E2BIG, errno.ERANGE}


class MetadataError(Exception):
    """A file's metadata is missing or unreadable: the file is corrupt."""


def pack_metadata(metadata):
    """The msgpack bytes of a metadata dict (str keys, str values)."""
    return msgpack.packb(metadata, use_bin_type=True)


def unpack_metadata(data):
    """A metadata dict from msgpack bytes; anything but a str->str map is an error."""
    try:
        metadata = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise MetadataError(f"metadata is not msgpack: {err}") from None
    return _checked(metadata)


def _checked(metadata):
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise MetadataError("metadata is not a map of strings")
    return metadata


def _md5(data):
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def write_metadata(fd, metadata, offset):
    """Store ``metadata`` for the open file ``fd`` whose body ends at ``offset``.

    Returns the footer's offset, or None if the metadata went inline. OSErrors other
    than "does not fit in an xattr" (for example ENOSPC while writing the footer) are
    the caller's to handle.
    """
    packed = pack_metadata(metadata)
    if len(packed) <= INLINE_LIMIT:
        envelope = msgpack.packb({"v": ENVELOPE_VERSION, "m": metadata}, use_bin_type=True)
        try:
            xattr.setxattr(fd, XATTR_NAME, envelope)
            return None
        except OSError as err:
            if err.errno not in _TOO_BIG:
                raise
            # The filesystem has less xattr room than we assumed: use the footer.
    written = 0
    while written < len(packed):
        written += os.pwrite(fd, packed[written:], offset + written)
    pointer = {"v": ENVELOPE_VERSION, "f": [offset, len(packed), _md5(packed)]}
    xattr.setxattr(fd, XATTR_NAME, msgpack.packb(pointer, use_bin_type=True))
    return offset


class StoredMetadata:
    """Metadata read from a file, and where the object's bytes end."""

    __slots__ = ("metadata", "footer_offset", "footer_length")

    def __init__(self, metadata, footer_offset=None, footer_length=0):
        self.metadata = metadata
        self.footer_offset = footer_offset
        self.footer_length = footer_length

    def expected_size(self, body_length):
        """The file size a body of ``body_length`` bytes with this metadata must have."""
        return body_length + self.footer_length


def read_metadata(fd):
    """The StoredMetadata of open file ``fd``; MetadataError if it is missing or bad."""
    try:
        raw = xattr.getxattr(fd, XATTR_NAME)
    except OSError as err:
        if err.errno in (errno.ENODATA, getattr(errno, "ENOATTR", errno.ENODATA)):
            raise MetadataError("no metadata xattr") from None
        raise
    try:
        envelope = msgpack.unpackb(raw, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise MetadataError(f"metadata xattr is not msgpack: {err}") from None
    if not isinstance(envelope, dict) or envelope.get("v") != ENVELOPE_VERSION:
        raise MetadataError("metadata xattr has an unknown format")
    if "m" in envelope:
        return StoredMetadata(_checked(envelope["m"]))
    pointer = envelope.get("f")
    if (
        not isinstance(pointer, list)
        or len(pointer) != 3
        or not all(isinstance(n, int) and n >= 0 for n in pointer[:2])
        or not isinstance(pointer[2], str)
    ):
        raise MetadataError("metadata footer pointer is malformed")
    offset, length, checksum = pointer
    data = os.pread(fd, length, offset)
    if len(data) != length or _md5(data) != checksum:
        raise MetadataError("metadata footer is truncated or corrupt")
    return StoredMetadata(unpack_metadata(data), offset, length)
