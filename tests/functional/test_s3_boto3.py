"""The S3 API of a real ``haneul up`` cluster, driven by boto3 (client and resource APIs,
path and virtual-hosted style), presigned URLs used with plain http.client, streaming
uploads, interop with the Swift API, and the errors bad input deserves."""

import base64
import hashlib
import hmac
import http.client
import io
import socket
import time
import urllib.parse
import zlib

import boto3
import botocore.httpchecksum
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from swiftclient import client as swift

from tests.aio import AllInOne

REGION = "us-east-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    aio = AllInOne(tmp_path_factory.mktemp("s3aio"))
    aio.up()
    try:
        yield aio
    finally:
        aio.down()


def make_client(cluster, user=None, style="path", endpoint=None, **config):
    pair = user or cluster.info["s3"]
    return boto3.client(
        "s3",
        endpoint_url=endpoint or cluster.info["s3"]["endpoint"],
        region_name=REGION,
        aws_access_key_id=pair["access_key"],
        aws_secret_access_key=pair["secret_key"],
        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 1}, **config),
    )


@pytest.fixture(scope="module")
def s3(cluster):
    return make_client(cluster)


@pytest.fixture(scope="module")
def bucket(s3):
    s3.create_bucket(Bucket="functional")
    return "functional"


def error_code(call, *args, **kwargs):
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response


