"""common.crc32: the checksum of erasure-coded fragment archives."""

import hashlib
import zlib

from hypothesis import given
from hypothesis import strategies as st

from common.crc32 import CRC32, is_crc32


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_a_running_crc32_is_the_crc32_of_all_the_pieces(pieces):
    checksum = CRC32()
    for piece in pieces:
        checksum.update(memoryview(piece))
    whole = b"".join(pieces)
    assert checksum.hexdigest() == CRC32(whole).hexdigest() == f"crc32:{zlib.crc32(whole):08x}"
    assert is_crc32(checksum.hexdigest())


def test_only_the_crc32_form_is_recognised():
    assert is_crc32("crc32:00000000")
    for other in (
        hashlib.md5(b"x").hexdigest(),
        "crc32:0000000",
        "crc32:000000000",
        "crc32:0000000G",
        "crc32:0000_000",
        "CRC32:00000000",
        "",
    ):
        assert not is_crc32(other), other
