"""S3 multipart uploads, kept as segment objects and finished as a static large object.

Each upload lives in the bucket's hidden ``<bucket>+segments`` container (same account):
a zero-byte marker ``<key>/<upload id>`` carrying what CreateMultipartUpload was told
(Content-Type, ``x-amz-meta-*``, the headers S3 keeps, ACL sysmeta), and one object per
part, ``<key>/<upload id>/<part number>``, stored as any object is (its ETag is its MD5).
CompleteMultipartUpload writes the key as a manifest (``?multipart-manifest=put``
through the slo filter) listing the chosen parts in order; the S3 ETag
``"<md5 of the parts' MD5s>-<count>"`` is kept in sysmeta (HEAD/GET: ``s3_etag_of``)
and handed to the container listing as Swift does, in the container-update override
ETag (``<manifest md5>; s3_etag=<etag>; slo_etag=<etag>``). Parts left out are
deleted, then the marker. GET of the key is the slo filter's: the parts in order,
ranges across them.

Handlers (each takes the S3Request and returns a webob Response, raising S3Error):
``create_multipart_upload`` (POST ?uploads), ``upload_part`` (PUT ?partNumber&uploadId,
``upload_part_copy`` with x-amz-copy-source), ``list_parts`` (GET ?uploadId),
``complete_multipart_upload`` (POST ?uploadId), ``abort_multipart_upload``
(DELETE ?uploadId), ``list_multipart_uploads`` (GET ?uploads on a bucket).
``dispatch(s3req)`` picks one, or returns None for a request that isn't multipart.
"""

import json
import logging
import time
from urllib.parse import quote

from proxy.s3api import objects
from proxy.s3api.errors import (
    EntityTooLarge,
    EntityTooSmall,
    InvalidPart,
    InvalidRange,
    MissingContentLength,
    NoSuchBucket,
    NoSuchUpload,
)
from proxy.s3api.multipart_parts import (
    DEFAULT_MAX_PARTS,
    DEFAULT_MAX_UPLOADS,
    MAX_PART_SIZE,
    SYSMETA_ETAG,
    SYSMETA_INITIATOR,
    SYSMETA_UPLOAD_ID,
    check_encoding_type,
    complete_result,
    copy_part_result,
    initiate_result,
    is_upload_id,
    list_parts_result,
    list_uploads_result,
    marker_name,
    multipart_etag,
    new_upload_id,
    normalize_etag,
    parse_complete_body,
    parse_copy_range,
    parse_int_arg,
    parse_part_number,
    part_name,
    part_number_of,
    parts_prefix,
    s3_etag_of,
    segments_container,
    select_uploads,
    split_marker,
)
from proxy.s3api.responses import (
    PASSED_HEADERS,
    SYSMETA_OBJECT,
    empty_response,
    iso8601,
    raise_for,
    xml_response,
)

LOG = logging.getLogger("haneul.proxy.s3api")
LISTING_PAGE = 10000
MAX_COMPLETE_BODY = 4 * 1024 * 1024
COPY_CHUNK = 65536

__all__ = [
    "abort_multipart_upload",
    "complete_multipart_upload",
    "create_multipart_upload",
    "dispatch",
    "list_multipart_uploads",
    "list_parts",
    "s3_etag_of",
    "upload_part",
    "upload_part_copy",
]


def dispatch(s3req):
    """The multipart handler's answer for ``s3req``, or None if it is not multipart."""
    query = s3req.query
    method = s3req.method
    if s3req.bucket is None:
        return None
    if s3req.key is None:
        if method == "GET" and "uploads" in query:
            return list_multipart_uploads(s3req)
        return None
    if "uploads" in query and method == "POST":
        return create_multipart_upload(s3req)
    if "uploadId" not in query:
        return None
    if method == "PUT" and "partNumber" in query:
        if "x-amz-copy-source" in s3req.headers:
            return upload_part_copy(s3req)
        return upload_part(s3req)
    handler = {
        "GET": list_parts,
        "POST": complete_multipart_upload,
        "DELETE": abort_multipart_upload,
    }.get(method)
    return handler(s3req) if handler else None


