"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, CopyObject.

A key is a Swift object of the bucket's container. ``x-amz-meta-*`` is kept as
``X-Object-Meta-*``; S3-only facts (canned ACL, a checksum sent in a header) as
``X-Object-Sysmeta-S3api-*``. A PUT's Content-MD5 goes down as the Swift ETag, so the
object servers refuse a body that doesn't match (nothing is stored) and the bytes are
hashed once; other checks (``x-amz-content-sha256``, chunk signatures, checksums) are
made by the request's body stream before its last byte is handed on. GET and HEAD
pass Range and the conditional headers to Swift, which answers them as S3 does
(RFC 7232 order); the body streams through untouched.
"""

from urllib.parse import quote, unquote

from proxy.s3api import acl
from proxy.s3api.errors import (
    EntityTooLarge,
    InvalidArgument,
    InvalidRequest,
    InvalidStorageClass,
    KeyTooLongError,
    MissingContentLength,
    NoSuchBucket,
    NoSuchKey,
    PreconditionFailed,
)
from proxy.s3api.responses import (
    PASSED_HEADERS,
    SYSMETA_ETAG,
    SYSMETA_OBJECT,
    empty_response,
    iso8601,
    meta_from_swift,
    meta_to_swift,
    raise_for,
    s3_etag,
    xml_response,
)
from proxy.s3api.xml import Builder

MAX_KEY_BYTES = 1024
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
)
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
CHECKSUM_SYSMETA = SYSMETA_OBJECT + "Checksum-"
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
# Swift answer headers an S3 client sees (besides metadata).
SHOWN_HEADERS = (
    "Content-Length",
    "Content-Range",
    "Last-Modified",
    "Accept-Ranges",
    *PASSED_HEADERS,
)
CONDITIONAL_HEADERS = ("If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")


def check_key(key):
    if len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
        raise KeyTooLongError(
            size=str(len(key.encode("utf-8", "surrogateescape"))),
            max_size_allowed=str(MAX_KEY_BYTES),
        )


def check_version_id(s3req):
    version = s3req.query.get("versionId")
    if version is not None and version != "null":
        raise InvalidArgument(
            "Invalid version id specified", argument_name="versionId", argument_value=version
        )


def _storage_class(headers):
    value = headers.get("x-amz-storage-class")
    if value is not None and value.strip() not in STORAGE_CLASSES:
        raise InvalidStorageClass(storage_class_requested=value)


def _content_encoding(headers):
    """The Content-Encoding to store: the client's, less the transfer's ``aws-chunked``."""
    value = headers.get("Content-Encoding")
    if value is None:
        return None
    kept = [
        part.strip()
        for part in value.split(",")
        if part.strip() and part.strip().lower() != "aws-chunked"
    ]
    return ", ".join(kept) or None


def object_headers(s3req):
    """Swift headers for a new object's metadata from an S3 PUT (or a REPLACE copy)."""
    headers = meta_to_swift(s3req.headers)
    for name in PASSED_HEADERS:
        value = s3req.headers.get(name)
        if value is not None:
            headers[name] = value
    headers["Content-Encoding"] = _content_encoding(s3req.headers)
    if not headers.get("Content-Type"):
        headers["Content-Type"] = DEFAULT_CONTENT_TYPE
    canned = acl.canned_from_headers(s3req.headers)
    if canned is not None:
        headers.update(acl.object_acl_headers(canned))
    return headers


# -- PUT ---------------------------------------------------------------------------------


def put_object(s3req):
    check_key(s3req.key)
    _storage_class(s3req.headers)
    length = s3req.declared_length()
    if length is None:
        raise MissingContentLength()
    if length > s3req.conf.max_object_size:
        raise EntityTooLarge(
            proposed_size=str(length), max_size_allowed=str(s3req.conf.max_object_size)
        )
    headers = object_headers(s3req)
    md5 = s3req.content_md5()
    if md5 is not None:
        headers["ETag"] = md5
    if s3req.headers.get("If-None-Match"):
        headers["If-None-Match"] = s3req.headers["If-None-Match"]
    stream = s3req.body_stream(check_md5=False)
    for algorithm, value in declared_checksums(s3req.headers).items():
        headers[CHECKSUM_SYSMETA + algorithm] = value
    headers["Content-Length"] = str(length)
    resp = s3req.subrequest("PUT", s3req.bucket, s3req.key, headers=headers, body=stream)
    raise_for(resp, s3req, not_found=NoSuchBucket(bucket_name=s3req.bucket))
    answer = {"ETag": s3_etag(resp.headers.get("ETag"))}
    for algorithm, value in getattr(stream, "checksums", {}).items():
        answer[f"x-amz-checksum-{algorithm}"] = value
    return empty_response(200, answer)


