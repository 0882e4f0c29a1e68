"""CRC32 with hashlib's interface: the checksum of an erasure-coded fragment archive.

The proxy takes it of each archive as it sends it, the object server of what it
stores; they compare at the commit (a transfer that went wrong), and the auditor
compares it with the bytes on disk later (a disk that went wrong). It only has to
catch accidents, and zlib's CRC32 runs at about 4 GB/s a core where MD5 runs at 0.7:
an EC PUT checksums k + m archives (1.5 times the object for 4+2) on each side. The
whole object's MD5 (its ETag, which the API promises) is the proxy's business and
stays an MD5.

A checksum is written ``crc32:<8 hex digits>``, so that a stored value says what it
is (archives written before hold a bare 32-digit MD5).
"""

import zlib

from common.hashing import is_hex

PREFIX = "crc32:"


class CRC32:
    """A running CRC32: ``update(data)`` as often as needed, then ``hexdigest()``."""

    __slots__ = ("value",)
    name = "crc32"

    def __init__(self, data=b""):
        self.value = zlib.crc32(data)

    def update(self, data):
        """Add ``data`` (any bytes-like object) to the checksum."""
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self):
        """The checksum as stored and sent: ``crc32:`` and 8 lowercase hex digits."""
        return f"{PREFIX}{self.value:08x}"


def is_crc32(value):
    """Whether a stored or sent checksum is a CRC32 (``crc32:<8 hex digits>``)."""
    return value.startswith(PREFIX) and is_hex(value[len(PREFIX) :], 8)