# -- the upload's marker -----------------------------------------------------------------


def _upload_id(s3req):
    upload_id = s3req.query.get("uploadId", "")
    if not is_upload_id(upload_id):
        raise NoSuchUpload(upload_id=upload_id)
    return upload_id


def _missing_upload(s3req, upload_id):
    """NoSuchBucket when the bucket itself is gone, else NoSuchUpload."""
    head = s3req.subrequest("HEAD", s3req.bucket)
    if head.status_int == 404:
        raise NoSuchBucket(bucket_name=s3req.bucket)
    raise NoSuchUpload(upload_id=upload_id)


def upload_marker(s3req, upload_id):
    """The marker's HEAD answer; NoSuchUpload (or NoSuchBucket) when it is gone."""
    resp = s3req.subrequest(
        "HEAD", segments_container(s3req.bucket), marker_name(s3req.key, upload_id)
    )
    if resp.status_int == 404:
        _missing_upload(s3req, upload_id)
    return raise_for(resp, s3req)


def create_multipart_upload(s3req):
    """POST /bucket/key?uploads: the marker object, and the segments container if new."""
    objects.check_key(s3req.key)
    bucket = s3req.bucket
    head = s3req.subrequest("HEAD", bucket)
    if head.status_int == 404:
        raise NoSuchBucket(bucket_name=bucket)
    raise_for(head, s3req)
    segments = segments_container(bucket)
    container_headers = {}
    policy = head.headers.get("X-Storage-Policy")
    if policy:
        container_headers["X-Storage-Policy"] = policy
    resp = s3req.subrequest("PUT", segments, headers=container_headers)
    if resp.status_int not in (201, 202, 204):
        raise_for(resp, s3req)
    upload_id = new_upload_id()
    headers = objects.object_headers(s3req)
    headers[SYSMETA_INITIATOR] = f"{s3req.owner_id} {s3req.display_name}"
    headers = {k: v for k, v in headers.items() if v is not None}
    resp = s3req.subrequest(
        "PUT", segments, marker_name(s3req.key, upload_id), headers=headers, body=b""
    )
    raise_for(resp, s3req, not_found=NoSuchBucket(bucket_name=bucket))
    return xml_response(initiate_result(bucket, s3req.key, upload_id))


# -- parts -------------------------------------------------------------------------------


def _part_number(s3req):
    return parse_part_number(s3req.query.get("partNumber"), s3req.conf.max_upload_part_num)


def _max_part_size(s3req):
    return min(MAX_PART_SIZE, s3req.conf.max_object_size)


def upload_part(s3req):
    """PUT ?partNumber=N&uploadId=...: one part, its MD5 checked by the object servers."""
    number = _part_number(s3req)
    upload_id = _upload_id(s3req)
    length = s3req.declared_length()
    if length is None:
        raise MissingContentLength()
    if length > _max_part_size(s3req):
        raise EntityTooLarge(proposed_size=str(length), max_size_allowed=str(_max_part_size(s3req)))
    upload_marker(s3req, upload_id)
    headers = {"Content-Length": str(length), "Content-Type": "application/octet-stream"}
    md5 = s3req.content_md5()
    if md5 is not None:
        headers["ETag"] = md5
    stream = s3req.body_stream(check_md5=False)
    resp = s3req.subrequest(
        "PUT",
        segments_container(s3req.bucket),
        part_name(s3req.key, upload_id, number),
        headers=headers,
        body=stream,
    )
    if resp.status_int == 404:
        _missing_upload(s3req, upload_id)
    raise_for(resp, s3req)
    answer = {"ETag": f'"{normalize_etag(resp.headers.get("ETag"))}"'}
    for algorithm, value in getattr(stream, "checksums", {}).items():
        answer[f"x-amz-checksum-{algorithm}"] = value
    return empty_response(200, answer)