def declared_checksums(headers):
    """``{algorithm: value}`` of the ``x-amz-checksum-*`` headers sent with the request."""
    from proxy.s3api import checksums

    found = {}
    for algorithm in checksums.ALGORITHMS:
        value = headers.get(checksums.HEADER_PREFIX + algorithm)
        if value:
            found[algorithm] = value.strip()
    return found


# -- GET / HEAD --------------------------------------------------------------------------


def _get_headers(s3req):
    headers = {}
    rng = s3req.headers.get("Range")
    if rng and "," not in rng:  # S3 serves one range; several get the whole object
        headers["Range"] = rng
    for name in CONDITIONAL_HEADERS:
        value = s3req.headers.get(name)
        if value is not None:
            headers[name] = value
    return headers


def s3_object_headers(swift_headers, checksum_mode=False, whole=True):
    """The headers S3 shows for an object, from Swift's answer."""
    shown = {}
    for name in SHOWN_HEADERS:
        value = swift_headers.get(name)
        if value is not None:
            shown[name] = value
    shown["Content-Type"] = swift_headers.get("Content-Type") or DEFAULT_CONTENT_TYPE
    shown["ETag"] = s3_etag(swift_headers.get(SYSMETA_ETAG) or swift_headers.get("ETag"))
    shown.setdefault("Accept-Ranges", "bytes")
    shown.update(meta_from_swift(swift_headers))
    if checksum_mode and whole:
        for name, value in swift_headers.items():
            if name.lower().startswith(CHECKSUM_SYSMETA.lower()):
                algorithm = name[len(CHECKSUM_SYSMETA) :].lower()
                shown[f"x-amz-checksum-{algorithm}"] = value
    return {k: v for k, v in shown.items() if v is not None}


def get_object(s3req):
    return _get_or_head(s3req, "GET")


def head_object(s3req):
    return _get_or_head(s3req, "HEAD")


def _get_or_head(s3req, method):
    check_version_id(s3req)
    resp = s3req.subrequest(method, s3req.bucket, s3req.key, headers=_get_headers(s3req))
    if resp.status_int == 404:
        _close(resp)
        _raise_missing(s3req)
    if resp.status_int >= 300:
        _close(resp)
        raise_for(resp, s3req)
    checksum_mode = (s3req.headers.get("x-amz-checksum-mode") or "").upper() == "ENABLED"
    headers = s3_object_headers(resp.headers, checksum_mode, whole=resp.status_int == 200)
    for param, header in RESPONSE_OVERRIDES.items():
        if param in s3req.query:
            headers[header] = s3req.query[param]
    out = empty_response(resp.status_int)
    out.headerlist = [(k, v) for k, v in headers.items()]
    if method == "GET":
        out.app_iter = resp.app_iter
    else:
        _close(resp)
    # Content-Length stays what Swift said (webob would recompute it for a HEAD).
    out.headers["Content-Length"] = headers.get("Content-Length", "0")
    return out


def _close(resp):
    close = getattr(resp.app_iter, "close", None)
    if close is not None:
        close()


def _raise_missing(s3req, bucket=None, key=None):
    """A 404 on an object: NoSuchBucket if the container is missing, else NoSuchKey."""
    bucket = bucket or s3req.bucket
    key = key or s3req.key
    head = s3req.subrequest("HEAD", bucket)
    if head.status_int == 404:
        raise NoSuchBucket(bucket_name=bucket)
    raise NoSuchKey(key=key)


# -- DELETE ------------------------------------------------------------------------------


def delete_key(s3req, key):
    """Delete one key (a multipart upload's object with its parts); the Swift status.

    A large object is recognised by a HEAD first and deleted with
    ``?multipart-manifest=delete`` so its segments go too.
    """
    head = s3req.subrequest("HEAD", s3req.bucket, key)
    _close(head)
    if head.status_int == 404:
        return 404
    query = None
    if (head.headers.get("X-Static-Large-Object") or "").lower() == "true":
        query = {"multipart-manifest": "delete"}
    resp = s3req.subrequest(
        "DELETE",
        s3req.bucket,
        key,
        query=query,
        headers={"Accept": "application/json"} if query else None,
    )
    if query is None or resp.status_int != 200:
        _close(resp)
        return resp.status_int
    try:
        outcome = resp.json
    except ValueError:
        return 500
    status = int(str(outcome.get("Response Status", "500")).split()[0] or 500)
    if outcome.get("Errors") and status < 400:
        status = 500
    return 204 if status < 300 else status


def delete_object(s3req):
    check_version_id(s3req)
    status = delete_key(s3req, s3req.key)
    if status == 404:
        head = s3req.subrequest("HEAD", s3req.bucket)
        if head.status_int == 404:
            raise NoSuchBucket(bucket_name=s3req.bucket)
        return empty_response(204)
    if status >= 300:
        raise_for(empty_response(status), s3req)
    return empty_response(204)


