"""S3 multipart pieces that need no cluster: ETags, ids, part numbers, XML bodies,
listing pages of uploads."""

import hashlib
import xml.etree.ElementTree as ET

import pytest

from proxy.s3api import multipart_parts as mp
from proxy.s3api.errors import InvalidArgument, InvalidPartOrder, MalformedXML

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def parsed(builder):
    return ET.fromstring(builder.tobytes())


def test_multipart_etag_is_md5_of_binary_md5s_with_count():
    parts = [b"a" * 100, b"b" * 50]
    md5s = [hashlib.md5(p).hexdigest() for p in parts]
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert mp.multipart_etag(md5s) == f"{expected}-2"
    assert mp.multipart_etag([f'"{m.upper()}"' for m in md5s]) == f"{expected}-2"


def test_s3_etag_of_headers_and_listing_entries():
    assert mp.s3_etag_of({"ETag": "abc"}) == '"abc"'
    assert mp.s3_etag_of({"etag": '"abc"', "x-object-sysmeta-s3api-etag": "def-3"}) == '"def-3"'
    assert mp.s3_etag_of({"name": "k", "hash": "m5"}) == '"m5"'
    assert mp.s3_etag_of({"name": "k", "hash": "m5; s3_etag=e-2; slo_etag=x"}) == '"e-2"'
    assert mp.s3_etag_of({"name": "k", "hash": "m5", "s3_etag": "e-4"}) == '"e-4"'
    assert mp.s3_etag_of({}) is None


def test_upload_ids_are_time_ordered_and_never_part_numbers():
    first = mp.new_upload_id(now_ns=1_000)
    second = mp.new_upload_id(now_ns=2_000)
    assert first < second
    assert mp.is_upload_id(first)
    assert not mp.is_upload_id("12345")
    assert not mp.is_upload_id("../" + first[3:])
    assert mp.split_marker(f"a/b/{first}") == ("a/b", first)
    assert mp.split_marker(f"a/b/{first}/7") is None
    assert mp.part_number_of(f"k/{first}/7", f"k/{first}/") == 7
    assert mp.part_number_of(f"k/{first}/07", f"k/{first}/") is None


@pytest.mark.parametrize("value", ["0", "10001", "-1", "x", "", None, "1.5"])
def test_bad_part_numbers(value):
    with pytest.raises(InvalidArgument):
        mp.parse_part_number(value, 10000)


def test_good_part_numbers():
    assert mp.parse_part_number("1", 10000) == 1
    assert mp.parse_part_number("10000", 10000) == 10000


def complete_body(parts):
    items = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in parts)
    return f'<CompleteMultipartUpload xmlns="{NS[1:-1]}">{items}</CompleteMultipartUpload>'.encode()


def test_complete_body_is_parsed_in_order():
    body = complete_body([(1, '"AA"'), (3, "bb")])
    assert mp.parse_complete_body(body, 10000) == [(1, "aa"), (3, "bb")]


@pytest.mark.parametrize(
    "body, error",
    [
        (b"", MalformedXML),
        (b"<nope/>", MalformedXML),
        (b"<CompleteMultipartUpload></CompleteMultipartUpload>", MalformedXML),
        (
            b"<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>",
            MalformedXML,
        ),
        (complete_body([(2, "a"), (1, "b")]), InvalidPartOrder),
        (complete_body([(2, "a"), (2, "b")]), InvalidPartOrder),
        (complete_body([(0, "a")]), InvalidArgument),
    ],
)
def test_bad_complete_bodies(body, error):
    with pytest.raises(error):
        mp.parse_complete_body(body, 10000)


def test_initiate_and_complete_results():
    root = parsed(mp.initiate_result("b", "k/ey", "u" * 32))
    assert root.tag == NS + "InitiateMultipartUploadResult"
    assert root.find(NS + "UploadId").text == "u" * 32
    root = parsed(mp.complete_result("http://h/b/k", "b", "k", "abc-2"))
    assert root.find(NS + "ETag").text == '"abc-2"'
    assert root.find(NS + "Location").text == "http://h/b/k"


