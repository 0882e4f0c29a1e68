"""S3 multipart uploads as data: names, ids, part numbers, ETags and XML bodies.

No I/O here. Where an upload lives (``multipart`` does the talking)::

    <bucket>+segments/<key>/<upload id>            the upload (its marker object)
    <bucket>+segments/<key>/<upload id>/<part>     one part (a plain object)

An upload id is 32 lowercase hex digits: the initiation time in nanoseconds (16) then
16 random ones, so a listing of one key's uploads is in initiation order, and an upload
id can never be mistaken for a part number (at most 5 digits). The completed object is
a static large object whose segments are the parts; its S3 ETag, ``"<md5 of the
parts' binary MD5s>-<count>"``, is kept in the object's sysmeta (``SYSMETA_ETAG``).
"""

import hashlib
import re
import secrets
import time
from urllib.parse import quote

from proxy.s3api.errors import (
    InvalidArgument,
    InvalidPartOrder,
    MalformedXML,
)
from proxy.s3api.xml import Builder, find_text, parse

SEGMENTS_SUFFIX = "+segments"
SYSMETA_ETAG = "X-Object-Sysmeta-S3api-Etag"
SYSMETA_UPLOAD_ID = "X-Object-Sysmeta-S3api-Upload-Id"
SYSMETA_CONTENT_TYPE = "X-Object-Sysmeta-S3api-Content-Type"
SYSMETA_INITIATOR = "X-Object-Sysmeta-S3api-Initiator"
OVERRIDE_ETAG = "X-Object-Sysmeta-Container-Update-Override-Etag"
MAX_PART_SIZE = 5 * 1024**3
DEFAULT_MAX_PARTS = 1000
DEFAULT_MAX_UPLOADS = 1000
UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
PART_NUMBER_RE = re.compile(r"^[1-9][0-9]{0,4}$")
MD5_RE = re.compile(r"^[0-9a-f]{32}$")


def segments_container(bucket):
    """The hidden container of a bucket's uploads and parts."""
    return bucket + SEGMENTS_SUFFIX


def new_upload_id(now_ns=None):
    """A fresh upload id: time-ordered, unguessable, 32 hex digits."""
    stamp = time.time_ns() if now_ns is None else now_ns
    return f"{stamp & (2**64 - 1):016x}{secrets.token_hex(8)}"


def is_upload_id(text):
    return bool(text) and bool(UPLOAD_ID_RE.match(text))


def marker_name(key, upload_id):
    return f"{key}/{upload_id}"


def part_name(key, upload_id, number):
    return f"{key}/{upload_id}/{number}"


def parts_prefix(key, upload_id):
    return f"{key}/{upload_id}/"


def split_marker(name):
    """``(key, upload id)`` when a segments-container name is an upload's marker."""
    key, slash, upload_id = name.rpartition("/")
    if slash and key and is_upload_id(upload_id):
        return key, upload_id
    return None


def part_number_of(name, prefix):
    """The part number of a name listed under ``prefix``, or None if it isn't a part."""
    rest = name[len(prefix) :]
    if name.startswith(prefix) and PART_NUMBER_RE.match(rest):
        return int(rest)
    return None


def parse_part_number(value, maximum):
    """``partNumber``: an integer 1..maximum, else InvalidArgument (S3's wording)."""
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= maximum:
        raise InvalidArgument(
            f"Part number must be an integer between 1 and {maximum}, inclusive",
            argument_name="partNumber",
            argument_value=value,
        )
    return int(text)


def parse_int_arg(query, name, default, maximum=None, minimum=0):
    """A non-negative integer query argument (clamped to ``maximum``)."""
    value = query.get(name)
    if value is None or value == "":
        return default
    if not value.isascii() or not value.lstrip("-").isdigit():
        raise InvalidArgument(
            f"Provided {name} not an integer or within integer range",
            argument_name=name,
            argument_value=value,
        )
    number = int(value)
    if number < minimum:
        raise InvalidArgument(
            f"Argument {name} must be an integer between {minimum} and 2147483647",
            argument_name=name,
            argument_value=value,
        )
    return min(number, maximum) if maximum is not None else number


def normalize_etag(value):
    """An ETag as compared: no quotes, lowercase."""
    return (value or "").strip().strip('"').lower()


def multipart_etag(part_etags):
    """S3's ETag of a completed upload (unquoted): MD5 of the parts' binary MD5s, ``-N``."""
    md5 = hashlib.md5(usedforsecurity=False)
    for etag in part_etags:
        md5.update(bytes.fromhex(normalize_etag(etag)))
    return f"{md5.hexdigest()}-{len(part_etags)}"


