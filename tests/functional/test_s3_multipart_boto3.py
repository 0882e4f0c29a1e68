"""S3 multipart uploads on a real ``haneul up`` cluster, through boto3: create, upload
parts, list, complete, abort, list uploads, ranges across parts, part copies, the
transfer manager with concurrency, and the errors S3 gives."""

import hashlib
import random

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.aio import AllInOne

MIB = 1024 * 1024
MIN_PART = MIB  # the cluster's s3api min_segment_size, set below (S3's is 5 MiB)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    aio = AllInOne(tmp_path_factory.mktemp("s3mp"))
    aio.up()
    try:
        if "s3" not in aio.info:
            pytest.skip("this cluster has no S3 endpoint")
        aio.set_proxy_options("filter:s3api", {"min_segment_size": str(MIN_PART)})
        yield aio
    finally:
        aio.down()


@pytest.fixture(scope="module")
def s3(cluster):
    info = cluster.info["s3"]
    return boto3.client(
        "s3",
        endpoint_url=info["endpoint"],
        region_name=info["region"],
        aws_access_key_id=info["access_key"],
        aws_secret_access_key=info["secret_key"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def bucket(s3):
    s3.create_bucket(Bucket="mpu")
    return "mpu"


def error_code(err):
    return err.value.response["Error"]["Code"]


def s3_etag(parts):
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


@pytest.fixture(scope="module")
def completed(s3, bucket):
    rng = random.Random(7)
    parts = [rng.randbytes(MIN_PART), rng.randbytes(MIN_PART + 123), rng.randbytes(4567)]
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key="dir/obj", ContentType="text/x-test", Metadata={"color": "red"}
    )
    upload_id = upload["UploadId"]
    etags = []
    for number, data in enumerate(parts, 1):
        resp = s3.upload_part(
            Bucket=bucket, Key="dir/obj", UploadId=upload_id, PartNumber=number, Body=data
        )
        assert resp["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        etags.append(resp["ETag"])
    listed = s3.list_parts(Bucket=bucket, Key="dir/obj", UploadId=upload_id)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3]
    assert [p["Size"] for p in listed["Parts"]] == [len(p) for p in parts]
    assert [p["ETag"] for p in listed["Parts"]] == etags
    page = s3.list_parts(Bucket=bucket, Key="dir/obj", UploadId=upload_id, MaxParts=2)
    assert page["IsTruncated"] and page["NextPartNumberMarker"] == 2
    rest = s3.list_parts(Bucket=bucket, Key="dir/obj", UploadId=upload_id, PartNumberMarker=2)
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="dir/obj",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    assert done["ETag"] == s3_etag(parts)
    return b"".join(parts), parts


def test_complete_gives_the_whole_object(s3, bucket, completed):
    data, parts = completed
    got = s3.get_object(Bucket=bucket, Key="dir/obj")
    assert got["Body"].read() == data
    assert got["ETag"] == s3_etag(parts)
    assert got["ContentType"] == "text/x-test"
    # (key case: the HTTP server capitalizes header names; S3 sends them lowercase)
    assert {k.lower(): v for k, v in got["Metadata"].items()} == {"color": "red"}
    head = s3.head_object(Bucket=bucket, Key="dir/obj")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == s3_etag(parts)


@pytest.mark.parametrize(
    "first, last", [(MIN_PART - 10, MIN_PART + 10), (0, 0), (2 * MIN_PART + 100, None)]
)
def test_ranges_across_parts(s3, bucket, completed, first, last):
    data, _parts = completed
    spec = f"bytes={first}-{'' if last is None else last}"
    got = s3.get_object(Bucket=bucket, Key="dir/obj", Range=spec)
    want = data[first : None if last is None else last + 1]
    assert got["Body"].read() == want
    assert got["ContentRange"].endswith(f"/{len(data)}")


def test_conditional_get_on_the_multipart_etag(s3, bucket, completed):
    _data, parts = completed
    got = s3.get_object(Bucket=bucket, Key="dir/obj", IfMatch=s3_etag(parts))
    assert got["ContentLength"] == len(_data)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="dir/obj", IfNoneMatch=s3_etag(parts))
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