def test_list_parts_result():
    info = {
        "bucket": "b",
        "key": "a key",
        "upload_id": "u",
        "owner_id": "o",
        "display_name": "d",
        "marker": 0,
        "next_marker": 2,
        "max_parts": 2,
        "truncated": True,
    }
    parts = [
        {"number": 1, "last_modified": "2024-01-01T00:00:00.000Z", "etag": "e1", "size": 5},
        {"number": 2, "last_modified": "2024-01-01T00:00:00.000Z", "etag": "e2", "size": 6},
    ]
    root = parsed(mp.list_parts_result(info, parts, "url"))
    assert root.find(NS + "Key").text == "a%20key"
    assert root.find(NS + "IsTruncated").text == "true"
    assert root.find(NS + "NextPartNumberMarker").text == "2"
    assert [p.find(NS + "ETag").text for p in root.findall(NS + "Part")] == ['"e1"', '"e2"']
    assert root.find(NS + "Initiator/" + NS + "ID").text == "o"


UPLOADS = [
    ("a/1", "u1", "t"),
    ("a/2", "u2", "t"),
    ("b", "u3", "t"),
    ("b", "u4", "t"),
    ("c", "u5", "t"),
]


def test_select_uploads_pages_by_key_then_upload_id():
    shown, prefixes, truncated, next_key, next_id = mp.select_uploads(UPLOADS, "", "", "", "", 3)
    assert [u[1] for u in shown] == ["u1", "u2", "u3"] and truncated
    assert (next_key, next_id) == ("b", "u3")
    shown, _p, truncated, _k, _i = mp.select_uploads(UPLOADS, "", "", next_key, next_id, 3)
    assert [u[1] for u in shown] == ["u4", "u5"] and not truncated


def test_select_uploads_with_prefix_and_delimiter():
    shown, prefixes, truncated, _k, _i = mp.select_uploads(UPLOADS, "", "/", "", "", 10)
    assert prefixes == ["a/"]
    assert [u[1] for u in shown] == ["u3", "u4", "u5"]
    shown, prefixes, _t, _k, _i = mp.select_uploads(UPLOADS, "a/", "", "", "", 10)
    assert [u[0] for u in shown] == ["a/1", "a/2"] and prefixes == []
    # a common prefix handed out as a marker is not listed again
    shown, prefixes, _t, _k, _i = mp.select_uploads(UPLOADS, "", "/", "a/", "", 10)
    assert prefixes == [] and [u[1] for u in shown] == ["u3", "u4", "u5"]


def test_list_uploads_result():
    info = {
        "bucket": "b",
        "key_marker": "",
        "upload_id_marker": "",
        "next_key_marker": "",
        "next_upload_id_marker": "",
        "delimiter": "/",
        "prefix": "",
        "max_uploads": 1000,
        "truncated": False,
        "owner_id": "o",
        "display_name": "d",
    }
    root = parsed(mp.list_uploads_result(info, UPLOADS[2:3], ["a/"], None))
    upload = root.find(NS + "Upload")
    assert upload.find(NS + "Key").text == "b"
    assert upload.find(NS + "StorageClass").text == "STANDARD"
    assert root.find(NS + "CommonPrefixes/" + NS + "Prefix").text == "a/"


def test_copy_source_range():
    assert mp.parse_copy_range("bytes=0-9", 10) == (0, 10)
    assert mp.parse_copy_range("bytes=5-10", 10) is None
    for bad in ("bytes=5-", "bytes=-5", "0-5", "bytes=6-5", None):
        with pytest.raises(InvalidArgument):
            mp.parse_copy_range(bad, 10)


def test_int_args():
    assert mp.parse_int_arg({}, "max-parts", 1000, 1000) == 1000
    assert mp.parse_int_arg({"max-parts": "5000"}, "max-parts", 1000, 1000) == 1000
    with pytest.raises(InvalidArgument):
        mp.parse_int_arg({"max-parts": "x"}, "max-parts", 1000, 1000)
    with pytest.raises(InvalidArgument):
        mp.parse_int_arg({"max-parts": "-1"}, "max-parts", 1000, 1000)
