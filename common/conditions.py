"""Conditional GET/HEAD (RFC 7232): If-Match, If-None-Match, If-(Un)Modified-Since, If-Range.

Evaluated in the RFC's order: If-Match (else If-Unmodified-Since) can fail with 412;
then If-None-Match (else If-Modified-Since) can answer 304. Malformed dates are ignored,
as the RFC asks. Times are whole seconds since the epoch. An object may answer to more
than one ETag (a large object's own and S3's for a multipart upload): ``etag`` is one
tag or a set of them.
"""

import email.utils
from datetime import UTC


def normalize_etag(tag):
    """An entity tag without quotes or the weak ``W/`` prefix."""
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag.startswith('"') and tag.endswith('"'):
        tag = tag[1:-1]
    return tag


def _etag_set(etag):
    return {etag} if isinstance(etag, str) else set(etag)


def etag_matches(header_value, etag):
    """Whether an If-Match / If-None-Match list names ``etag`` (or is ``*``)."""
    tags = {normalize_etag(t) for t in header_value.split(",") if t.strip()}
    return "*" in tags or bool(tags & _etag_set(etag))


def parse_http_date(value):
    """Seconds since the epoch of an HTTP date, or None if it is not one."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def http_date(seconds):
    """An HTTP date for seconds since the epoch."""
    return email.utils.formatdate(seconds, usegmt=True)


def evaluate(headers, etag, last_modified):
    """412, 304 or None (go ahead) for a GET/HEAD of an object with ``etag``."""
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            return 412
    else:
        since = parse_http_date(headers.get("If-Unmodified-Since"))
        if since is not None and last_modified is not None and last_modified > since:
            return 412
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            return 304
    else:
        since = parse_http_date(headers.get("If-Modified-Since"))
        if since is not None and last_modified is not None and last_modified <= since:
            return 304
    return None


def range_applies(headers, etag, last_modified):
    """False if an If-Range names another version (then the whole object is sent)."""
    if_range = headers.get("If-Range")
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return not value.startswith("W/") and normalize_etag(value) in _etag_set(etag)
    return parse_http_date(value) == last_modified
