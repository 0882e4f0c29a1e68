"""Payload verification: aws-chunked decoding (signed chunks, trailers), hex SHA-256,
Content-MD5 and x-amz-checksum-* checks, and the CRC algorithms behind them."""

import base64
import hashlib
import io
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.s3api import checksums, chunked
from proxy.s3api.errors import (
    BadDigest,
    IncompleteBody,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)
from proxy.s3api.request import S3Request
from tests.unit.test_s3_auth import CHUNK_SIGNATURES, CONF, streaming_seed

DATA = b"a" * 66560


def read_all(stream, size=7000):
    parts = []
    while True:
        chunk = stream.read(size)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def request(env, body, auth=None):
    env = dict(env)
    env["wsgi.input"] = io.BytesIO(body)
    if "CONTENT_LENGTH" not in env and "HTTP_CONTENT_LENGTH" in env:
        env["CONTENT_LENGTH"] = env.pop("HTTP_CONTENT_LENGTH")
    return S3Request(env, None, CONF, bucket="b", key="k", query={}, auth=auth)


def signed_body(signatures, trailer_lines=b""):
    body = f"10000;chunk-signature={signatures[0]}\r\n".encode() + DATA[:65536] + b"\r\n"
    body += f"400;chunk-signature={signatures[1]}\r\n".encode() + DATA[65536:] + b"\r\n"
    body += f"0;chunk-signature={signatures[2]}\r\n".encode() + trailer_lines + b"\r\n"
    return body


def test_signed_chunks_of_the_aws_example_decode():
    env, auth = streaming_seed()
    body = signed_body(CHUNK_SIGNATURES)
    assert len(body) == 66824  # the example's Content-Length
    stream = request(env, body, auth).body_stream()
    assert stream.length == 66560
    assert read_all(stream) == DATA


def test_a_changed_byte_fails_its_chunk_signature_before_any_byte_of_it_is_handed_on():
    env, auth = streaming_seed()
    body = bytearray(signed_body(CHUNK_SIGNATURES))
    body[66000] = ord("b")  # inside the second (last) data chunk
    stream = request(env, bytes(body), auth).body_stream()
    handed_on = 0
    with pytest.raises(chunked.BodyError) as caught:
        while stream.read(4096):
            handed_on += 4096
    assert isinstance(caught.value.s3error, SignatureDoesNotMatch)
    assert isinstance(stream.error, SignatureDoesNotMatch)
    assert handed_on <= 65536  # nothing of the tampered chunk went downstream


def test_a_wrong_final_chunk_signature_stops_the_last_bytes():
    env, auth = streaming_seed()
    body = signed_body(CHUNK_SIGNATURES[:2] + ("0" * 64,))
    stream = request(env, body, auth).body_stream()
    assert stream.read(65536) == DATA[:65536]
    with pytest.raises(chunked.BodyError):
        stream.read(65536)  # the last 1 KiB is withheld: the terminal signature is wrong


def test_signed_trailer_example_decodes_and_checks_crc32c():
    env, auth = streaming_seed(trailer=True)
    sigs = (
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    )
    trailer = (
        b"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:"
        b"d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n"
    )
    body = signed_body(sigs, trailer)
    assert len(body) == 66946
    stream = request(env, body, auth).body_stream()
    assert read_all(stream) == DATA
    assert stream.checksums == {"crc32c": "sOO8/Q=="}
    # A forged trailer (other checksum, same signature) is refused.
    forged = signed_body(sigs, trailer.replace(b"sOO8/Q==", b"AAAAAA=="))
    with pytest.raises(chunked.BodyError) as caught:
        read_all(request(env, forged, auth).body_stream())
    assert isinstance(caught.value.s3error, SignatureDoesNotMatch)


def unsigned_trailer_env(algorithm, length):
    return {
        "REQUEST_METHOD": "PUT",
        "HTTP_X_AMZ_CONTENT_SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "HTTP_CONTENT_ENCODING": "aws-chunked",
        "HTTP_X_AMZ_TRAILER": f"x-amz-checksum-{algorithm}",
        "HTTP_X_AMZ_DECODED_CONTENT_LENGTH": str(length),
    }


