"""Static large object manifests as data: what a client sends, what is stored, the sums.

No I/O here, so every rule can be tested on its own.

A client's manifest (``PUT ?multipart-manifest=put``) is a JSON list of segments::

    [{"path": "/cont/obj", "etag": "<md5 hex>" | null, "size_bytes": N | null,
      "range": "first-last" | "first-" | "-suffix"}, ...]

``path`` is required; ``etag`` and ``size_bytes``, when given, must match the segment;
``range`` takes only part of a segment. Every segment (or its range) must hold at least
one byte. The stored manifest is a JSON list of entries::

    {"name": "/cont/obj", "bytes": <segment size>, "hash": "<segment etag>",
     "content_type": ..., "last_modified": ..., "range": "a-b", "sub_slo": true}

(``range`` and ``sub_slo`` only when they apply). ``bytes`` and ``hash`` are those of the
whole segment; a ``sub_slo`` segment is itself a manifest, and its ``bytes`` and
``hash`` are its total size and large-object ETag. The large object's ETag is the MD5 of
the segments' ETags (hex) one after the other, ``"<etag>:<range>;"`` standing for a
segment taken in part, as Swift computes it.
"""

import hashlib
import json
import time

from common.byteranges import parse_range_header, ranges_for_length
from common.conditions import parse_http_date

SLO_HEADER = "X-Static-Large-Object"
SYSMETA_ETAG = "X-Object-Sysmeta-Slo-Etag"
SYSMETA_SIZE = "X-Object-Sysmeta-Slo-Size"
# Swift's way of telling the container listing another ETag than the stored body's.
OVERRIDE_ETAG = "X-Object-Sysmeta-Container-Update-Override-Etag"
# Another ETag a large object answers conditional requests to (S3's multipart ETag).
ALT_ETAG = "X-Object-Sysmeta-S3api-Etag"
HIDDEN_PARAMS = ("swift_bytes",)
INPUT_KEYS = frozenset(("path", "etag", "size_bytes", "range"))
TOO_SMALL = "Too small; each segment must be at least 1 byte."


class ManifestError(Exception):
    """A manifest that cannot be used at all: ``status`` (400 or 413) and why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def is_true(value):
    return str(value or "").strip().lower() in ("true", "1", "yes", "on", "t", "y")


def is_slo(headers):
    """True for the headers of a stored manifest (the flag, or our sysmeta: a POST that
    forgot the flag must not turn a manifest into its JSON)."""
    return is_true(headers.get(SLO_HEADER)) or bool(headers.get(SYSMETA_ETAG))


def split_segment_path(path):
    """``/cont/obj`` (or ``cont/obj``) -> ``("cont", "obj")``; ValueError if not both."""
    if not isinstance(path, str):
        raise ValueError("path must be a string")
    container, _slash, obj = path.lstrip("/").partition("/")
    if not container or not obj:
        raise ValueError("path must be /container/object")
    return container, obj


def parse_input(raw, max_segments):
    """The client's manifest as a list of dicts (``path``, ``container``, ``obj``,
    ``etag``, ``size_bytes``, ``range``); ManifestError for anything malformed."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ManifestError(400, "Manifest must be valid JSON.") from None
    if not isinstance(data, list):
        raise ManifestError(400, "Manifest must be a list.")
    if not data:
        raise ManifestError(400, "Manifest must have at least one segment.")
    if len(data) > max_segments:
        raise ManifestError(413, f"Manifest may not exceed {max_segments} segments.")
    specs = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise ManifestError(400, f"Index {index}: not a JSON object")
        extra = sorted(set(item) - INPUT_KEYS)
        if extra:
            names = ", ".join(json.dumps(k) for k in extra)
            raise ManifestError(400, f"Index {index}: extraneous keys {names}")
        try:
            container, obj = split_segment_path(item.get("path"))
        except ValueError:
            raise ManifestError(
                400,
                f"Index {index}: path does not refer to an object. Path must be of "
                "the form /container/object.",
            ) from None
        etag = item.get("etag")
        if etag is not None and (not isinstance(etag, str) or not etag.strip('"')):
            raise ManifestError(400, f"Index {index}: etag must be a string or null")
        size = item.get("size_bytes")
        if isinstance(size, str) and size.isascii() and size.isdigit():
            size = int(size)
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise ManifestError(400, f"Index {index}: size_bytes must be an integer or null")
        if size is not None and size < 1:
            raise ManifestError(400, f"Index {index}: {TOO_SMALL}")
        seg_range = item.get("range")
        if seg_range is not None:
            if not isinstance(seg_range, str):
                raise ManifestError(400, f"Index {index}: range must be a string")
            specs_of_range = parse_range_header("bytes=" + seg_range)
            if specs_of_range is None:
                raise ManifestError(400, f"Index {index}: invalid range")
            if len(specs_of_range) != 1:
                raise ManifestError(400, f"Index {index}: multiple ranges in one segment")
        specs.append(
            {
                "path": f"/{container}/{obj}",
                "container": container,
                "obj": obj,
                "etag": etag.strip('"').lower() if etag is not None else None,
                "size_bytes": size,
                "range": seg_range,
            }
        )
    return specs


