"""From Swift answers to S3 answers: errors, ETags, dates, metadata, XML responses.

Shared by every handler (buckets, objects, acl, multipart):

- ``raise_for(resp, s3req, ...)`` turns a Swift subrequest's failure into the S3 error
  a client expects (404 -> NoSuchBucket or NoSuchKey, 409 -> BucketNotEmpty, ...);
- ``xml_response(builder)`` is a 200 ``application/xml`` answer;
- ``s3_etag``, ``iso8601``, ``http_date`` format what S3 shows;
- ``meta_to_swift`` / ``meta_from_swift`` map ``x-amz-meta-*`` <-> ``X-Object-Meta-*``.
"""

import email.utils
import time
from datetime import UTC, datetime

from webob import Response

from proxy.s3api.errors import (
    AccessDenied,
    BadDigest,
    BucketNotEmpty,
    EntityTooLarge,
    IncompleteBody,
    InternalError,
    InvalidArgument,
    InvalidRange,
    MetadataTooLarge,
    MissingContentLength,
    NoSuchBucket,
    NoSuchKey,
    NotModified,
    PreconditionFailed,
    RequestTimeout,
    ServiceUnavailable,
)

META_PREFIX = "x-amz-meta-"
SWIFT_META_PREFIX = "x-object-meta-"
SYSMETA_OBJECT = "X-Object-Sysmeta-S3api-"
SYSMETA_CONTAINER = "X-Container-Sysmeta-S3api-"
# A multipart upload's object keeps its S3 ETag ("<md5 of part MD5s>-<count>") here.
SYSMETA_ETAG = SYSMETA_OBJECT + "Etag"
# Object headers S3 stores and gives back as they were sent.
PASSED_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Content-Disposition",
    "Content-Language",
    "Cache-Control",
    "Expires",
)


def s3_etag(etag):
    """An ETag as S3 shows it: quoted (Swift's bare MD5 or a multipart ``md5-N``)."""
    if etag is None:
        return None
    return '"' + etag.strip().strip('"') + '"'


def iso8601(value):
    """``2024-05-01T12:34:56.789Z`` from a Swift listing time, an HTTP date or seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif "T" in value and value[:4].isdigit():
        text = value.rstrip("Z")
        main, _, frac = text.partition(".")
        millis = int((frac + "000")[:3]) if frac.isdigit() else 0
        return f"{main}.{millis:03d}Z"
    else:
        parsed = email.utils.parsedate_to_datetime(value)
        seconds = parsed.timestamp()
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def http_date(seconds=None):
    """An RFC 7231 date (``Wed, 01 May 2024 12:34:56 GMT``)."""
    return email.utils.formatdate(time.time() if seconds is None else seconds, usegmt=True)


def listing_last_modified_http(value):
    """A Swift listing time as an HTTP date (rounded down to the second)."""
    main = value.partition(".")[0]
    stamp = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return http_date(stamp.timestamp())


def meta_to_swift(headers):
    """``X-Object-Meta-*`` headers for a request's ``x-amz-meta-*`` ones."""
    found = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(META_PREFIX) and len(lower) > len(META_PREFIX):
            found["X-Object-Meta-" + name[len(META_PREFIX) :]] = value
    return found


def meta_from_swift(headers):
    """``x-amz-meta-*`` headers for a Swift object's ``X-Object-Meta-*`` ones."""
    found = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(SWIFT_META_PREFIX):
            found[META_PREFIX + lower[len(SWIFT_META_PREFIX) :]] = value
    return found


def xml_response(builder_or_bytes, status=200, headers=None):
    """A ``status`` answer with an XML body (a ``xml.Builder`` or bytes)."""
    body = builder_or_bytes
    if hasattr(body, "tobytes"):
        body = body.tobytes()
    resp = Response(status=status, body=body, content_type="application/xml", charset=None)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def empty_response(status=200, headers=None):
    resp = Response(status=status)
    resp.content_type = None
    resp.body = b""
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _explanation(resp):
    try:
        text = resp.body.decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001 - a body we cannot read explains nothing
        return ""
    return text[:200]


def raise_for(resp, s3req=None, bucket=None, key=None, not_found=None):
    """Raise the S3 error for a failed Swift answer; return ``resp`` when it succeeded.

    ``not_found`` overrides the 404 error (default: NoSuchKey when ``key`` is given,
    else NoSuchBucket).
    """
    status = resp.status_int
    if status < 300:
        return resp
    if status == 304:
        raise NotModified(headers=_validators(resp))
    if s3req is not None:
        bucket = s3req.bucket if bucket is None else bucket
        key = s3req.key if key is None else key
    if status == 404:
        if not_found is not None:
            raise not_found
        if key is not None:
            raise NoSuchKey(key=key)
        raise NoSuchBucket(bucket_name=bucket)
    if status in (401, 403):
        raise AccessDenied()
    if status == 409:
        raise BucketNotEmpty(bucket_name=bucket)
    if status == 411:
        raise MissingContentLength()
    if status == 412:
        raise PreconditionFailed(condition="If-Match", headers=_validators(resp))
    if status == 413:
        raise EntityTooLarge()
    if status == 416:
        raise InvalidRange(**_range_extra(resp))
    if status == 422:
        raise BadDigest()
    if status == 408:
        raise RequestTimeout()
    if status == 499:
        raise IncompleteBody()
    if status == 400:
        text = _explanation(resp)
        if "meta" in text.lower():
            raise MetadataTooLarge(text or None)
        raise InvalidArgument(text or None)
    if status == 503:
        raise ServiceUnavailable()
    raise InternalError()


def _validators(resp):
    return {
        k: v
        for k, v in (
            ("ETag", s3_etag(resp.headers.get("ETag"))),
            ("Last-Modified", resp.headers.get("Last-Modified")),
        )
        if v
    }


def _range_extra(resp):
    content_range = resp.headers.get("Content-Range", "")
    length = content_range.rpartition("/")[2]
    return {"ActualObjectSize": length} if length.isdigit() else {}