def test_the_upload_is_gone_after_completion(s3, bucket, completed):
    uploads = s3.list_multipart_uploads(Bucket=bucket)
    assert "Uploads" not in uploads or not [u for u in uploads["Uploads"] if u["Key"] == "dir/obj"]


def test_listing_shows_size(s3, bucket, completed):
    data, _parts = completed
    entries = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]
    assert [(e["Key"], e["Size"]) for e in entries] == [("dir/obj", len(data))]


def test_listing_shows_the_multipart_etag(s3, bucket, completed):
    _data, parts = completed
    entries = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]
    assert entries[0]["ETag"] == s3_etag(parts)


def test_list_and_abort_uploads(s3, bucket):
    ids = {}
    for key in ("a/one", "a/two", "b"):
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    second_b = s3.create_multipart_upload(Bucket=bucket, Key="b")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="b", UploadId=ids["b"], PartNumber=1, Body=b"xyz")
    listed = s3.list_multipart_uploads(Bucket=bucket)
    keys = [(u["Key"], u["UploadId"]) for u in listed["Uploads"]]
    assert keys == [
        ("a/one", ids["a/one"]),
        ("a/two", ids["a/two"]),
        ("b", ids["b"]),
        ("b", second_b),
    ]
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["a/"]
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=3)
    assert page["IsTruncated"]
    nxt = s3.list_multipart_uploads(
        Bucket=bucket,
        KeyMarker=page["NextKeyMarker"],
        UploadIdMarker=page["NextUploadIdMarker"],
    )
    assert [u["UploadId"] for u in nxt["Uploads"]] == [second_b]
    for key, upload_id in keys:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    with pytest.raises(ClientError) as err:
        s3.abort_multipart_upload(Bucket=bucket, Key="b", UploadId=ids["b"])
    assert error_code(err) == "NoSuchUpload"


def start_upload(s3, bucket, key, sizes):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = []
    for number, size in enumerate(sizes, 1):
        resp = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=b"p" * size
        )
        etags.append(resp["ETag"])
    return upload_id, etags


def complete(s3, bucket, key, upload_id, parts):
    return s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
    )


def test_invalid_part(s3, bucket):
    upload_id, etags = start_upload(s3, bucket, "bad-part", [MIN_PART, 10])
    with pytest.raises(ClientError) as err:
        complete(s3, bucket, "bad-part", upload_id, [(1, etags[0]), (2, '"' + "0" * 32 + '"')])
    assert error_code(err) == "InvalidPart"
    with pytest.raises(ClientError) as err:
        complete(s3, bucket, "bad-part", upload_id, [(1, etags[0]), (3, etags[1])])
    assert error_code(err) == "InvalidPart"
    s3.abort_multipart_upload(Bucket=bucket, Key="bad-part", UploadId=upload_id)


def test_invalid_part_order(s3, bucket):
    upload_id, etags = start_upload(s3, bucket, "order", [MIN_PART, MIN_PART])
    with pytest.raises(ClientError) as err:
        complete(s3, bucket, "order", upload_id, [(2, etags[1]), (1, etags[0])])
    assert error_code(err) == "InvalidPartOrder"
    s3.abort_multipart_upload(Bucket=bucket, Key="order", UploadId=upload_id)


def test_entity_too_small(s3, bucket):
    upload_id, etags = start_upload(s3, bucket, "small", [100, MIN_PART])
    with pytest.raises(ClientError) as err:
        complete(s3, bucket, "small", upload_id, [(1, etags[0]), (2, etags[1])])
    assert error_code(err) == "EntityTooSmall"
    # the small part may still be the last one
    done = complete(s3, bucket, "small", upload_id, [(1, etags[0])])
    assert done["ETag"].endswith('-1"')
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"p" * 100


