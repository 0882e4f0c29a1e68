"""The checksums S3 clients send (``x-amz-checksum-<algorithm>``), computed as we read.

CRC32 (zlib), CRC32C (Castagnoli, reflected 0x82F63B78), CRC64NVME (reflected
0x9A6C9329AC4BC9B5), SHA1 and SHA256. Values travel as the base64 of the big-endian
checksum. CRC32C and CRC64NVME are table-driven pure Python (a few MB/s: fine for
the occasional client that asks for them); when the optional ``crc32c`` package or
``awscrt`` is installed they are used instead.
"""

import base64
import hashlib
import zlib

ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
HEADER_PREFIX = "x-amz-checksum-"


def _table(poly, width):
    mask = (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc & mask)
    return table


_CRC32C_TABLE = _table(0x82F63B78, 32)
_CRC64NVME_TABLE = _table(0x9A6C9329AC4BC9B5, 64)


def _crc_update(table, mask, crc, data):
    crc ^= mask
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ mask


def crc32c_py(data, crc=0):
    """CRC32C of ``data``, continuing from ``crc`` (pure Python)."""
    return _crc_update(_CRC32C_TABLE, 0xFFFFFFFF, crc, data)


def crc64nvme_py(data, crc=0):
    """CRC64/NVME of ``data``, continuing from ``crc`` (pure Python)."""
    return _crc_update(_CRC64NVME_TABLE, 0xFFFFFFFFFFFFFFFF, crc, data)


crc32c = crc32c_py
crc64nvme = crc64nvme_py
try:  # optional accelerators, never required
    from awscrt import checksums as _crt

    def crc32c(data, crc=0):  # noqa: F811 - the faster one when present
        return _crt.crc32c(bytes(data), crc)

    def crc64nvme(data, crc=0):  # noqa: F811
        return _crt.crc64nvme(bytes(data), crc)

except ImportError:
    try:
        import crc32c as _crc32c_module

        def crc32c(data, crc=0):  # noqa: F811
            return _crc32c_module.crc32c(bytes(data), crc)

    except ImportError:
        pass


class _Crc:
    """hashlib-like wrapper of a CRC function."""

    def __init__(self, func, size):
        self.func = func
        self.size = size
        self.value = 0

    def update(self, data):
        self.value = self.func(data, self.value)

    def digest(self):
        return self.value.to_bytes(self.size, "big")


def new(algorithm):
    """A hasher (``update``, ``digest``) for ``algorithm``; ValueError if unknown."""
    algorithm = algorithm.lower()
    if algorithm == "crc32":
        return _Crc(zlib.crc32, 4)
    if algorithm == "crc32c":
        return _Crc(crc32c, 4)
    if algorithm == "crc64nvme":
        return _Crc(crc64nvme, 8)
    if algorithm in ("sha1", "sha256"):
        return hashlib.new(algorithm)
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def encode(digest):
    """The wire form of a checksum: base64 of its bytes."""
    return base64.b64encode(digest).decode("ascii")


def compute(algorithm, data):
    """The wire form of ``algorithm`` over ``data`` (tests, small bodies)."""
    hasher = new(algorithm)
    hasher.update(data)
    return encode(hasher.digest())