def s3_etag_of(source):
    """The ETag S3 shows (quoted) for a Swift object: from its headers (a HEAD/GET
    answer: the multipart ETag kept in sysmeta, else the ETag) or from its container
    listing entry (an ``s3_etag`` key or ``; s3_etag=`` parameter, else ``hash``)."""
    if isinstance(source, dict) and "hash" in source:
        if source.get("s3_etag"):
            return _quoted(source["s3_etag"])
        value, *params = str(source["hash"]).split(";")
        for param in params:
            name, _eq, found = param.strip().partition("=")
            if name == "s3_etag" and found:
                return _quoted(found)
        return _quoted(value)
    lookup = {k.lower(): v for k, v in source.items()}
    found = lookup.get(SYSMETA_ETAG.lower())
    if found:
        return _quoted(found)
    etag = lookup.get("etag")
    return _quoted(etag) if etag else None


def _quoted(value):
    return '"' + value.strip().strip('"') + '"'


# -- CompleteMultipartUpload -------------------------------------------------------------


def parse_complete_body(body, maximum):
    """``[(part number, etag)]`` from a CompleteMultipartUpload body, in the order given.

    MalformedXML for a body that isn't one, a Part without a number or ETag, or no
    parts; InvalidPartOrder unless part numbers strictly ascend; InvalidArgument for a
    part number out of range.
    """
    root = parse(body, "CompleteMultipartUpload")
    parts = []
    for element in root.findall("Part"):
        number_text = find_text(element, "PartNumber")
        etag = find_text(element, "ETag")
        if number_text is None or etag is None:
            raise MalformedXML()
        number_text = number_text.strip()
        if not number_text.isascii() or not number_text.isdigit():
            raise MalformedXML()
        number = parse_part_number(number_text, maximum)
        parts.append((number, normalize_etag(etag)))
    if not parts:
        raise MalformedXML("You must specify at least one part")
    for (before, _e1), (after, _e2) in zip(parts, parts[1:], strict=False):
        if after <= before:
            raise InvalidPartOrder()
    return parts


def encode_key(key, encoding_type):
    """A key as an XML listing shows it (``encoding-type=url`` percent-encodes)."""
    if encoding_type == "url":
        return quote(key, safe="/")
    return key


def check_encoding_type(query):
    value = query.get("encoding-type")
    if value is not None and value != "url":
        raise InvalidArgument(
            "Invalid Encoding Method specified in Request",
            argument_name="encoding-type",
            argument_value=value,
        )
    return value


def owner_elements(parent, owner_id, display_name):
    for tag in ("Initiator", "Owner"):
        element = Builder.add(parent, tag)
        Builder.add(element, "ID", owner_id)
        Builder.add(element, "DisplayName", display_name)


def initiate_result(bucket, key, upload_id):
    builder = Builder("InitiateMultipartUploadResult")
    Builder.add_all(builder.root, [("Bucket", bucket), ("Key", key), ("UploadId", upload_id)])
    return builder


def complete_result(location, bucket, key, etag):
    builder = Builder("CompleteMultipartUploadResult")
    Builder.add_all(
        builder.root,
        [("Location", location), ("Bucket", bucket), ("Key", key), ("ETag", _quoted(etag))],
    )
    return builder


def copy_part_result(last_modified, etag):
    builder = Builder("CopyPartResult")
    Builder.add_all(builder.root, [("LastModified", last_modified), ("ETag", _quoted(etag))])
    return builder


def list_parts_result(info, parts, encoding_type):
    """ListPartsResult. ``info``: bucket, key, upload_id, owner_id, display_name,
    marker, next_marker, max_parts, truncated. ``parts``: dicts with number,
    last_modified (ISO 8601), etag, size."""
    builder = Builder("ListPartsResult")
    root = builder.root
    Builder.add_all(
        root,
        [
            ("Bucket", info["bucket"]),
            ("Key", encode_key(info["key"], encoding_type)),
            ("UploadId", info["upload_id"]),
        ],
    )
    owner_elements(root, info["owner_id"], info["display_name"])
    Builder.add_all(
        root,
        [
            ("StorageClass", "STANDARD"),
            ("PartNumberMarker", str(info["marker"])),
            ("NextPartNumberMarker", str(info["next_marker"])),
            ("MaxParts", str(info["max_parts"])),
            ("IsTruncated", "true" if info["truncated"] else "false"),
        ],
    )
    if encoding_type:
        Builder.add(root, "EncodingType", encoding_type)
    for part in parts:
        element = Builder.add(root, "Part")
        Builder.add_all(
            element,
            [
                ("PartNumber", str(part["number"])),
                ("LastModified", part["last_modified"]),
                ("ETag", _quoted(part["etag"])),
                ("Size", str(part["size"])),
            ],
        )
    return builder