def test_no_such_upload(s3, bucket):
    with pytest.raises(ClientError) as err:
        s3.upload_part(Bucket=bucket, Key="k", UploadId="0" * 32, PartNumber=1, Body=b"x")
    assert error_code(err) == "NoSuchUpload"
    with pytest.raises(ClientError) as err:
        s3.list_parts(Bucket=bucket, Key="k", UploadId="nonsense")
    assert error_code(err) == "NoSuchUpload"
    with pytest.raises(ClientError) as err:
        complete(s3, bucket, "k", "f" * 32, [(1, '"' + "0" * 32 + '"')])
    assert error_code(err) == "NoSuchUpload"


def test_bad_part_number(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="pn")["UploadId"]
    with pytest.raises(ClientError) as err:
        s3.upload_part(Bucket=bucket, Key="pn", UploadId=upload_id, PartNumber=10001, Body=b"x")
    assert error_code(err) == "InvalidArgument"
    s3.abort_multipart_upload(Bucket=bucket, Key="pn", UploadId=upload_id)


def test_parts_left_out_are_deleted(s3, bucket, cluster):
    upload_id, etags = start_upload(s3, bucket, "partial", [MIN_PART, 5, 7])
    complete(s3, bucket, "partial", upload_id, [(1, etags[0]), (3, etags[2])])
    assert s3.get_object(Bucket=bucket, Key="partial")["Body"].read() == b"p" * (MIN_PART + 7)
    from swiftclient import client as swift

    conn = swift.Connection(
        authurl=cluster.auth_url, user=cluster.info["user"], key=cluster.info["key"], retries=0
    )
    names = [o["name"] for o in conn.get_container(bucket + "+segments", prefix="partial/")[1]]
    assert names == [f"partial/{upload_id}/1", f"partial/{upload_id}/3"]
    s3.delete_object(Bucket=bucket, Key="partial")
    names = [o["name"] for o in conn.get_container(bucket + "+segments", prefix="partial/")[1]]
    assert names == []


def test_upload_part_copy(s3, bucket, completed):
    data, _parts = completed
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copied")["UploadId"]
    first = s3.upload_part_copy(
        Bucket=bucket,
        Key="copied",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "dir/obj"},
        CopySourceRange=f"bytes=10-{MIN_PART + 9}",
    )
    second = s3.upload_part_copy(
        Bucket=bucket,
        Key="copied",
        UploadId=upload_id,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "dir/obj"},
    )
    etags = [first["CopyPartResult"]["ETag"], second["CopyPartResult"]["ETag"]]
    assert etags[0] == f'"{hashlib.md5(data[10 : MIN_PART + 10]).hexdigest()}"'
    complete(s3, bucket, "copied", upload_id, list(enumerate(etags, 1)))
    got = s3.get_object(Bucket=bucket, Key="copied")["Body"].read()
    assert got == data[10 : MIN_PART + 10] + data
    with pytest.raises(ClientError) as err:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="copied",
            UploadId="0" * 32,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "dir/obj"},
        )
    assert error_code(err) == "NoSuchUpload"


def test_transfer_manager_64_mib_with_concurrency(s3, bucket, tmp_path):
    data = random.Random(64).randbytes(64 * MIB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    config = TransferConfig(
        multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=4
    )
    s3.upload_file(str(src), bucket, "big.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-8"')
    dst = tmp_path / "back.bin"
    s3.download_file(bucket, "big.bin", str(dst), Config=config)
    assert hashlib.md5(dst.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()


def test_replacing_a_multipart_object_deletes_its_parts(s3, bucket, cluster):
    from swiftclient import client as swift

    conn = swift.Connection(
        authurl=cluster.auth_url, user=cluster.info["user"], key=cluster.info["key"], retries=0
    )
    first, etags = start_upload(s3, bucket, "again", [MIN_PART, 3])
    complete(s3, bucket, "again", first, list(enumerate(etags, 1)))
    second, etags = start_upload(s3, bucket, "again", [4])
    complete(s3, bucket, "again", second, list(enumerate(etags, 1)))
    assert s3.get_object(Bucket=bucket, Key="again")["Body"].read() == b"pppp"
    names = [o["name"] for o in conn.get_container(bucket + "+segments", prefix="again/")[1]]
    assert names == [f"again/{second}/1"]
