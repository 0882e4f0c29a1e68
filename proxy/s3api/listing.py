"""ListObjects (v1), ListObjectsV2 and ListObjectVersions over a Swift container listing.

One Swift listing call per S3 page: ``limit`` is max-keys plus a little, so whether
more follow (``IsTruncated``) is known without a second call. Common prefixes count
towards max-keys as S3 counts them. A marker that is itself a common prefix (what a
previous page handed out as NextMarker) is not listed again. With
``encoding-type=url``, keys, prefixes, delimiter and markers are percent-encoded.
A V2 continuation token is the base64url of the last name returned.
"""

import base64
import binascii
from urllib.parse import quote

from proxy.s3api.buckets import check_existing_name, owner_element
from proxy.s3api.errors import InvalidArgument, NoSuchBucket
from proxy.s3api.responses import iso8601, raise_for, s3_etag, xml_response
from proxy.s3api.xml import Builder


def listing_etag(entry):
    """The S3 ETag of a listing entry. A multipart upload's object lists its S3 ETag
    as a parameter of the hash: ``<md5>; s3_etag=<etag>[; slo_etag=...]``."""
    value = entry.get("hash") or ""
    etag, *params = value.split(";")
    for param in params:
        name, _, found = param.strip().partition("=")
        if name == "s3_etag" and found:
            return s3_etag(found)
    return s3_etag(etag)


def _max_keys(s3req):
    raw = s3req.query.get("max-keys")
    limit = s3req.conf.max_bucket_listing
    if raw is None or raw == "":
        return limit
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(
            "Provided max-keys not an integer or within integer range",
            argument_name="max-keys",
            argument_value=raw,
        ) from None
    if value < 0:
        raise InvalidArgument(
            "Argument maxKeys must be an integer between 0 and 2147483647",
            argument_name="max-keys",
            argument_value=raw,
        )
    return min(value, limit)


def _encoder(s3req):
    encoding = s3req.query.get("encoding-type")
    if encoding is None:
        return None, lambda text: text
    if encoding.lower() != "url":
        raise InvalidArgument(
            "Invalid Encoding Method specified in Request",
            argument_name="encoding-type",
            argument_value=encoding,
        )
    return "url", lambda text: quote(text, safe="/")


def fetch(s3req, prefix, delimiter, marker, max_keys):
    """``(entries, truncated)``: up to ``max_keys`` Swift listing entries after ``marker``
    (objects as dicts, common prefixes as ``{"subdir": ...}``)."""
    bucket = s3req.bucket
    check_existing_name(bucket)
    query = {"format": "json", "limit": str(max_keys + 2)}
    if prefix:
        query["prefix"] = prefix
    if delimiter:
        query["delimiter"] = delimiter
    if marker:
        query["marker"] = marker
    resp = s3req.subrequest("GET", bucket, query=query)
    raise_for(resp, s3req, key=None, not_found=NoSuchBucket(bucket_name=bucket))
    entries = resp.json if resp.status_int == 200 and resp.body else []
    if marker:
        entries = [e for e in entries if e.get("subdir", e.get("name")) > marker]
    if max_keys == 0:
        return [], False
    return entries[:max_keys], len(entries) > max_keys


def _add_entries(root, entries, s3req, encode, with_owner):
    for entry in entries:
        if "subdir" in entry:
            continue
        contents = Builder.add(root, "Contents")
        Builder.add(contents, "Key", encode(entry["name"]))
        Builder.add(contents, "LastModified", iso8601(entry["last_modified"]))
        Builder.add(contents, "ETag", listing_etag(entry))
        Builder.add(contents, "Size", str(entry["bytes"]))
        if with_owner:
            owner_element(contents, s3req)
        Builder.add(contents, "StorageClass", "STANDARD")
    for entry in entries:
        if "subdir" in entry:
            prefixes = Builder.add(root, "CommonPrefixes")
            Builder.add(prefixes, "Prefix", encode(entry["subdir"]))


def _last_name(entries):
    last = entries[-1]
    return last.get("subdir", last.get("name"))