def upload_part_copy(s3req):
    """PUT ?partNumber&uploadId with x-amz-copy-source[-range]: a part read from an
    object (a multipart one too: the read goes through the slo filter)."""
    number = _part_number(s3req)
    upload_id = _upload_id(s3req)
    upload_marker(s3req, upload_id)
    src_bucket, src_key, head = objects.copy_source(s3req)
    size = head.content_length or 0
    copy_range = s3req.headers.get("x-amz-copy-source-range")
    get_headers = {}
    if copy_range is not None:
        span = parse_copy_range(copy_range, size)
        if span is None:
            raise InvalidRange(actual_object_size=str(size), range_requested=copy_range)
        start, stop = span
        get_headers["Range"] = f"bytes={start}-{stop - 1}"
    else:
        start, stop = 0, size
    if stop - start > _max_part_size(s3req):
        raise EntityTooLarge(
            proposed_size=str(stop - start), max_size_allowed=str(_max_part_size(s3req))
        )
    etag = head.headers.get("ETag")
    if etag:
        get_headers["If-Match"] = etag  # the object the conditions were checked against
    source = s3req.subrequest("GET", src_bucket, src_key, headers=get_headers)
    if source.status_int >= 300:
        _close(source)
        raise_for(source, s3req, bucket=src_bucket, key=src_key)
    body = _BodyReader(source.app_iter, stop - start)
    try:
        resp = s3req.subrequest(
            "PUT",
            segments_container(s3req.bucket),
            part_name(s3req.key, upload_id, number),
            headers={
                "Content-Length": str(stop - start),
                "Content-Type": "application/octet-stream",
            },
            body=body,
        )
    finally:
        _close(source)
    raise_for(resp, s3req)
    last_modified = iso8601(resp.headers.get("Last-Modified") or time.time())
    return xml_response(copy_part_result(last_modified, normalize_etag(resp.headers.get("ETag"))))


class _BodyReader:
    """A file-like over a response body, for a part PUT's input (``length`` known)."""

    def __init__(self, app_iter, length):
        self.iterator = iter(app_iter)
        self.length = length
        self.buffer = b""

    def read(self, size=-1):
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.iterator, None)
            if chunk is None:
                break
            self.buffer += chunk
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _close(resp):
    close = getattr(resp.app_iter, "close", None)
    if close is not None:
        close()


def uploaded_parts(s3req, upload_id):
    """``{part number: listing entry}`` of an upload's parts (every listing page)."""
    container = segments_container(s3req.bucket)
    prefix = parts_prefix(s3req.key, upload_id)
    parts = {}
    marker = ""
    while True:
        query = {"format": "json", "prefix": prefix, "limit": str(LISTING_PAGE)}
        if marker:
            query["marker"] = marker
        resp = s3req.subrequest("GET", container, query=query)
        if resp.status_int == 404:
            return parts
        raise_for(resp, s3req)
        entries = json.loads(resp.body) if resp.body else []
        for entry in entries:
            number = part_number_of(entry["name"], prefix)
            if number is not None:
                parts[number] = entry
        if len(entries) < LISTING_PAGE:
            return parts
        marker = entries[-1]["name"]


def list_parts(s3req):
    """GET ?uploadId: the parts uploaded so far, by part number, a page at a time."""
    upload_id = _upload_id(s3req)
    encoding_type = check_encoding_type(s3req.query)
    max_parts = parse_int_arg(s3req.query, "max-parts", DEFAULT_MAX_PARTS, DEFAULT_MAX_PARTS)
    marker = parse_int_arg(s3req.query, "part-number-marker", 0)
    upload_marker(s3req, upload_id)
    parts = uploaded_parts(s3req, upload_id)
    numbers = sorted(n for n in parts if n > marker)
    shown = numbers[:max_parts]
    truncated = len(numbers) > max_parts
    info = {
        "bucket": s3req.bucket,
        "key": s3req.key,
        "upload_id": upload_id,
        "owner_id": s3req.owner_id,
        "display_name": s3req.display_name,
        "marker": marker,
        "next_marker": shown[-1] if shown else 0,
        "max_parts": max_parts,
        "truncated": truncated,
    }
    listed = [
        {
            "number": n,
            "last_modified": iso8601(parts[n].get("last_modified")),
            "etag": parts[n]["hash"],
            "size": parts[n]["bytes"],
        }
        for n in shown
    ]
    return xml_response(list_parts_result(info, listed, encoding_type))