# -- COPY --------------------------------------------------------------------------------


def parse_copy_source(value):
    """``(bucket, key, version)`` of an ``x-amz-copy-source`` header."""
    text = value.strip()
    path, _, query = text.partition("?")
    version = None
    if query:
        name, _, version = query.partition("=")
        if name != "versionId":
            raise InvalidArgument(
                "Unsupported copy source parameter.",
                argument_name="x-amz-copy-source",
                argument_value=value,
            )
    path = unquote(path)
    if path.startswith("/"):
        path = path[1:]
    bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            argument_name="x-amz-copy-source",
            argument_value=value,
        )
    if version is not None and version != "null":
        raise InvalidArgument(
            "Invalid version id specified", argument_name="x-amz-copy-source", argument_value=value
        )
    return bucket, key, version


def check_copy_conditions(headers, etag, last_modified):
    """PreconditionFailed unless the ``x-amz-copy-source-if-*`` headers all hold."""
    import email.utils

    def when(text):
        try:
            return email.utils.parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError, IndexError):
            return None

    bare = (etag or "").strip('"')
    modified = when(last_modified) if last_modified else None
    if_match = headers.get("x-amz-copy-source-if-match")
    if_none = headers.get("x-amz-copy-source-if-none-match")
    unmodified_since = headers.get("x-amz-copy-source-if-unmodified-since")
    modified_since = headers.get("x-amz-copy-source-if-modified-since")

    def matches(value):
        tags = [t.strip().strip('"') for t in value.split(",")]
        return "*" in tags or bare in tags

    if if_match is not None:
        if not matches(if_match):
            raise PreconditionFailed(condition="x-amz-copy-source-If-Match")
    elif unmodified_since is not None:
        since = when(unmodified_since)
        if since is not None and modified is not None and modified > since:
            raise PreconditionFailed(condition="x-amz-copy-source-If-Unmodified-Since")
    if if_none is not None:
        if matches(if_none):
            raise PreconditionFailed(condition="x-amz-copy-source-If-None-Match")
    elif modified_since is not None:
        since = when(modified_since)
        if since is not None and modified is not None and modified <= since:
            raise PreconditionFailed(condition="x-amz-copy-source-If-Modified-Since")


def copy_source(s3req):
    """HEAD the copy source (NoSuchBucket/NoSuchKey) and check the copy conditions.
    Returns ``(bucket, key, head response)``."""
    src_bucket, src_key, _version = parse_copy_source(s3req.headers["x-amz-copy-source"])
    head = s3req.subrequest("HEAD", src_bucket, src_key)
    if head.status_int == 404:
        _raise_missing(s3req, src_bucket, src_key)
    raise_for(head, s3req, bucket=src_bucket, key=src_key)
    check_copy_conditions(
        s3req.headers, head.headers.get("ETag"), head.headers.get("Last-Modified")
    )
    return src_bucket, src_key, head


def copy_object(s3req):
    check_key(s3req.key)
    _storage_class(s3req.headers)
    directive = (s3req.headers.get("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise InvalidArgument(
            "Unknown metadata directive.",
            argument_name="x-amz-metadata-directive",
            argument_value=directive,
        )
    src_bucket, src_key, head = copy_source(s3req)
    if (
        (src_bucket, src_key) == (s3req.bucket, s3req.key)
        and directive == "COPY"
        and not (s3req.headers.get("x-amz-storage-class") or s3req.headers.get("x-amz-acl"))
    ):
        raise InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect "
            "location or encryption attributes."
        )
    length = head.content_length or 0
    if length > s3req.conf.max_object_size:
        raise InvalidRequest(
            "The specified copy source is larger than the maximum allowable "
            "size for a copy source: " + str(s3req.conf.max_object_size)
        )
    headers = {"X-Copy-From": quote(f"/{src_bucket}/{src_key}", safe="/")}
    if directive == "REPLACE":
        headers["X-Fresh-Metadata"] = "true"
        headers.update(object_headers(s3req))
    else:
        canned = acl.canned_from_headers(s3req.headers)
        if canned is not None:
            headers.update(acl.object_acl_headers(canned))
    resp = s3req.subrequest("PUT", s3req.bucket, s3req.key, headers=headers, body=b"")
    raise_for(resp, s3req, not_found=NoSuchBucket(bucket_name=s3req.bucket))
    builder = Builder("CopyObjectResult")
    Builder.add(builder.root, "LastModified", iso8601(resp.headers.get("Last-Modified")))
    Builder.add(builder.root, "ETag", s3_etag(resp.headers.get("ETag")))
    return xml_response(builder)