def select_uploads(uploads, prefix, delimiter, key_marker, upload_id_marker, max_uploads):
    """Page through uploads (``(key, upload id, initiated)`` sorted by key then id).

    Returns ``(shown uploads, common prefixes, truncated, next key marker, next upload id
    marker)`` as ListMultipartUploads defines them: after ``key_marker`` (and, for that
    same key, after ``upload_id_marker``), keys under ``prefix``, rolled up at
    ``delimiter`` into common prefixes, at most ``max_uploads`` items in all.
    """
    shown, prefixes = [], []
    truncated = False
    last = None
    for key, upload_id, initiated in uploads:
        if prefix and not key.startswith(prefix):
            continue
        if key_marker:
            if key < key_marker:
                continue
            if key == key_marker and (not upload_id_marker or upload_id <= upload_id_marker):
                continue
        rolled = None
        if delimiter:
            cut = key.find(delimiter, len(prefix or ""))
            if cut >= 0:
                rolled = key[: cut + len(delimiter)]
        if rolled is not None and prefixes and prefixes[-1] == rolled:
            continue
        if rolled is not None and key_marker and rolled <= key_marker:
            continue
        if len(shown) + len(prefixes) >= max_uploads:
            truncated = True
            break
        if rolled is not None:
            prefixes.append(rolled)
            last = (rolled, "")
        else:
            shown.append((key, upload_id, initiated))
            last = (key, upload_id)
    next_key, next_id = last if truncated and last else ("", "")
    return shown, prefixes, truncated, next_key, next_id


def list_uploads_result(info, shown, prefixes, encoding_type):
    """ListMultipartUploadsResult. ``info``: bucket, key_marker, upload_id_marker,
    next_key_marker, next_upload_id_marker, delimiter, prefix, max_uploads, truncated,
    owner_id, display_name."""
    builder = Builder("ListMultipartUploadsResult")
    root = builder.root
    enc = encoding_type
    Builder.add_all(
        root,
        [
            ("Bucket", info["bucket"]),
            ("KeyMarker", encode_key(info["key_marker"], enc)),
            ("UploadIdMarker", info["upload_id_marker"]),
            ("NextKeyMarker", encode_key(info["next_key_marker"], enc)),
            ("NextUploadIdMarker", info["next_upload_id_marker"]),
        ],
    )
    if info["delimiter"]:
        Builder.add(root, "Delimiter", encode_key(info["delimiter"], enc))
    Builder.add(root, "Prefix", encode_key(info["prefix"] or "", enc))
    Builder.add_all(
        root,
        [
            ("MaxUploads", str(info["max_uploads"])),
            ("IsTruncated", "true" if info["truncated"] else "false"),
        ],
    )
    if enc:
        Builder.add(root, "EncodingType", enc)
    for key, upload_id, initiated in shown:
        element = Builder.add(root, "Upload")
        Builder.add_all(element, [("Key", encode_key(key, enc)), ("UploadId", upload_id)])
        owner_elements(element, info["owner_id"], info["display_name"])
        Builder.add_all(element, [("StorageClass", "STANDARD"), ("Initiated", initiated)])
    for rolled in prefixes:
        element = Builder.add(root, "CommonPrefixes")
        Builder.add(element, "Prefix", encode_key(rolled, enc))
    return builder


def parse_copy_range(value, size):
    """``x-amz-copy-source-range: bytes=first-last`` as ``(start, stop)`` within ``size``.

    InvalidArgument when malformed; None when it reaches past the object (InvalidRange).
    """
    text = (value or "").strip()
    first, dash, last = text[6:].partition("-") if text.startswith("bytes=") else ("", "", "")
    if not dash or not first.isdigit() or not last.isdigit() or int(last) < int(first):
        raise InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where "
            "first and last are the zero-based offsets of the first and last bytes to copy",
            argument_name="x-amz-copy-source-range",
            argument_value=value,
        )
    start, stop = int(first), int(last) + 1
    if stop > size:
        return None
    return start, stop
