"""S3 signatures: SigV4 against AWS's published examples (header, presigned, streaming
chunks, signed trailers) and SigV2 against the classic examples."""

import base64
import calendar
import email.utils
import hashlib

import pytest

from proxy.s3api import S3Settings, sigv2, sigv4
from proxy.s3api.credentials import Credential, canonical_id, parse_credentials
from proxy.s3api.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HOST = "examplebucket.s3.amazonaws.com"
STAMP = "20130524T000000Z"
NOW = calendar.timegm((2013, 5, 24, 0, 0, 0))
EMPTY = hashlib.sha256(b"").hexdigest()
CREDENTIALS = {ACCESS: Credential(ACCESS, SECRET, "test", "tester")}
CONF = S3Settings({"location": "us-east-1"})


def environ(method, path, headers, query=""):
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    return env


def authorization(signed, signature):
    return (
        f"AWS4-HMAC-SHA256 Credential={ACCESS}/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed},Signature={signature}"
    )


# The examples of AWS's "Signature Calculations for the Authorization Header" page.
GET_OBJECT = (
    "GET",
    "/test.txt",
    "",
    {"Host": HOST, "Range": "bytes=0-9", "x-amz-content-sha256": EMPTY, "x-amz-date": STAMP},
    "host;range;x-amz-content-sha256;x-amz-date",
    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
)
PUT_OBJECT = (
    "PUT",
    "/test$file.text",
    "",
    {
        "Date": "Fri, 24 May 2013 00:00:00 GMT",
        "Host": HOST,
        "x-amz-date": STAMP,
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": hashlib.sha256(b"Welcome to Amazon S3.").hexdigest(),
    },
    "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
)
GET_LIFECYCLE = (
    "GET",
    "/",
    "lifecycle",
    {"Host": HOST, "x-amz-date": STAMP, "x-amz-content-sha256": EMPTY},
    "host;x-amz-content-sha256;x-amz-date",
    "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
)
LIST_OBJECTS = (
    "GET",
    "/",
    "max-keys=2&prefix=J",
    {"Host": HOST, "x-amz-date": STAMP, "x-amz-content-sha256": EMPTY},
    "host;x-amz-content-sha256;x-amz-date",
    "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
)


@pytest.mark.parametrize("example", [GET_OBJECT, PUT_OBJECT, GET_LIFECYCLE, LIST_OBJECTS])
def test_sigv4_header_matches_aws_published_examples(example):
    method, path, query, headers, signed, signature = example
    env = environ(
        method, path, dict(headers, Authorization=authorization(signed, signature)), query
    )
    result = sigv4.check_header(env, path, query, CREDENTIALS, CONF, now=NOW)
    assert result.credential.user == "tester"
    assert result.payload_hash == headers["x-amz-content-sha256"]
    assert result.chunk_signer is None


def test_sigv4_wrong_secret_is_signature_does_not_match():
    method, path, query, headers, signed, signature = GET_OBJECT
    creds = {ACCESS: Credential(ACCESS, SECRET + "x", "test", "tester")}
    env = environ(method, path, dict(headers, Authorization=authorization(signed, signature)))
    with pytest.raises(SignatureDoesNotMatch) as caught:
        sigv4.check_header(env, path, query, creds, CONF, now=NOW)
    assert caught.value.status == 403
    assert "CanonicalRequest" in caught.value.extra


def test_sigv4_a_changed_signed_header_breaks_the_signature():
    method, path, query, headers, signed, signature = GET_OBJECT
    headers = dict(headers, Range="bytes=0-10")
    env = environ(method, path, dict(headers, Authorization=authorization(signed, signature)))
    with pytest.raises(SignatureDoesNotMatch):
        sigv4.check_header(env, path, query, CREDENTIALS, CONF, now=NOW)


def test_sigv4_unknown_key_is_invalid_access_key_id():
    method, path, query, headers, signed, signature = GET_OBJECT
    env = environ(method, path, dict(headers, Authorization=authorization(signed, signature)))
    with pytest.raises(InvalidAccessKeyId) as caught:
        sigv4.check_header(env, path, query, {}, CONF, now=NOW)
    assert caught.value.extra["AWSAccessKeyId"] == ACCESS


def test_sigv4_clock_skew_over_fifteen_minutes_is_refused():
    method, path, query, headers, signed, signature = GET_OBJECT
    env = environ(method, path, dict(headers, Authorization=authorization(signed, signature)))
    sigv4.check_header(env, path, query, CREDENTIALS, CONF, now=NOW + 899)
    with pytest.raises(RequestTimeTooSkewed):
        sigv4.check_header(env, path, query, CREDENTIALS, CONF, now=NOW + 901)


