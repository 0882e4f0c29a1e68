"""Listings of containers (objects) and accounts (containers), as Swift clients expect them.

Three parts, shared by the container and account servers:

- ``parse_listing_params`` / ``listing_format``: the query string (``prefix``, ``delimiter``,
  ``marker``, ``end_marker``, ``limit``, ``reverse``, ``format``) and the Accept header.
- ``walk_listing``: the marker/prefix/delimiter walk over a table sorted by name. It asks
  a ``fetch`` callback for range scans only; when a name rolls up into a ``subdir`` it
  starts a new scan just past everything under that subdir instead of reading it.
- ``render_listing``: the json / xml / plain bodies.

Names compare by code point, which is also SQLite's order for UTF-8 text, so a brute-force
``sorted()`` in Python agrees with the database.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape, quoteattr

from webob import Response

from common.constraints import CONTAINER_LISTING_LIMIT, check_listing_limit
from common.http import HTTPError
from common.timestamp import TICKS_PER_SECOND, Timestamp

CONTENT_TYPES = {
    "plain": "text/plain",
    "json": "application/json",
    "xml": "application/xml",
}
_OFFERS = ["text/plain", "application/json", "application/xml", "text/xml"]
_OFFER_FORMAT = {
    "text/plain": "plain",
    "application/json": "json",
    "application/xml": "xml",
    "text/xml": "xml",
}
_TRUE = {"1", "true", "yes", "on", "t", "y"}
_MAX_CODE_POINT = 0x10FFFF
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

CONTAINER_FIELDS = ("name", "hash", "bytes", "content_type", "last_modified")
ACCOUNT_FIELDS = ("name", "count", "bytes", "last_modified")


class Subdir(str):
    """A name prefix that a delimiter rolled several names up into."""


@dataclass
class ListingParams:
    prefix: str = ""
    delimiter: str = ""
    marker: str = ""
    end_marker: str = ""
    limit: int = CONTAINER_LISTING_LIMIT
    reverse: bool = False


def query_params(req):
    """The query string as a dict of ``str`` (UTF-8; anything else is a 400)."""
    try:
        pairs = parse_qsl(
            req.environ.get("QUERY_STRING", ""),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, "query string is not valid UTF-8") from None
    return dict(pairs)


def parse_listing_params(req, max_limit=CONTAINER_LISTING_LIMIT):
    """The listing parameters of a GET; bad values are 400, a limit over the max is 412."""
    params = query_params(req)
    for key in ("prefix", "delimiter", "marker", "end_marker"):
        if "\x00" in params.get(key, ""):
            raise HTTPError(400, f"{key} contains a NUL character")
    return ListingParams(
        prefix=params.get("prefix", ""),
        delimiter=params.get("delimiter", ""),
        marker=params.get("marker", ""),
        end_marker=params.get("end_marker", ""),
        limit=check_listing_limit(params.get("limit"), max_limit),
        reverse=params.get("reverse", "").strip().lower() in _TRUE,
    )


def listing_format(req):
    """(format, Content-Type) from ``?format=`` or else the Accept header; 406 if neither fits.

    As in Swift, ``format`` wins over Accept and an unknown ``format`` means plain.
    """
    fmt = query_params(req).get("format", "").strip().lower()
    if fmt:
        fmt = fmt if fmt in CONTENT_TYPES else "plain"
        return fmt, CONTENT_TYPES[fmt] + "; charset=utf-8"
    offers = req.accept.acceptable_offers(_OFFERS)
    if not offers:
        raise HTTPError(406, "no acceptable listing format (text/plain, json or xml)")
    offer = offers[0][0]
    return _OFFER_FORMAT[offer], offer + "; charset=utf-8"


def _bump(char):
    """The code point after ``char``, stepping over the surrogates (not valid in UTF-8)."""
    code = ord(char) + 1
    if 0xD800 <= code <= 0xDFFF:
        code = 0xE000
    return chr(code)


def after_prefix(prefix):
    """The least string greater than every string starting with ``prefix`` (None if none)."""
    while prefix and ord(prefix[-1]) == _MAX_CODE_POINT:
        prefix = prefix[:-1]
    if not prefix:
        return None
    return prefix[:-1] + _bump(prefix[-1])


def walk_listing(fetch, params):
    """One page of a listing: rows from ``fetch`` and ``Subdir`` entries, in listing order.

    ``fetch(lower, lower_inclusive, upper, reverse, count)`` returns (an iterable, closed
    afterwards if it has ``close``) of at most ``count`` live rows whose first column is the
    name, with ``lower <(=) name < upper`` (None: unbounded), ordered by name (descending
    when ``reverse``). With ``reverse`` the roles of ``marker`` and ``end_marker`` swap, so
    that ``marker`` is always "start after this" in the order the client sees.
    """
    prefix, delimiter, marker = params.prefix, params.delimiter, params.marker
    limit = params.limit
    results = []
    if limit <= 0:
        return results
    end_prefix = after_prefix(prefix) if prefix else None
    start, stop = (params.end_marker, marker) if params.reverse else (marker, params.end_marker)
    if start and start >= prefix:
        lower, inclusive = start, False
    else:
        lower, inclusive = (prefix, True) if prefix else (None, False)
    upper = stop if stop and (end_prefix is None or stop < end_prefix) else end_prefix

    while len(results) < limit:
        if lower is not None and upper is not None and lower >= upper:
            break
        want = limit - len(results)
        seen = 0
        jumped = False
        rows = fetch(lower, inclusive, upper, params.reverse, want)
        try:
            for row in rows:
                seen += 1
                name = row[0]
                cut = name.find(delimiter, len(prefix)) if delimiter else -1
                if cut < 0:
                    results.append(row)
                    if params.reverse:
                        upper = name
                    else:
                        lower, inclusive = name, False
                    continue
                subdir = name[: cut + len(delimiter)]
                if subdir != marker:
                    results.append(Subdir(subdir))
                # Skip everything under the subdir with a fresh range scan.
                if params.reverse:
                    upper = subdir
                else:
                    lower, inclusive = after_prefix(subdir), True
                    if lower is None:
                        return results
                jumped = True
                break
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        if not jumped and seen < want:
            break
    return results


def isoformat(timestamp):
    """``2024-05-01T12:34:56.789010`` (UTC, always with microseconds) as Swift lists it."""
    text = timestamp if isinstance(timestamp, str) else ""
    if (
        len(text) >= 16
        and text[10] == "."
        and text[:16].isascii()
        and text[:10].isdigit()
        and text[11:16].isdigit()
    ):
        seconds, frac = int(text[:10]), int(text[11:16])  # the stored internal form
    else:
        seconds, frac = divmod(Timestamp(timestamp).ticks, TICKS_PER_SECOND)
    return f"{_iso_seconds(seconds)}.{frac * (1_000_000 // TICKS_PER_SECOND):06d}"


@lru_cache(maxsize=4096)
def _iso_seconds(seconds):
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def split_swift_bytes(content_type):
    """(content type, size or None): a ``;swift_bytes=N`` parameter overrides the row's size.

    Large-object manifests record their total size this way in the container row.
    """
    if not content_type or "swift_bytes=" not in content_type:
        return content_type, None
    kept = []
    size = None
    for part in content_type.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "swift_bytes" and value.isascii() and value.isdigit():
            size = int(value)
        else:
            kept.append(part)
    return ";".join(kept), size


def object_entry(name, created_at, size, content_type, etag):
    """A container listing entry for one object row."""
    content_type, override = split_swift_bytes(content_type)
    return {
        "name": name,
        "hash": etag,
        "bytes": size if override is None else override,
        "content_type": content_type,
        "last_modified": isoformat(created_at),
    }


def container_entry(name, object_count, bytes_used, put_timestamp):
    """An account listing entry for one container row."""
    return {
        "name": name,
        "count": object_count,
        "bytes": bytes_used,
        "last_modified": isoformat(put_timestamp),
    }


def render_listing(entries, fmt, root, root_name):
    """The response body of a listing: ``entries`` are dicts or ``{"subdir": name}``.

    ``root`` is ``container`` (entries are objects) or ``account`` (entries are containers).
    """
    if fmt == "json":
        return json.dumps(entries).encode("ascii")
    if fmt == "xml":
        return _render_xml(entries, root, root_name)
    return "".join((e.get("name") or e["subdir"]) + "\n" for e in entries).encode("utf-8")


def _render_xml(entries, root, root_name):
    if root == "container":
        item_tag, fields = "object", CONTAINER_FIELDS
    else:
        item_tag, fields = "container", ACCOUNT_FIELDS
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n', f"<{root} name={quoteattr(root_name)}>"]
    for entry in entries:
        if "subdir" in entry:
            name = entry["subdir"]
            out.append(f"<subdir name={quoteattr(name)}><name>{escape(name)}</name></subdir>")
            continue
        out.append(f"<{item_tag}>")
        for field in fields:
            out.append(f"<{field}>{escape(str(entry[field]))}</{field}>")
        out.append(f"</{item_tag}>")
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


def listing_response(entries, fmt, content_type, root, root_name, headers):
    """The GET response for a page of ``entries``; an empty plain listing is a 204."""
    body = render_listing(entries, fmt, root, root_name)
    status = 204 if not body and fmt == "plain" else 200
    resp = Response(status=status, headers=headers)
    resp.headers["Content-Type"] = content_type
    resp.body = body
    return resp