def raw(cluster, method, path_and_query, body=None, headers=None):
    netloc = urllib.parse.urlsplit(cluster.info["s3"]["endpoint"]).netloc
    conn = http.client.HTTPConnection(netloc, timeout=30)
    try:
        conn.request(method, path_and_query, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def swift_conn(cluster):
    return swift.Connection(
        authurl=cluster.auth_url, user=cluster.info["user"], key=cluster.info["key"], retries=0
    )


# -- cluster.json and buckets --------------------------------------------------------------


def test_up_gives_every_test_user_a_key_pair(cluster):
    info = cluster.info
    assert info["s3"]["endpoint"] == info["proxy"]["url"]
    assert info["s3"]["region"] == REGION
    assert info["s3"]["user"] == "test:tester"
    users = {pair["user"]: pair for pair in info["s3_users"]}
    assert set(users) == {"test2:tester2", "test:tester3"}
    for pair in [info["s3"], *users.values()]:
        assert pair["access_key"] and pair["secret_key"] and len(pair["id"]) == 64
        assert pair["display_name"] and "@" in pair["email"]


def test_bucket_lifecycle(s3):
    assert s3.create_bucket(Bucket="lifecycle-b")["ResponseMetadata"]["HTTPStatusCode"] == 200
    # us-east-1: re-creating your own bucket succeeds.
    assert s3.create_bucket(Bucket="lifecycle-b")["ResponseMetadata"]["HTTPStatusCode"] == 200
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "lifecycle-b" in names
    owner = s3.list_buckets()["Owner"]
    assert owner["DisplayName"] == "tester" and len(owner["ID"]) == 64
    assert (
        s3.head_bucket(Bucket="lifecycle-b")["ResponseMetadata"]["HTTPHeaders"][
            "x-amz-bucket-region"
        ]
        == REGION
    )
    assert s3.get_bucket_location(Bucket="lifecycle-b").get("LocationConstraint") is None
    assert "Status" not in s3.get_bucket_versioning(Bucket="lifecycle-b")
    s3.put_object(Bucket="lifecycle-b", Key="k", Body=b"x")
    code, resp = error_code(s3.delete_bucket, Bucket="lifecycle-b")
    assert code == "BucketNotEmpty" and resp["ResponseMetadata"]["HTTPStatusCode"] == 409
    s3.delete_object(Bucket="lifecycle-b", Key="k")
    s3.delete_bucket(Bucket="lifecycle-b")
    assert error_code(s3.head_bucket, Bucket="lifecycle-b")[0] == "404"
    assert error_code(s3.list_objects, Bucket="lifecycle-b")[0] == "NoSuchBucket"


def test_bad_bucket_names_and_location_constraints(s3):
    for name in ("ab", "Upper-Case", "under_score", "192.168.1.1", "a..b"):
        with pytest.raises(ClientError) as caught:
            s3.create_bucket(Bucket=name)
        assert caught.value.response["Error"]["Code"] in ("InvalidBucketName",)
    code, _ = error_code(
        s3.create_bucket,
        Bucket="elsewhere-b",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    assert code == "IllegalLocationConstraintException"


# -- objects -------------------------------------------------------------------------------


def test_put_get_head_with_metadata_and_headers(s3, bucket):
    body = b"hello, object\n" * 100
    put = s3.put_object(
        Bucket=bucket,
        Key="dir/obj.txt",
        Body=body,
        ContentType="text/x-test",
        Metadata={"colour": "blue"},
        ContentDisposition="attachment",
        CacheControl="no-cache",
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dir/obj.txt")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "text/x-test"
    assert got["Metadata"] == {"colour": "blue"}
    assert got["ContentDisposition"] == "attachment" and got["CacheControl"] == "no-cache"
    head = s3.head_object(Bucket=bucket, Key="dir/obj.txt")
    assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]
    headers = head["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-request-id"] and headers["x-amz-id-2"]
    assert headers["last-modified"].endswith("GMT")


def test_range_and_conditional_gets(s3, bucket):
    body = bytes(range(256)) * 4
    etag = s3.put_object(Bucket=bucket, Key="ranged", Body=body)["ETag"]
    part = s3.get_object(Bucket=bucket, Key="ranged", Range="bytes=10-19")
    assert part["Body"].read() == body[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket=bucket, Key="ranged", Range="bytes=-5")["Body"].read() == body[-5:]
    code, resp = error_code(s3.get_object, Bucket=bucket, Key="ranged", Range="bytes=5000-")
    assert code == "InvalidRange" and resp["ResponseMetadata"]["HTTPStatusCode"] == 416
    assert s3.get_object(Bucket=bucket, Key="ranged", IfMatch=etag)["Body"].read() == body
    assert error_code(s3.get_object, Bucket=bucket, Key="ranged", IfMatch='"nope"')[0] == (
        "PreconditionFailed"
    )
    code, resp = error_code(s3.get_object, Bucket=bucket, Key="ranged", IfNoneMatch=etag)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 304
    future = time.time() + 3600
    code, resp = error_code(s3.get_object, Bucket=bucket, Key="ranged", IfModifiedSince=future)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 304
    code, _ = error_code(
        s3.get_object, Bucket=bucket, Key="ranged", IfUnmodifiedSince=time.time() - 3600
    )
    assert code == "PreconditionFailed"
    # If-Match true beats If-Unmodified-Since false (RFC 7232 / S3 order).
    got = s3.get_object(
        Bucket=bucket, Key="ranged", IfMatch=etag, IfUnmodifiedSince=time.time() - 3600
    )
    assert got["Body"].read() == body


def test_response_header_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="override", Body=b"data")
    got = s3.get_object(
        Bucket=bucket,
        Key="override",
        ResponseContentType="application/x-other",
        ResponseContentDisposition='attachment; filename="x.bin"',
        ResponseCacheControl="max-age=5",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
    )
    assert got["Body"].read() == b"data"
    assert got["ContentType"] == "application/x-other"
    assert got["ContentDisposition"] == 'attachment; filename="x.bin"'
    assert got["CacheControl"] == "max-age=5" and got["ContentLanguage"] == "fr"


def test_delete_object_is_204_even_when_absent(s3, bucket):
    s3.put_object(Bucket=bucket, Key="doomed", Body=b"x")
    assert (
        s3.delete_object(Bucket=bucket, Key="doomed")["ResponseMetadata"]["HTTPStatusCode"] == 204
    )
    assert (
        s3.delete_object(Bucket=bucket, Key="doomed")["ResponseMetadata"]["HTTPStatusCode"] == 204
    )
    assert error_code(s3.get_object, Bucket=bucket, Key="doomed")[0] == "NoSuchKey"
    assert error_code(s3.delete_object, Bucket="no-such-bucket-x", Key="k")[0] == "NoSuchBucket"


def test_copy_object_directives_and_conditions(s3, bucket):
    src = s3.put_object(
        Bucket=bucket,
        Key="src key+x",
        Body=b"copy me",
        Metadata={"a": "1"},
        ContentType="text/plain",
    )
    result = s3.copy_object(Bucket=bucket, Key="copied", CopySource=f"{bucket}/src key+x")
    assert result["CopyObjectResult"]["ETag"] == src["ETag"]
    assert result["CopyObjectResult"]["LastModified"].year >= 2024
    got = s3.get_object(Bucket=bucket, Key="copied")
    assert got["Body"].read() == b"copy me"
    assert got["Metadata"] == {"a": "1"}
    s3.copy_object(
        Bucket=bucket,
        Key="replaced",
        CopySource={"Bucket": bucket, "Key": "src key+x"},
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="application/x-new",
    )
    head = s3.head_object(Bucket=bucket, Key="replaced")
    assert head["Metadata"] == {"b": "2"}
    assert head["ContentType"] == "application/x-new"
    code, _ = error_code(
        s3.copy_object,
        Bucket=bucket,
        Key="x",
        CopySource=f"{bucket}/src key+x",
        CopySourceIfMatch='"other"',
    )
    assert code == "PreconditionFailed"
    s3.copy_object(
        Bucket=bucket,
        Key="cond",
        CopySource=f"{bucket}/src key+x",
        CopySourceIfMatch=src["ETag"],
        CopySourceIfModifiedSince=0,
    )
    code, _ = error_code(
        s3.copy_object, Bucket=bucket, Key="src key+x", CopySource=f"{bucket}/src key+x"
    )
    assert code == "InvalidRequest"
    assert (
        error_code(s3.copy_object, Bucket=bucket, Key="x", CopySource=f"{bucket}/missing")[0]
        == "NoSuchKey"
    )


def test_listing_v1_v2_versions_pagination_and_encoding(s3):
    s3.create_bucket(Bucket="listing-b")
    keys = ["a/1", "a/2", "b/1", "c", "d e+f", "zz/ü"]
    for key in keys:
        s3.put_object(Bucket="listing-b", Key=key, Body=key.encode())
    flat = s3.list_objects(Bucket="listing-b")
    assert [o["Key"] for o in flat["Contents"]] == keys
    assert flat["Contents"][0]["Owner"]["DisplayName"] == "tester"
    grouped = s3.list_objects(Bucket="listing-b", Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/", "b/", "zz/"]
    assert [o["Key"] for o in grouped["Contents"]] == ["c", "d e+f"]
    # Pages of two, prefixes counting as keys; boto3's paginators walk them.
    pages = list(
        s3.get_paginator("list_objects").paginate(
            Bucket="listing-b", Delimiter="/", PaginationConfig={"PageSize": 2}
        )
    )
    assert len(pages) == 3
    seen = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    seen += [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert sorted(seen) == ["a/", "b/", "c", "d e+f", "zz/"]
    v2_pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket="listing-b", PaginationConfig={"PageSize": 4}
        )
    )
    assert [o["Key"] for page in v2_pages for o in page["Contents"]] == keys
    assert v2_pages[0]["KeyCount"] == 4 and v2_pages[0]["IsTruncated"] is True
    assert "Owner" not in v2_pages[0]["Contents"][0]
    owned = s3.list_objects_v2(Bucket="listing-b", FetchOwner=True, StartAfter="c", MaxKeys=1)
    assert [o["Key"] for o in owned["Contents"]] == ["d e+f"]
    assert owned["Contents"][0]["Owner"]["DisplayName"] == "tester"
    versions = s3.list_object_versions(Bucket="listing-b", Prefix="a/")
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions["Versions"]] == [
        ("a/1", "null", True),
        ("a/2", "null", True),
    ]
    assert error_code(s3.list_objects, Bucket="listing-b", MaxKeys=-1)[0] == "InvalidArgument"
    # Asked for explicitly, encoding-type=url keys come back percent-encoded (boto3
    # decodes them only when it added the parameter itself, as above).
    encoded = s3.list_objects(Bucket="listing-b", Prefix="d", EncodingType="url")
    assert encoded["Contents"][0]["Key"] == "d%20e%2Bf"
    assert encoded["EncodingType"] == "url"


