"""S3 rules that need no server: bucket names, XML in and out, error bodies, routing."""

import xml.etree.ElementTree as ET

import pytest

from proxy.s3api import router
from proxy.s3api.buckets import bucket_name_problem
from proxy.s3api.errors import MalformedXML, NoSuchKey, S3Error
from proxy.s3api.listing import listing_etag
from proxy.s3api.multidelete import parse_delete
from proxy.s3api.objects import check_copy_conditions, parse_copy_source
from proxy.s3api.responses import iso8601, s3_etag
from proxy.s3api.xml import Builder, find_text, parse


@pytest.mark.parametrize(
    "name",
    ["abc", "my-bucket", "my.bucket.v2", "a" * 63, "0bucket9", "xn-ok"],
)
def test_valid_bucket_names(name):
    assert bucket_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 64,  # too long
        "MyBucket",  # upper case
        "my_bucket",  # underscore
        "-bucket",  # starts with a hyphen
        "bucket-",  # ends with one
        "my..bucket",  # adjacent dots
        "my.-bucket",
        "192.168.5.4",  # an IP address
        "xn--bucket",  # reserved prefix
        "sthree-bucket",
        "bucket-s3alias",  # reserved suffix
        "bucket--ol-s3",
        "buck et",
        "bucket+segments",
    ],
)
def test_invalid_bucket_names(name):
    assert bucket_name_problem(name) is not None


def test_xml_parse_strips_namespaces_and_reads_text():
    body = (
        b'<?xml version="1.0"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Quiet>true</Quiet><Object><Key>a&amp;b</Key></Object>"
        b"<Object><Key>c</Key><VersionId>null</VersionId></Object></Delete>"
    )
    quiet, objects = parse_delete(body, 1000)
    assert quiet is True
    assert objects == [("a&b", None), ("c", "null")]
    root = parse(body, "Delete")
    assert find_text(root, "Quiet") == "true"
    assert find_text(root, "Missing", "x") == "x"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<Delete><Object><Key>x</Key></Object>",  # not closed
        b"not xml at all",
        b"<Other/>",  # wrong root
        b'<!DOCTYPE d [<!ENTITY x "y">]><Delete><Object><Key>&x;</Key></Object></Delete>',
        b'<?xml version="1.0"?><!DOCTYPE Delete SYSTEM "http://example.com/x.dtd"><Delete/>',
        b"<Delete></Delete>",  # no objects
        b"<Delete><Object><VersionId>1</VersionId></Object></Delete>",  # no key
    ],
)
def test_malformed_or_dangerous_xml_is_malformed_xml(body):
    with pytest.raises(MalformedXML) as caught:
        parse_delete(body, 1000)
    assert caught.value.status == 400 and caught.value.code == "MalformedXML"


def test_delete_of_more_than_the_limit_is_malformed():
    body = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 3 + b"</Delete>"
    with pytest.raises(MalformedXML):
        parse_delete(body, 2)


def test_builder_escapes_text_and_drops_what_xml_cannot_carry():
    builder = Builder("ListBucketResult")
    Builder.add(builder.root, "Key", "a<b>&\x01c")
    data = builder.tobytes()
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(data)
    assert root.tag == "{http://s3.amazonaws.com/doc/2006-03-01/}ListBucketResult"
    assert root[0].text == "a<b>&c"


def test_error_response_is_s3_xml_with_request_id():
    resp = NoSuchKey(key="some/key").response("tx123", "/bucket/some/key")
    assert resp.status_int == 404
    assert resp.headers["Content-Type"] == "application/xml"
    assert resp.headers["x-amz-request-id"] == "tx123"
    root = ET.fromstring(resp.body)
    assert root.tag == "Error"
    assert [child.tag for child in root] == [
        "Code",
        "Message",
        "Key",
        "Resource",
        "RequestId",
        "HostId",
    ]
    assert root.find("Code").text == "NoSuchKey"
    assert root.find("Key").text == "some/key"
    assert NoSuchKey().response("tx", head=True).body == b""
    custom = S3Error("odd", status=418, code="Teapot")
    assert custom.response("tx").status == "418 I'm a Teapot"


def test_etags_and_times_as_s3_shows_them():
    assert s3_etag("abc") == '"abc"' == s3_etag('"abc"')
    assert listing_etag({"hash": "d41d; s3_etag=0123-2; slo_etag=ff"}) == '"0123-2"'
    assert listing_etag({"hash": "d41d8cd98f00b204e9800998ecf8427e"}) == (
        '"d41d8cd98f00b204e9800998ecf8427e"'
    )
    assert iso8601("2024-05-01T12:34:56.789010") == "2024-05-01T12:34:56.789Z"
    assert iso8601("Wed, 01 May 2024 12:34:56 GMT") == "2024-05-01T12:34:56.000Z"
    assert iso8601(0) == "1970-01-01T00:00:00.000Z"