def resolve_segment_range(seg_range, size):
    """A segment's ``range`` text as ``(start, stop)`` within ``size`` bytes; None if it
    asks for nothing there (or for more than one range)."""
    specs = parse_range_header("bytes=" + seg_range)
    if not specs or len(specs) != 1:
        return None
    ranges = ranges_for_length(specs, size)
    return ranges[0] if ranges else None


def iso_last_modified(http_date):
    """An HTTP date as a listing's ``last_modified`` (``2024-01-02T03:04:05.000000``)."""
    seconds = parse_http_date(http_date)
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000", time.gmtime(seconds))


def strip_swift_bytes(content_type, params=("swift_bytes",)):
    """A stored Content-Type without the ``swift_bytes`` parameter manifests carry
    (or without any of ``params``)."""
    if not content_type or "=" not in content_type:
        return content_type
    kept = [p for p in content_type.split(";") if p.strip().partition("=")[0].strip() not in params]
    return ";".join(kept).strip()


def client_content_type(content_type):
    """A manifest's Content-Type as clients see it: without the parameter that carries
    its total size to the listings."""
    return strip_swift_bytes(content_type, HIDDEN_PARAMS)


def segment_entry(spec, status, headers):
    """The stored entry for one client segment given its HEAD answer, or a problem.

    Returns ``(entry, None)`` or ``(None, "reason")`` (Swift's wording).
    """
    if status == 404:
        return None, "404 Not Found"
    if not 200 <= status < 300:
        return None, f"{status} {_reason(status)}"
    sub_slo = is_slo(headers)
    if sub_slo:
        size = _int(headers.get(SYSMETA_SIZE))
        etag = (headers.get(SYSMETA_ETAG) or "").strip('"')
    else:
        size = _int(headers.get("Content-Length"))
        etag = (headers.get("ETag") or "").strip('"')
    if size is None or not etag:
        return None, "Segment answered without a size or an ETag"
    if spec["etag"] is not None and spec["etag"] != etag.lower():
        return None, "Etag Mismatch"
    if spec["size_bytes"] is not None and spec["size_bytes"] != size:
        return None, "Size Mismatch"
    if size < 1:
        return None, TOO_SMALL
    entry = {
        "name": spec["path"],
        "bytes": size,
        "hash": etag,
        "content_type": strip_swift_bytes(headers.get("Content-Type")) or "",
        "last_modified": iso_last_modified(headers.get("Last-Modified")),
    }
    if spec["range"] is not None:
        resolved = resolve_segment_range(spec["range"], size)
        if resolved is None:
            return None, "Unsatisfiable Range"
        start, stop = resolved
        if (start, stop) != (0, size):
            entry["range"] = f"{start}-{stop - 1}"
    if sub_slo:
        entry["sub_slo"] = True
    return entry, None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _reason(status):
    from common.http import STATUS_TEXT  # a pure table; kept local to keep imports light

    return STATUS_TEXT.get(status, "Error")


# -- the sums ------------------------------------------------------------------------------


def entry_span(entry):
    """``(start, stop)`` of the segment bytes an entry contributes."""
    seg_range = entry.get("range")
    if seg_range:
        first, _dash, last = seg_range.partition("-")
        return int(first), int(last) + 1
    return 0, int(entry["bytes"])


def entry_length(entry):
    start, stop = entry_span(entry)
    return stop - start


def total_size(entries):
    return sum(entry_length(e) for e in entries)


def slo_etag(entries):
    """The large object's ETag: MD5 of its segments' ETags (hex), as Swift computes it."""
    md5 = hashlib.md5(usedforsecurity=False)
    for entry in entries:
        if entry.get("range"):
            md5.update(f"{entry['hash']}:{entry['range']};".encode("ascii"))
        else:
            md5.update(entry["hash"].encode("ascii"))
    return md5.hexdigest()


def pieces(lengths, start, stop):
    """The parts of segments that make up bytes ``[start, stop)`` of their concatenation.

    ``lengths`` are the segments' contributed lengths, in order. Yields
    ``(index, seg_start, seg_stop)`` with offsets inside segment ``index``; segments
    outside the range are never named.
    """
    if stop <= start:
        return
    offset = 0
    for index, length in enumerate(lengths):
        end = offset + length
        if end > start and offset < stop:
            yield index, max(start - offset, 0), min(stop, end) - offset
        if end >= stop:
            return
        offset = end


def parse_manifest(body):
    """A stored manifest's entries; ValueError if the body is not one."""
    entries = json.loads(body)
    if not isinstance(entries, list):
        raise ValueError("manifest is not a list")
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry or "bytes" not in entry:
            raise ValueError("manifest entry without name or bytes")
    return entries


def raw_manifest(entries):
    """The stored manifest in the form a ``?multipart-manifest=put`` accepts again."""
    raw = []
    for entry in entries:
        item = {"path": entry["name"], "etag": entry.get("hash"), "size_bytes": entry["bytes"]}
        if entry.get("range"):
            item["range"] = entry["range"]
        raw.append(item)
    return raw


def override_etag(manifest_md5, slo_etag_hex, given=None):
    """The container-listing ETag of a manifest: its own MD5, then ``; slo_etag=...``
    and any parameters (``; s3_etag=...``) a filter further out already asked for."""
    params = []
    if given:
        _value, *rest = given.split(";")
        params = [p.strip() for p in rest if p.strip() and not p.strip().startswith("slo_etag=")]
    params.append(f"slo_etag={slo_etag_hex}")
    return "; ".join([manifest_md5, *params])