def test_multi_delete_quiet_and_verbose(s3):
    s3.create_bucket(Bucket="multidel-b")
    for i in range(5):
        s3.put_object(Bucket="multidel-b", Key=f"k{i}", Body=b"x")
    result = s3.delete_objects(
        Bucket="multidel-b",
        Delete={"Objects": [{"Key": "k0"}, {"Key": "k1"}, {"Key": "never-was"}]},
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == ["k0", "k1", "never-was"]
    quiet = s3.delete_objects(
        Bucket="multidel-b",
        Delete={"Objects": [{"Key": "k2"}, {"Key": "k3", "VersionId": "bogus"}], "Quiet": True},
    )
    assert "Deleted" not in quiet
    assert [(e["Key"], e["Code"]) for e in quiet["Errors"]] == [("k3", "NoSuchVersion")]
    left = [o["Key"] for o in s3.list_objects(Bucket="multidel-b")["Contents"]]
    assert left == ["k3", "k4"]


def test_acls_canned_and_public_read_through_swift(cluster, s3):
    s3.create_bucket(Bucket="acl-b", ACL="public-read")
    s3.put_object(Bucket="acl-b", Key="pub", Body=b"for everyone", ACL="public-read")
    grants = s3.get_bucket_acl(Bucket="acl-b")["Grants"]
    assert {(g["Grantee"]["Type"], g["Permission"]) for g in grants} == {
        ("CanonicalUser", "FULL_CONTROL"),
        ("Group", "READ"),
    }
    object_grants = s3.get_object_acl(Bucket="acl-b", Key="pub")["Grants"]
    assert ("Group", "READ") in {(g["Grantee"]["Type"], g["Permission"]) for g in object_grants}
    # public-read is Swift's .r:* read ACL: an anonymous Swift GET works.
    status, _headers, body = raw(cluster, "GET", "/v1/AUTH_test/acl-b/pub")
    assert status == 200 and body == b"for everyone"
    s3.put_bucket_acl(Bucket="acl-b", ACL="private")
    assert len(s3.get_bucket_acl(Bucket="acl-b")["Grants"]) == 1
    assert raw(cluster, "GET", "/v1/AUTH_test/acl-b/pub")[0] == 401
    s3.put_object_acl(Bucket="acl-b", Key="pub", ACL="private")
    assert len(s3.get_object_acl(Bucket="acl-b", Key="pub")["Grants"]) == 1
    assert s3.get_object(Bucket="acl-b", Key="pub")["Body"].read() == b"for everyone"


def test_resource_api_and_upload_download(s3, cluster, tmp_path):
    pair = cluster.info["s3"]
    resource = boto3.resource(
        "s3",
        endpoint_url=pair["endpoint"],
        region_name=REGION,
        aws_access_key_id=pair["access_key"],
        aws_secret_access_key=pair["secret_key"],
        config=Config(s3={"addressing_style": "path"}),
    )
    bkt = resource.Bucket("resource-b")
    bkt.create()
    source = tmp_path / "up.bin"
    source.write_bytes(b"r" * 100_000)
    bkt.upload_file(str(source), "files/up.bin")
    bkt.Object("files/small").put(Body=b"small")
    assert sorted(o.key for o in bkt.objects.all()) == ["files/small", "files/up.bin"]
    target = tmp_path / "down.bin"
    bkt.download_file("files/up.bin", str(target))
    assert target.read_bytes() == b"r" * 100_000
    assert bkt.Object("files/small").get()["Body"].read() == b"small"
    bkt.objects.all().delete()
    bkt.delete()


def test_virtual_hosted_style(cluster, monkeypatch):
    """``<bucket>.localhost`` does not resolve here, so this process resolves it."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = urllib.parse.urlsplit(cluster.info["s3"]["endpoint"]).port
    vhost = make_client(cluster, style="virtual", endpoint=f"http://localhost:{port}")
    vhost.create_bucket(Bucket="vhost-b")
    vhost.put_object(Bucket="vhost-b", Key="in/vhost", Body=b"virtual")
    assert vhost.get_object(Bucket="vhost-b", Key="in/vhost")["Body"].read() == b"virtual"
    assert [o["Key"] for o in vhost.list_objects_v2(Bucket="vhost-b")["Contents"]] == ["in/vhost"]
    v2 = make_client(
        cluster, style="virtual", endpoint=f"http://localhost:{port}", signature_version="s3"
    )
    assert v2.get_object(Bucket="vhost-b", Key="in/vhost")["Body"].read() == b"virtual"
    # The same bucket, path style: one namespace.
    s3 = make_client(cluster)
    assert s3.get_object(Bucket="vhost-b", Key="in/vhost")["Body"].read() == b"virtual"


def test_sigv2_client_works(cluster, bucket):
    v2 = make_client(cluster, signature_version="s3")
    v2.put_object(Bucket=bucket, Key="v2 obj", Body=b"old style")
    assert v2.get_object(Bucket=bucket, Key="v2 obj")["Body"].read() == b"old style"
    assert "v2 obj" in [o["Key"] for o in v2.list_objects(Bucket=bucket)["Contents"]]


def test_default_boto3_checksum_trailer_upload(cluster, bucket, monkeypatch):
    """boto3 sends STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer over TLS;
    make it believe it is on TLS so the same bytes come over plain HTTP."""
    real_urlparse = botocore.httpchecksum.urlparse
    monkeypatch.setattr(
        botocore.httpchecksum,
        "urlparse",
        lambda url: real_urlparse(url.replace("http://", "https://", 1)),
    )
    seen = {}
    client = make_client(cluster)
    client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **kw: seen.update(request.headers)
    )
    body = bytes(range(256)) * 1000
    put = client.put_object(Bucket=bucket, Key="trailer", Body=io.BytesIO(body))
    assert seen["X-Amz-Content-SHA256"] == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert seen["X-Amz-Trailer"] == b"x-amz-checksum-crc32"
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert put["ChecksumCRC32"] == crc
    assert client.get_object(Bucket=bucket, Key="trailer")["Body"].read() == body


def test_a_checksum_header_is_kept_and_given_back(cluster, bucket):
    client = make_client(cluster)
    client.put_object(Bucket=bucket, Key="sha1", Body=b"abc", ChecksumAlgorithm="SHA1")
    got = client.get_object(Bucket=bucket, Key="sha1", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"abc"
    assert got["ChecksumSHA1"] == base64.b64encode(hashlib.sha1(b"abc").digest()).decode()


# -- presigned URLs ------------------------------------------------------------------------


def test_presigned_put_and_get_with_http_client(cluster, bucket):
    s3v4 = make_client(cluster, signature_version="s3v4")
    put_url = s3v4.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "pre signed/ü"}, ExpiresIn=300
    )
    assert "X-Amz-Signature=" in put_url
    parts = urllib.parse.urlsplit(put_url)
    status, _h, _b = raw(cluster, "PUT", f"{parts.path}?{parts.query}", body=b"via presign")
    assert status == 200
    get_url = s3v4.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "pre signed/ü"}, ExpiresIn=300
    )
    parts = urllib.parse.urlsplit(get_url)
    status, headers, body = raw(cluster, "GET", f"{parts.path}?{parts.query}")
    assert (status, body) == (200, b"via presign")
    assert headers["etag"] == f'"{hashlib.md5(b"via presign").hexdigest()}"'
    # Tampered: another key under the same signature.
    status, _h, body = raw(
        cluster, "GET", f"{parts.path.replace('signed', 'signet')}?{parts.query}"
    )
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    # Expired: signed to last one second, used later.
    old = s3v4.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "pre signed/ü"}, ExpiresIn=1
    )
    time.sleep(2.1)
    parts = urllib.parse.urlsplit(old)
    status, _h, body = raw(cluster, "GET", f"{parts.path}?{parts.query}")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    assert b"Request has expired" in body


# -- bad input -----------------------------------------------------------------------------


def test_wrong_secret_and_unknown_key(cluster, bucket):
    pair = dict(cluster.info["s3"], secret_key="not-the-secret")
    code, resp = error_code(make_client(cluster, user=pair).list_objects, Bucket=bucket)
    assert code == "SignatureDoesNotMatch"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 403
    pair = dict(cluster.info["s3"], access_key="HNNOSUCHKEY0000000000")
    code, resp = error_code(make_client(cluster, user=pair).list_buckets)
    assert code == "InvalidAccessKeyId"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_other_users_see_their_own_account(cluster, s3, bucket):
    users = {pair["user"]: pair for pair in cluster.info["s3_users"]}
    other = make_client(cluster, user=users["test2:tester2"])
    assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]
    # tester3 has no admin on AUTH_test and no ACL grants it anything.
    limited = make_client(cluster, user=users["test:tester3"])
    assert error_code(limited.list_objects, Bucket=bucket)[0] == "AccessDenied"


def test_content_md5_mismatch_is_bad_digest_and_nothing_is_stored(s3, bucket):
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    code, resp = error_code(
        s3.put_object, Bucket=bucket, Key="md5-bad", Body=b"payload", ContentMD5=wrong
    )
    assert code == "BadDigest" and resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error_code(s3.head_object, Bucket=bucket, Key="md5-bad")[0] == "404"
    code, _ = error_code(
        s3.put_object, Bucket=bucket, Key="md5-bad", Body=b"payload", ContentMD5="not base64!"
    )
    assert code == "InvalidDigest"
    good = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5-good", Body=b"payload", ContentMD5=good)
    assert s3.get_object(Bucket=bucket, Key="md5-good")["Body"].read() == b"payload"


def test_payload_sha256_mismatch_stores_nothing(cluster, s3, bucket):
    path = f"/{bucket}/sha-bad"
    status, body = signed_raw(
        cluster, "PUT", path, b"real body", payload_hash=hashlib.sha256(b"other body").hexdigest()
    )
    assert status == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in body
    assert error_code(s3.head_object, Bucket=bucket, Key="sha-bad")[0] == "404"


class _Signer(S3SigV4Auth):
    def __init__(self, credentials, payload_hash):
        super().__init__(credentials, "s3", REGION)
        self.payload_hash = payload_hash

    def payload(self, request):
        return self.payload_hash


def signed_raw(cluster, method, path, body, payload_hash, headers=None):
    """Send ``body`` with a SigV4 header signature over ``payload_hash``."""
    pair = cluster.info["s3"]
    url = pair["endpoint"] + urllib.parse.quote(path)
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    _Signer(Credentials(pair["access_key"], pair["secret_key"]), payload_hash).add_auth(request)
    prepared = request.prepare()
    status, _h, answer = raw(
        cluster,
        method,
        urllib.parse.urlsplit(prepared.url).path,
        body=body,
        headers=dict(prepared.headers),
    )
    return status, answer


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def streamed_body(secret, amz_date, seed, chunks, tamper_at=None):
    """An aws-chunked body whose chunk signatures chain from ``seed`` (AWS's formula)."""
    date = amz_date[:8]
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), date), REGION), "s3"), "aws4_request")
    scope = f"{date}/{REGION}/s3/aws4_request"
    previous, out = seed, b""
    for index, data in enumerate([*chunks, b""]):
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                amz_date,
                scope,
                previous,
                hashlib.sha256(b"").hexdigest(),
                hashlib.sha256(data).hexdigest(),
            ]
        )
        previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if index == tamper_at:
            data = data[:-1] + bytes([data[-1] ^ 1])
        out += f"{len(data):x};chunk-signature={previous}\r\n".encode() + data + b"\r\n"
    return out