def test_sigv4_wrong_region_and_missing_payload_hash_are_malformed():
    method, path, query, headers, signed, signature = GET_OBJECT
    env = environ(method, path, dict(headers, Authorization=authorization(signed, signature)))
    with pytest.raises(AuthorizationHeaderMalformed) as caught:
        sigv4.check_header(
            env, path, query, CREDENTIALS, S3Settings({"location": "eu-west-1"}), now=NOW
        )
    assert caught.value.extra["Region"] == "eu-west-1"
    del env["HTTP_X_AMZ_CONTENT_SHA256"]
    with pytest.raises(AuthorizationHeaderMalformed):
        sigv4.check_header(env, path, query, CREDENTIALS, CONF, now=NOW)


def test_canonical_uri_and_query_encoding_rules():
    assert sigv4.uri_encode("/a b/c~d+e$", keep_slash=True) == "/a%20b/c~d%2Be%24"
    assert sigv4.uri_encode("é/") == "%C3%A9%2F"
    assert sigv4.canonical_query("b=2&a=x%2Fy&a=1&empty") == "a=1&a=x%2Fy&b=2&empty="
    assert sigv4.canonical_query("X-Amz-Signature=zz&k=v", skip=("X-Amz-Signature",)) == "k=v"


PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential={ACCESS}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    f"&X-Amz-Date={STAMP}&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)


def presigned(query=PRESIGNED_QUERY, now=NOW):
    from proxy.s3api.request import parse_query

    env = environ("GET", "/test.txt", {"Host": HOST}, query)
    return sigv4.check_presigned(
        env, "/test.txt", parse_query(query), query, CREDENTIALS, CONF, now=now
    )


def test_presigned_url_matches_aws_published_example():
    result = presigned()
    assert result.payload_hash == "UNSIGNED-PAYLOAD"


def test_presigned_url_tampered_expired_or_too_long():
    with pytest.raises(SignatureDoesNotMatch):
        presigned(PRESIGNED_QUERY.replace("Expires=86400", "Expires=86401"))
    with pytest.raises(AccessDenied) as caught:
        presigned(now=NOW + 86401)
    assert caught.value.message == "Request has expired"
    with pytest.raises(AuthorizationQueryParametersError):
        presigned(PRESIGNED_QUERY.replace("Expires=86400", "Expires=604801"))


# -- streaming (aws-chunked) signatures ---------------------------------------------------

CHUNKED_HEADERS = {
    "Host": "s3.amazonaws.com",
    "x-amz-date": STAMP,
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "Content-Encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
}
CHUNK_SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)


def streaming_seed(trailer=False):
    """The AWS examples' seed requests (plain chunks, and chunks with a CRC32C trailer)."""
    headers = dict(CHUNKED_HEADERS)
    if trailer:
        headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
        headers["x-amz-trailer"] = "x-amz-checksum-crc32c"
        signed = (
            "content-encoding;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer"
        )
        seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    else:
        headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        headers["Content-Length"] = "66824"
        signed = (
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class"
        )
        seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    path = "/examplebucket/chunkObject.txt"
    env = environ("PUT", path, dict(headers, Authorization=authorization(signed, seed)))
    return env, sigv4.check_header(env, path, "", CREDENTIALS, CONF, now=NOW)


def test_streaming_seed_and_chunk_signatures_match_aws_example():
    _env, result = streaming_seed()
    signer = result.chunk_signer
    assert (
        signer.seed_signature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    )
    previous = signer.seed_signature
    for data, expected in zip((b"a" * 65536, b"a" * 1024, b""), CHUNK_SIGNATURES, strict=True):
        previous = signer.chunk_signature(previous, hashlib.sha256(data).hexdigest())
        assert previous == expected


def test_signed_trailer_example_signatures():
    _env, result = streaming_seed(trailer=True)
    signer = result.chunk_signer
    previous = signer.seed_signature
    for data, expected in zip(
        (b"a" * 65536, b"a" * 1024, b""),
        (
            "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
            "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
            "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
        ),
        strict=True,
    ):
        previous = signer.chunk_signature(previous, hashlib.sha256(data).hexdigest())
        assert previous == expected
    trailer = signer.trailer_signature(previous, b"x-amz-checksum-crc32c:sOO8/Q==\n")
    assert trailer == "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