# -- finishing ---------------------------------------------------------------------------


def complete_multipart_upload(s3req):
    """POST ?uploadId with the part list: the key becomes a manifest of those parts."""
    upload_id = _upload_id(s3req)
    bucket, key = s3req.bucket, s3req.key
    marker_resp = s3req.subrequest("HEAD", segments_container(bucket), marker_name(key, upload_id))
    if marker_resp.status_int == 404:
        done = _already_completed(s3req, upload_id)
        if done is not None:
            return done
        _missing_upload(s3req, upload_id)
    raise_for(marker_resp, s3req)
    body = s3req.read_body(MAX_COMPLETE_BODY)
    chosen = parse_complete_body(body, s3req.conf.max_upload_part_num)
    parts = uploaded_parts(s3req, upload_id)
    minimum = s3req.conf.min_segment_size
    for index, (number, etag) in enumerate(chosen):
        entry = parts.get(number)
        if entry is None or normalize_etag(entry["hash"]) != etag:
            raise InvalidPart(upload_id=upload_id, part_number=str(number), e_tag=etag)
        if index < len(chosen) - 1 and entry["bytes"] < minimum:
            raise EntityTooSmall(
                proposed_size=str(entry["bytes"]),
                min_size_allowed=str(minimum),
                part_number=str(number),
                e_tag=etag,
            )
    s3_etag = multipart_etag([etag for _number, etag in chosen])
    headers = final_object_headers(marker_resp.headers, upload_id, s3_etag)
    container = segments_container(bucket)
    segments = [
        {
            "path": f"/{container}/{part_name(key, upload_id, number)}",
            "etag": etag,
            "size_bytes": parts[number]["bytes"],
        }
        for number, etag in chosen
        if parts[number]["bytes"] > 0  # a manifest has no empty segments
    ]
    replaced = _previous_upload(s3req, upload_id)
    if segments:
        resp = s3req.subrequest(
            "PUT",
            bucket,
            key,
            headers=headers,
            body=json.dumps(segments).encode("utf-8"),
            query={"multipart-manifest": "put"},
        )
    else:  # only empty parts: an empty object
        resp = s3req.subrequest("PUT", bucket, key, headers=headers, body=b"")
    if resp.status_int == 400:
        LOG.warning("complete %s/%s: manifest refused: %s", bucket, key, resp.body[:300])
        raise InvalidPart(upload_id=upload_id)
    raise_for(resp, s3req, not_found=NoSuchBucket(bucket_name=bucket))
    kept = {number for number, _etag in chosen if parts[number]["bytes"] > 0}
    _delete_names(
        s3req,
        container,
        [part_name(key, upload_id, n) for n in sorted(parts) if n not in kept],
    )
    _delete_names(s3req, container, [marker_name(key, upload_id)])
    if replaced is not None:  # the object this one replaced was an upload too: its parts
        old_parts = uploaded_parts(s3req, replaced)
        _delete_names(s3req, container, [part_name(key, replaced, n) for n in sorted(old_parts)])
    location = f"{_base_url(s3req)}/{bucket}/{_quote_key(key)}"
    return xml_response(complete_result(location, bucket, key, s3_etag))


def _previous_upload(s3req, upload_id):
    """The upload id of the completed upload the key holds now (its parts are to go
    once this one replaces it), or None."""
    head = s3req.subrequest("HEAD", s3req.bucket, s3req.key)
    _close(head)
    previous = head.headers.get(SYSMETA_UPLOAD_ID) if head.status_int == 200 else None
    return previous if previous and previous != upload_id and is_upload_id(previous) else None


def final_object_headers(marker_headers, upload_id, s3_etag):
    """The completed object's headers: what the upload was created with, and its ETag."""
    headers = {}
    for name, value in marker_headers.items():
        lower = name.lower()
        if lower.startswith("x-object-meta-") or (
            lower.startswith(SYSMETA_OBJECT.lower()) and lower != SYSMETA_INITIATOR.lower()
        ):
            headers[name] = value
    for name in PASSED_HEADERS:
        value = marker_headers.get(name)
        if value is not None:
            headers[name] = value
    headers["Content-Type"] = headers.get("Content-Type") or objects.DEFAULT_CONTENT_TYPE
    headers[SYSMETA_ETAG] = s3_etag
    headers[SYSMETA_UPLOAD_ID] = upload_id
    headers["X-Object-Sysmeta-Container-Update-Override-Etag"] = f"; s3_etag={s3_etag}"
    return headers