@pytest.mark.parametrize("tamper_at", [None, 0, 1])
def test_signed_streaming_upload(cluster, s3, bucket, tamper_at):
    pair = cluster.info["s3"]
    chunks = [b"A" * 65536, b"B" * 10000]
    data = b"".join(chunks)
    key = f"streamed-{tamper_at}"
    encoded_length = len(streamed_body(pair["secret_key"], "20000101T000000Z", "0" * 64, chunks))
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Length": str(encoded_length),
    }
    request = AWSRequest(
        method="PUT", url=f"{pair['endpoint']}/{bucket}/{key}", data=b"", headers=headers
    )
    _Signer(
        Credentials(pair["access_key"], pair["secret_key"]), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    ).add_auth(request)
    amz_date = request.headers["X-Amz-Date"]
    seed = request.headers["Authorization"].rpartition("Signature=")[2]
    body = streamed_body(pair["secret_key"], amz_date, seed, chunks, tamper_at)
    assert len(body) == encoded_length
    status, _h, answer = raw(
        cluster, "PUT", f"/{bucket}/{key}", body=body, headers=dict(request.headers)
    )
    if tamper_at is None:
        assert status == 200, answer
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    else:
        assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in answer
        assert error_code(s3.head_object, Bucket=bucket, Key=key)[0] == "404"


# -- interop with the Swift API ------------------------------------------------------------


def test_s3_and_swift_see_the_same_objects_and_etags(cluster, s3, bucket):
    conn = swift_conn(cluster)
    put = s3.put_object(
        Bucket=bucket, Key="from-s3", Body=b"written by S3", Metadata={"origin": "s3"}
    )
    headers, body = conn.get_object(bucket, "from-s3")
    assert body == b"written by S3"
    assert f'"{headers["etag"].strip(chr(34))}"' == put["ETag"]
    assert headers["x-object-meta-origin"] == "s3"
    etag = conn.put_object(
        bucket, "from-swift", b"written by Swift", headers={"X-Object-Meta-Origin": "swift"}
    )
    got = s3.get_object(Bucket=bucket, Key="from-swift")
    assert got["Body"].read() == b"written by Swift"
    assert got["ETag"] == f'"{etag.strip(chr(34))}"'
    assert got["Metadata"] == {"origin": "swift"}
    conn.put_container("made-by-swift")
    assert "made-by-swift" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