# -- SigV2 --------------------------------------------------------------------------------

V2_NOW = calendar.timegm((2007, 3, 27, 19, 36, 42))


@pytest.mark.parametrize(
    "method,headers,raw_path,host_bucket,signature",
    [
        (
            "GET",
            {"Date": "Tue, 27 Mar 2007 19:36:42 +0000"},
            "/photos/puppy.jpg",
            "johnsmith",
            "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
        ),
        (
            "PUT",
            {"Date": "Tue, 27 Mar 2007 21:15:45 +0000", "Content-Type": "image/jpeg"},
            "/johnsmith/photos/puppy.jpg",
            None,
            "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
        ),
        (
            "GET",
            {"Date": "Tue, 27 Mar 2007 19:42:41 +0000"},
            "/",
            "johnsmith",
            "htDYFYduRNen8P9ZfE/s9SuKy0U=",
        ),
    ],
)
def test_sigv2_matches_classic_examples(method, headers, raw_path, host_bucket, signature):
    env = environ(method, raw_path, dict(headers, Authorization=f"AWS {ACCESS}:{signature}"))
    now = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
    result = sigv2.check_header(env, raw_path, "", CREDENTIALS, CONF, host_bucket, now=now)
    assert result.version == "v2" and result.credential.access_key == ACCESS


def test_sigv2_bucket_resource_with_or_without_trailing_slash():
    text = "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/johnsmith/"
    signature = sigv2.sign(SECRET, text)
    env = environ(
        "GET",
        "/johnsmith",
        {"Date": "Tue, 27 Mar 2007 19:42:41 +0000", "Authorization": f"AWS {ACCESS}:{signature}"},
    )
    sigv2.check_header(env, "/johnsmith", "", CREDENTIALS, CONF, now=V2_NOW)


def test_sigv2_query_auth_and_expiry():
    expires = str(V2_NOW + 60)
    text = f"GET\n\n\n{expires}\n/johnsmith/photos/puppy.jpg?response-content-type=text/plain"
    signature = sigv2.sign(SECRET, text)
    query = {
        "AWSAccessKeyId": ACCESS,
        "Expires": expires,
        "Signature": signature,
        "response-content-type": "text/plain",
    }
    qs = (
        f"AWSAccessKeyId={ACCESS}&Expires={expires}&response-content-type=text%2Fplain&"
        f"Signature={signature}"
    )
    env = environ("GET", "/johnsmith/photos/puppy.jpg", {}, qs)
    sigv2.check_query(env, "/johnsmith/photos/puppy.jpg", query, qs, CREDENTIALS, CONF, now=V2_NOW)
    with pytest.raises(AccessDenied):
        sigv2.check_query(
            env, "/johnsmith/photos/puppy.jpg", query, qs, CREDENTIALS, CONF, now=V2_NOW + 61
        )
    query["Signature"] = base64.b64encode(b"x" * 20).decode()
    with pytest.raises(SignatureDoesNotMatch):
        sigv2.check_query(
            env, "/johnsmith/photos/puppy.jpg", query, qs, CREDENTIALS, CONF, now=V2_NOW
        )


# -- credentials --------------------------------------------------------------------------


def test_credentials_parse_owner_records_and_defaults():
    found = parse_credentials(
        {
            "s3_user_test_tester": "AK1 SK1 display_name=tester email=t@example.com",
            "s3_user_test_tester.2": "AK2 SK2",
            "s3_user64_dGVzdF8y_dXNlcl94": "AK3 SK3",
            "user_test_tester": "ignored",
        }
    )
    assert set(found) == {"AK1", "AK2", "AK3"}
    assert found["AK1"].display_name == "tester" and found["AK1"].email == "t@example.com"
    assert found["AK1"].owner_id == canonical_id("test", "tester") == found["AK2"].owner_id
    assert len(found["AK1"].owner_id) == 64
    assert found["AK2"].display_name == "test:tester"
    assert (found["AK3"].account, found["AK3"].user) == ("test_2", "user_x")


def test_credentials_refuse_bad_lines():
    from common.config import ConfigError

    with pytest.raises(ConfigError):
        parse_credentials({"s3_user_test_tester": "onlyaccess"})
    with pytest.raises(ConfigError):
        parse_credentials({"s3_user_test_tester": "A S colour=blue"})
    with pytest.raises(ConfigError):
        parse_credentials({"s3_user_a_b": "A S", "s3_user_c_d": "A S2"})
