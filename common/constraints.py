"""Limits on names and metadata, checked the same way by the proxy and storage nodes."""

from common.http import HTTPError

MAX_ACCOUNT_NAME_LENGTH = 256
MAX_CONTAINER_NAME_LENGTH = 256
MAX_OBJECT_NAME_LENGTH = 1024
MAX_META_NAME_LENGTH = 128
MAX_META_VALUE_LENGTH = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096
MAX_HEADER_SIZE = 8192
MAX_FILE_SIZE = 5 * 1024**3
CONTAINER_LISTING_LIMIT = 10000
ACCOUNT_LISTING_LIMIT = 10000

NAME_LIMITS = {
    "account": MAX_ACCOUNT_NAME_LENGTH,
    "container": MAX_CONTAINER_NAME_LENGTH,
    "object": MAX_OBJECT_NAME_LENGTH,
}

META_PREFIXES = {
    "account": "x-account-meta-",
    "container": "x-container-meta-",
    "object": "x-object-meta-",
}


def check_name(kind, name):
    """A name of ``kind`` (account/container/object) must be non-empty, short and NUL-free."""
    if not name:
        raise HTTPError(400, f"{kind} name is empty")
    if "\x00" in name:
        raise HTTPError(400, f"{kind} name contains a NUL character")
    limit = NAME_LIMITS[kind]
    if len(name.encode("utf-8")) > limit:
        raise HTTPError(400, f"{kind} name is longer than {limit} bytes")
    if kind != "object" and "/" in name:
        raise HTTPError(400, f"{kind} name contains '/'")


def check_metadata(headers, kind):
    """User metadata headers of ``kind`` must respect the count, name and size limits.

    ``headers`` is any mapping of header names to values (webob's EnvironHeaders works).
    Removal headers (``X-Remove-*-Meta-*`` or an empty value) count towards nothing.
    """
    prefix = META_PREFIXES[kind]
    count = 0
    total = 0
    for key, value in headers.items():
        lower = key.lower()
        if not lower.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if not name:
            raise HTTPError(400, "metadata name cannot be empty")
        if "\x00" in value:
            raise HTTPError(400, "metadata value contains a NUL character")
        if not value:
            continue
        count += 1
        name_len = len(name.encode("utf-8"))
        value_len = len(value.encode("utf-8"))
        total += name_len + value_len
        if name_len > MAX_META_NAME_LENGTH:
            raise HTTPError(400, f"metadata name too long; max {MAX_META_NAME_LENGTH} bytes")
        if value_len > MAX_META_VALUE_LENGTH:
            raise HTTPError(400, f"metadata value too long; max {MAX_META_VALUE_LENGTH} bytes")
        if count > MAX_META_COUNT:
            raise HTTPError(400, f"too many metadata items; max {MAX_META_COUNT}")
        if total > MAX_META_OVERALL_SIZE:
            raise HTTPError(400, f"total metadata too large; max {MAX_META_OVERALL_SIZE} bytes")


def check_listing_limit(value, maximum=CONTAINER_LISTING_LIMIT):
    """The ``limit`` query parameter: a non-negative integer at most ``maximum``."""
    if value is None or value == "":
        return maximum
    try:
        limit = int(value)
    except ValueError:
        raise HTTPError(400, f"limit must be an integer, got {value!r}") from None
    if limit < 0:
        raise HTTPError(400, "limit must not be negative")
    if limit > maximum:
        raise HTTPError(412, f"maximum limit is {maximum}")
    return limit
