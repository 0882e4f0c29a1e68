"""Object request headers the proxy checks or writes itself, as pure functions.

Content-Type guessing, ``X-Delete-At``/``X-Delete-After``, ``If-None-Match`` on PUT,
the container (or account) node each write must update, and the header arithmetic
of a server-side copy (``X-Copy-From``, ``COPY`` with ``Destination``).
"""

import mimetypes
import time
from urllib.parse import quote, unquote

from common.constraints import check_name
from common.http import HTTPError

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Object headers a copy carries over from its source besides the metadata prefixes.
COPIED_HEADERS = frozenset(
    (
        "content-encoding",
        "content-disposition",
        "content-language",
        "cache-control",
        "expires",
        "x-robots-tag",
        "x-delete-at",
    )
)
USER_META = "x-object-meta-"
SYSMETA = ("x-object-sysmeta-", "x-object-transient-sysmeta-")


def guess_content_type(obj_name):
    """The Content-Type for an object name's extension, or application/octet-stream."""
    guessed, _encoding = mimetypes.guess_type(obj_name, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


def content_type_for(headers, obj_name):
    """The Content-Type to store: the client's, or a guess when absent or asked for."""
    given = headers.get("Content-Type")
    detect = (headers.get("X-Detect-Content-Type") or "").strip().lower() in ("true", "1", "yes")
    if given and not detect:
        return given
    return guess_content_type(obj_name)


def delete_at(headers, now=None):
    """The ``X-Delete-At`` to store (str), from X-Delete-At or X-Delete-After; 400 if bad.

    Returns None when neither is set. A time in the past is refused.
    """
    now = time.time() if now is None else now
    after = headers.get("X-Delete-After")
    at = headers.get("X-Delete-At")
    if after is not None:
        try:
            seconds = int(after)
        except ValueError:
            raise HTTPError(400, "non-integer X-Delete-After") from None
        if seconds < 0:
            raise HTTPError(400, "X-Delete-After in past")
        at = str(int(now + seconds))
    if at is None:
        return None
    try:
        when = int(at)
    except ValueError:
        raise HTTPError(400, "non-integer X-Delete-At") from None
    if when <= now:
        raise HTTPError(400, "X-Delete-At in past")
    return str(when)


def check_if_none_match(headers):
    """A PUT's If-None-Match may only be ``*`` (``"*"`` too); anything else is 400."""
    value = headers.get("If-None-Match")
    if value is None:
        return False
    if value.strip() not in ("*", '"*"'):
        raise HTTPError(400, "If-None-Match only supports *")
    return True


def update_target_headers(kind, targets, part, slot_count):
    """Per-slot headers telling each of ``slot_count`` writes which ``kind`` node to update.

    ``kind`` is "Container" (object writes) or "Account" (container writes); each slot
    gets one node, round robin, so every node is told by at least one write when there
    are as many slots as nodes.
    """
    if not targets:
        return [{} for _ in range(slot_count)]
    headers = []
    for slot in range(slot_count):
        node = targets[slot % len(targets)]
        headers.append(
            {
                f"X-{kind}-Host": f"{_host(node['ip'])}:{node['port']}",
                f"X-{kind}-Partition": str(part),
                f"X-{kind}-Device": node["device"],
            }
        )
    return headers


def _host(ip):
    return f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip


def wsgi_to_str(value):
    """A header value as the client meant it: WSGI latin-1 bytes read as UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def split_copy_path(value, header):
    """``/container/object`` or ``container/object`` (percent-encoded) -> (c, o); 412 if bad."""
    text = unquote(wsgi_to_str(value or "").strip())
    if text.startswith("/"):
        text = text[1:]
    container, _sep, obj = text.partition("/")
    if not container or not obj:
        raise HTTPError(412, f"{header} header must be of the form <container name>/<object name>")
    check_name("container", container)
    check_name("object", obj)
    return container, obj


def copy_account(value, default):
    """The account named by X-Copy-From-Account / Destination-Account, or ``default``."""
    if not value:
        return default
    account = unquote(wsgi_to_str(value).strip())
    check_name("account", account)
    return account


def copied_headers(source_headers, request_headers, fresh):
    """The headers of a copy: the source's metadata under the request's (or fresh).

    ``source_headers`` are the source GET answer's; ``request_headers`` what the client
    sent with the copy. With ``fresh`` (``X-Fresh-Metadata: true``) only system
    metadata comes from the source. Content-Type comes from the source unless given.
    """
    merged = {}
    for key, value in source_headers.items():
        lower = key.lower()
        if lower.startswith(SYSMETA) or (
            not fresh and (lower.startswith(USER_META) or lower in COPIED_HEADERS)
        ):
            merged[key] = value
    for key, value in request_headers.items():
        lower = key.lower()
        if lower.startswith((USER_META, *SYSMETA)) or lower in COPIED_HEADERS:
            for existing in [k for k in merged if k.lower() == lower]:
                del merged[existing]
            merged[key] = value
    content_type = request_headers.get("Content-Type") or source_headers.get("Content-Type")
    if content_type:
        merged["Content-Type"] = content_type
    return merged


def copied_from_headers(src_account, account, src_container, src_obj, source_headers):
    """The X-Copied-From* headers of a copy's response."""
    headers = {"X-Copied-From": quote(f"{src_container}/{src_obj}")}
    if src_account != account:
        headers["X-Copied-From-Account"] = quote(src_account)
    if source_headers.get("Last-Modified"):
        headers["X-Copied-From-Last-Modified"] = source_headers["Last-Modified"]
    return headers