def test_copy_source_parsing():
    assert parse_copy_source("/bkt/a%20b/c%3Fd") == ("bkt", "a b/c?d", None)
    assert parse_copy_source("bkt/key?versionId=null") == ("bkt", "key", "null")
    for bad in ("bkt", "/bkt/", "bkt/key?versionId=3HL4kqtJ", "bkt/key?other=1"):
        with pytest.raises(S3Error):
            parse_copy_source(bad)


def test_copy_source_conditions_follow_s3_precedence():
    date = "Wed, 01 May 2024 12:00:00 GMT"
    earlier, later = "Wed, 01 May 2024 11:00:00 GMT", "Wed, 01 May 2024 13:00:00 GMT"
    check_copy_conditions({}, '"e1"', date)
    check_copy_conditions({"x-amz-copy-source-if-match": '"e1"'}, '"e1"', date)
    # if-match true wins over if-unmodified-since false
    check_copy_conditions(
        {"x-amz-copy-source-if-match": "e1", "x-amz-copy-source-if-unmodified-since": earlier},
        "e1",
        date,
    )
    for headers in (
        {"x-amz-copy-source-if-match": "other"},
        {"x-amz-copy-source-if-none-match": "e1"},
        {"x-amz-copy-source-if-unmodified-since": earlier},
        {"x-amz-copy-source-if-modified-since": later},
    ):
        with pytest.raises(S3Error) as caught:
            check_copy_conditions(headers, "e1", date)
        assert caught.value.code == "PreconditionFailed"


@pytest.mark.parametrize(
    "method,bucket,key,query,headers,expected",
    [
        ("GET", None, None, {}, {}, "buckets.list_buckets"),
        ("PUT", "b", None, {}, {}, "buckets.create_bucket"),
        ("HEAD", "b", None, {}, {}, "buckets.head_bucket"),
        ("DELETE", "b", None, {}, {}, "buckets.delete_bucket"),
        ("GET", "b", None, {}, {}, "listing.list_objects"),
        ("GET", "b", None, {"list-type": "2"}, {}, "listing.list_objects_v2"),
        ("GET", "b", None, {"versions": ""}, {}, "listing.list_object_versions"),
        ("GET", "b", None, {"location": ""}, {}, "buckets.get_bucket_location"),
        ("GET", "b", None, {"versioning": ""}, {}, "buckets.get_bucket_versioning"),
        ("GET", "b", None, {"acl": ""}, {}, "acl.get_bucket_acl"),
        ("PUT", "b", None, {"acl": ""}, {}, "acl.put_bucket_acl"),
        ("GET", "b", None, {"uploads": ""}, {}, "multipart.list_multipart_uploads"),
        ("POST", "b", None, {"delete": ""}, {}, "multidelete.delete_objects"),
        ("GET", "b", None, {"policy": ""}, {}, "router.no_such_configuration"),
        ("GET", "b", None, {"website": ""}, {}, "router.not_implemented"),
        ("GET", "b", "k", {}, {}, "objects.get_object"),
        ("HEAD", "b", "k", {}, {}, "objects.head_object"),
        ("PUT", "b", "k", {}, {}, "objects.put_object"),
        ("PUT", "b", "k", {}, {"x-amz-copy-source": "/b/x"}, "objects.copy_object"),
        ("DELETE", "b", "k", {}, {}, "objects.delete_object"),
        ("GET", "b", "k", {"acl": ""}, {}, "acl.get_object_acl"),
        ("PUT", "b", "k", {"acl": ""}, {}, "acl.put_object_acl"),
        ("POST", "b", "k", {"uploads": ""}, {}, "multipart.create_multipart_upload"),
        ("PUT", "b", "k", {"partNumber": "1", "uploadId": "u"}, {}, "multipart.upload_part"),
        (
            "PUT",
            "b",
            "k",
            {"partNumber": "1", "uploadId": "u"},
            {"x-amz-copy-source": "b/x"},
            "multipart.upload_part_copy",
        ),
        ("GET", "b", "k", {"uploadId": "u"}, {}, "multipart.list_parts"),
        ("POST", "b", "k", {"uploadId": "u"}, {}, "multipart.complete_multipart_upload"),
        ("DELETE", "b", "k", {"uploadId": "u"}, {}, "multipart.abort_multipart_upload"),
        ("PATCH", "b", "k", {}, {}, "router.method_not_allowed"),
        ("POST", None, None, {}, {}, "router.method_not_allowed"),
    ],
)
def test_router_dispatch_table(method, bucket, key, query, headers, expected):
    assert router.route(method, bucket, key, query, headers) == expected


def test_router_handlers_exist_for_our_modules():
    for name in (
        "buckets.list_buckets",
        "objects.copy_object",
        "acl.put_object_acl",
        "listing.list_objects_v2",
        "multidelete.delete_objects",
    ):
        assert callable(router.handler(name))