def _already_completed(s3req, upload_id):
    """A retried Complete of an upload that did complete: the same answer again."""
    head = s3req.subrequest("HEAD", s3req.bucket, s3req.key)
    _close(head)
    if head.status_int != 200 or head.headers.get(SYSMETA_UPLOAD_ID) != upload_id:
        return None
    etag = normalize_etag(s3_etag_of(head.headers))
    location = f"{_base_url(s3req)}/{s3req.bucket}/{_quote_key(s3req.key)}"
    return xml_response(complete_result(location, s3req.bucket, s3req.key, etag))


def abort_multipart_upload(s3req):
    """DELETE ?uploadId: the parts, then the marker."""
    upload_id = _upload_id(s3req)
    upload_marker(s3req, upload_id)
    container = segments_container(s3req.bucket)
    parts = uploaded_parts(s3req, upload_id)
    _delete_names(s3req, container, [part_name(s3req.key, upload_id, n) for n in sorted(parts)])
    _delete_names(s3req, container, [marker_name(s3req.key, upload_id)])
    return empty_response(204)


def _delete_names(s3req, container, names):
    for name in names:
        resp = s3req.subrequest("DELETE", container, name)
        _close(resp)
        if resp.status_int >= 300 and resp.status_int != 404:
            LOG.warning("could not delete %s/%s: %s", container, name, resp.status)


def _base_url(s3req):
    environ = s3req.environ
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "localhost")
    return f"{scheme}://{host}"


def _quote_key(key):
    return quote(key, safe="/")


# -- listing uploads ---------------------------------------------------------------------


def list_multipart_uploads(s3req):
    """GET /bucket?uploads: uploads in progress, by key then initiation."""
    query = s3req.query
    encoding_type = check_encoding_type(query)
    max_uploads = parse_int_arg(query, "max-uploads", DEFAULT_MAX_UPLOADS, DEFAULT_MAX_UPLOADS)
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    key_marker = query.get("key-marker", "")
    upload_id_marker = query.get("upload-id-marker", "") if key_marker else ""
    head = s3req.subrequest("HEAD", s3req.bucket)
    if head.status_int == 404:
        raise NoSuchBucket(bucket_name=s3req.bucket)
    raise_for(head, s3req)
    uploads = sorted(_all_uploads(s3req, prefix))
    shown, prefixes, truncated, next_key, next_id = select_uploads(
        uploads, prefix, delimiter, key_marker, upload_id_marker, max_uploads
    )
    info = {
        "bucket": s3req.bucket,
        "key_marker": key_marker,
        "upload_id_marker": upload_id_marker,
        "next_key_marker": next_key,
        "next_upload_id_marker": next_id,
        "delimiter": delimiter,
        "prefix": prefix,
        "max_uploads": max_uploads,
        "truncated": truncated,
        "owner_id": s3req.owner_id,
        "display_name": s3req.display_name,
    }
    return xml_response(list_uploads_result(info, shown, prefixes, encoding_type))


def _all_uploads(s3req, prefix):
    """``(key, upload id, initiated)`` of every marker in the segments container."""
    container = segments_container(s3req.bucket)
    found = []
    marker = ""
    while True:
        query = {"format": "json", "limit": str(LISTING_PAGE)}
        if prefix:
            query["prefix"] = prefix
        if marker:
            query["marker"] = marker
        resp = s3req.subrequest("GET", container, query=query)
        if resp.status_int == 404:
            return found
        raise_for(resp, s3req)
        entries = json.loads(resp.body) if resp.body else []
        for entry in entries:
            split = split_marker(entry["name"])
            if split is not None:
                found.append((split[0], split[1], iso8601(entry.get("last_modified"))))
        if len(entries) < LISTING_PAGE:
            return found
        marker = entries[-1]["name"]