def list_objects(s3req):
    """GET /bucket: ListObjects, version 1."""
    query = s3req.query
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    marker = query.get("marker", "")
    encoding, encode = _encoder(s3req)
    max_keys = _max_keys(s3req)
    entries, truncated = fetch(s3req, prefix, delimiter, marker, max_keys)
    builder = Builder("ListBucketResult")
    root = builder.root
    Builder.add(root, "Name", s3req.bucket)
    Builder.add(root, "Prefix", encode(prefix))
    Builder.add(root, "Marker", encode(marker))
    if truncated and entries:
        Builder.add(root, "NextMarker", encode(_last_name(entries)))
    Builder.add(root, "MaxKeys", str(max_keys))
    if delimiter:
        Builder.add(root, "Delimiter", encode(delimiter))
    if encoding:
        Builder.add(root, "EncodingType", encoding)
    Builder.add(root, "IsTruncated", "true" if truncated else "false")
    _add_entries(root, entries, s3req, encode, with_owner=True)
    return xml_response(builder)


def _token(name):
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii")


def _untoken(token):
    try:
        return base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4)).decode(
            "utf-8"
        )
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidArgument(
            "The continuation token provided is incorrect",
            argument_name="continuation-token",
            argument_value=token,
        ) from None


def list_objects_v2(s3req):
    """GET /bucket?list-type=2: ListObjectsV2."""
    query = s3req.query
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    encoding, encode = _encoder(s3req)
    max_keys = _max_keys(s3req)
    token = query.get("continuation-token")
    start_after = query.get("start-after", "")
    marker = _untoken(token) if token is not None else start_after
    fetch_owner = query.get("fetch-owner", "false").lower() == "true"
    entries, truncated = fetch(s3req, prefix, delimiter, marker, max_keys)
    builder = Builder("ListBucketResult")
    root = builder.root
    Builder.add(root, "Name", s3req.bucket)
    Builder.add(root, "Prefix", encode(prefix))
    if start_after:
        Builder.add(root, "StartAfter", encode(start_after))
    if token is not None:
        Builder.add(root, "ContinuationToken", token)
    if truncated and entries:
        Builder.add(root, "NextContinuationToken", _token(_last_name(entries)))
    Builder.add(root, "KeyCount", str(len(entries)))
    Builder.add(root, "MaxKeys", str(max_keys))
    if delimiter:
        Builder.add(root, "Delimiter", encode(delimiter))
    if encoding:
        Builder.add(root, "EncodingType", encoding)
    Builder.add(root, "IsTruncated", "true" if truncated else "false")
    _add_entries(root, entries, s3req, encode, with_owner=fetch_owner)
    return xml_response(builder)


def list_object_versions(s3req):
    """GET /bucket?versions: an unversioned bucket, so every object is version "null"."""
    query = s3req.query
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    key_marker = query.get("key-marker", "")
    version_marker = query.get("version-id-marker", "")
    if version_marker and not key_marker:
        raise InvalidArgument(
            "A version-id marker cannot be specified without a key marker.",
            argument_name="version-id-marker",
            argument_value=version_marker,
        )
    if version_marker and version_marker != "null":
        raise InvalidArgument(
            "Invalid version id specified",
            argument_name="version-id-marker",
            argument_value=version_marker,
        )
    encoding, encode = _encoder(s3req)
    max_keys = _max_keys(s3req)
    entries, truncated = fetch(s3req, prefix, delimiter, key_marker, max_keys)
    builder = Builder("ListVersionsResult")
    root = builder.root
    Builder.add(root, "Name", s3req.bucket)
    Builder.add(root, "Prefix", encode(prefix))
    Builder.add(root, "KeyMarker", encode(key_marker))
    Builder.add(root, "VersionIdMarker", version_marker)
    if truncated and entries:
        Builder.add(root, "NextKeyMarker", encode(_last_name(entries)))
        Builder.add(root, "NextVersionIdMarker", "null")
    Builder.add(root, "MaxKeys", str(max_keys))
    if delimiter:
        Builder.add(root, "Delimiter", encode(delimiter))
    if encoding:
        Builder.add(root, "EncodingType", encoding)
    Builder.add(root, "IsTruncated", "true" if truncated else "false")
    for entry in entries:
        if "subdir" in entry:
            continue
        version = Builder.add(root, "Version")
        Builder.add(version, "Key", encode(entry["name"]))
        Builder.add(version, "VersionId", "null")
        Builder.add(version, "IsLatest", "true")
        Builder.add(version, "LastModified", iso8601(entry["last_modified"]))
        Builder.add(version, "ETag", listing_etag(entry))
        Builder.add(version, "Size", str(entry["bytes"]))
        owner_element(version, s3req)
        Builder.add(version, "StorageClass", "STANDARD")
    for entry in entries:
        if "subdir" in entry:
            prefixes = Builder.add(root, "CommonPrefixes")
            Builder.add(prefixes, "Prefix", encode(entry["subdir"]))
    return xml_response(builder)