def unsigned_body(data, algorithm, value=None, chunk=8192):
    value = value or checksums.compute(algorithm, data)
    body = b""
    for start in range(0, len(data), chunk):
        piece = data[start : start + chunk]
        body += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return body + f"0\r\nx-amz-checksum-{algorithm}:{value}\r\n\r\n".encode()


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"])
def test_unsigned_trailer_checksums_verify(algorithm):
    data = bytes(range(256)) * 100
    env = unsigned_trailer_env(algorithm, len(data))
    stream = request(env, unsigned_body(data, algorithm)).body_stream()
    assert read_all(stream, 5000) == data
    assert stream.checksums[algorithm] == checksums.compute(algorithm, data)
    bad = unsigned_body(data, algorithm, checksums.compute(algorithm, b"other"))
    stream = request(env, bad).body_stream()
    with pytest.raises(chunked.BodyError) as caught:
        read_all(stream, 5000)
    assert isinstance(caught.value.s3error, BadDigest)


def test_truncated_aws_chunked_body_is_incomplete():
    data = b"x" * 20000
    env = unsigned_trailer_env("crc32", len(data))
    body = unsigned_body(data, "crc32")[:15000]
    with pytest.raises(chunked.BodyError) as caught:
        read_all(request(env, body).body_stream())
    assert isinstance(caught.value.s3error, IncompleteBody)


def test_plain_body_sha256_md5_and_checksum_header():
    data = b"hello world" * 1000
    env = {
        "REQUEST_METHOD": "PUT",
        "CONTENT_LENGTH": str(len(data)),
        "HTTP_X_AMZ_CONTENT_SHA256": hashlib.sha256(data).hexdigest(),
        "HTTP_CONTENT_MD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        "HTTP_X_AMZ_CHECKSUM_CRC32": checksums.compute("crc32", data),
    }
    stream = request(env, data).body_stream()
    assert read_all(stream, 4096) == data
    assert stream.checksums == {"crc32": checksums.compute("crc32", data)}
    wrong = dict(env, HTTP_X_AMZ_CONTENT_SHA256=hashlib.sha256(b"x").hexdigest())
    stream = request(wrong, data).body_stream()
    assert stream.read(4096)  # early bytes flow...
    with pytest.raises(chunked.BodyError) as caught:
        read_all(stream, 4096)  # ...the last ones never do
    assert isinstance(caught.value.s3error, XAmzContentSHA256Mismatch)
    wrong = dict(env, HTTP_CONTENT_MD5=base64.b64encode(b"0" * 16).decode())
    with pytest.raises(chunked.BodyError) as caught:
        read_all(request(wrong, data).body_stream())
    assert isinstance(caught.value.s3error, BadDigest)


def test_short_plain_body_is_incomplete():
    env = {"REQUEST_METHOD": "PUT", "CONTENT_LENGTH": "100"}
    with pytest.raises(chunked.BodyError) as caught:
        read_all(request(env, b"x" * 50).body_stream())
    assert isinstance(caught.value.s3error, IncompleteBody)


# -- CRC algorithms -------------------------------------------------------------------------


def test_crc_check_values():
    assert checksums.crc32c_py(b"123456789") == 0xE3069283
    assert checksums.crc64nvme_py(b"123456789") == 0xAE8B14860A799888
    assert checksums.crc32c_py(b"") == 0
    # RFC 3720 (iSCSI) vectors: 32 zero bytes and 32 0xFF bytes.
    assert checksums.crc32c_py(b"\x00" * 32) == 0x8A9136AA
    assert checksums.crc32c_py(b"\xff" * 32) == 0x62A8AB43
    assert checksums.compute("crc32c", b"a" * 66560) == "sOO8/Q=="
    assert (
        checksums.compute("crc32", b"hello world")
        == base64.b64encode(zlib.crc32(b"hello world").to_bytes(4, "big")).decode()
    )


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=300))
def test_crc_continuation_equals_one_pass(data, cut):
    cut = min(cut, len(data))
    for func in (checksums.crc32c_py, checksums.crc64nvme_py):
        assert func(data[cut:], func(data[:cut])) == func(data)
