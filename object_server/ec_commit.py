"""The object server's side of an erasure-coded write: two phases, as the proxy drives it.

1. ``PUT /<dev>/<part>/<a>/<c>/<o>`` with ``X-Backend-Ec-Frag-Index: <i>`` streams one
   fragment archive; it is stored as ``<ts>#<i>.data``, *not* durable, so GET and HEAD
   do not see it yet. The answer (201) carries the archive's checksum (a CRC32,
   object_server.ec_diskfile) as ``ETag``. No
   container update yet: the object does not exist until it is committed.
2. ``POST`` of the same path with ``X-Backend-Ec-Commit: true``, the same timestamp and
   index, and the proxy's footer (``X-Object-Sysmeta-Ec-Etag``, ``-Ec-Content-Length``,
   ``-Ec-Frag-Archive-Etag``, any other ``X-Object-Sysmeta-*``): the footer is merged
   into the archive's metadata and it is renamed ``<ts>#<i>#d.data``; then the
   container hears of the object (its original size and MD5), with an async pending
   if it cannot be reached. 201; 404 without such an archive; 409 if the archive's
   checksum is not the footer's (the archive is deleted) or a newer write exists.

The handlers use the ObjectApp's request parsing and container-update helpers, so that
an EC write is checked exactly as a replicated one.
"""

from webob import Response

from common import conditions, expiring
from common.http import HTTPError, backend_timestamp_headers
from object_server.container_update import container_target
from object_server.diskfile import DiskFileCollision, DiskFileNoSpace
from object_server.ec_diskfile import (
    EC_ARCHIVE_ETAG_KEY,
    EC_CONTENT_LENGTH_KEY,
    EC_ETAG_KEY,
    FRAG_INDEX_HEADER,
    FRAG_INDEX_KEY,
    FragmentEtagMismatch,
    FragmentNotFound,
    fragment_count,
)
from object_server.filenames import DATA

COMMIT_HEADER = "X-Backend-Ec-Commit"
SYSMETA_PREFIX = "x-object-sysmeta-"
TRUE_VALUES = frozenset(("true", "1", "yes", "on"))


def is_commit(req):
    """Whether a POST is phase 2 of an EC write rather than a metadata update."""
    return req.headers.get(COMMIT_HEADER, "").strip().lower() in TRUE_VALUES


def frag_index_of(req, policy):
    """The request's ``X-Backend-Ec-Frag-Index`` as an int below k + m (400 otherwise)."""
    # The server's header helpers, imported when called: object_server.server imports us.
    from object_server.server import digits

    value = req.headers.get(FRAG_INDEX_HEADER)
    if value is None or not value.strip():
        raise HTTPError(400, f"missing {FRAG_INDEX_HEADER} for an erasure-coded policy")
    index = digits(value, FRAG_INDEX_HEADER, max_digits=5)
    if index >= fragment_count(policy):
        raise HTTPError(400, f"{FRAG_INDEX_HEADER} {index} is not below k + m")
    return index


def put_fragment(app, req, policy, target):
    """Phase 1: store a non-durable fragment archive; 201 with its checksum."""
    device, part, account, container, obj, policy_index = target
    frag_index = frag_index_of(req, policy)
    ts, length, user_metadata, content_type, if_none_match, client_etag = app._put_request(req)
    _, df = app._diskfile(device, part, account, container, obj, policy_index)

    exists, orig_ts, _ = app._current_state(df)
    if if_none_match is not None and exists:
        raise HTTPError(412, "object exists", backend_timestamp_headers(orig_ts))
    # Another index of the same write may be here already (a handoff holds several).
    same_write = exists and orig_ts == ts and not df.has_durable(ts, frag_index)
    if orig_ts is not None and orig_ts >= ts and not same_write:
        raise HTTPError(409, "a newer write exists", backend_timestamp_headers(orig_ts))
    etag, _size = app._store_body(
        req,
        df,
        ts,
        length,
        content_type,
        user_metadata,
        client_etag,
        extra={FRAG_INDEX_KEY: str(frag_index)},
        ext=DATA,
        frag_index=frag_index,
        durable=False,
    )
    resp = Response(status="201 Created", headerlist=[("Content-Type", "text/plain")])
    resp.headers["ETag"] = f'"{etag}"'
    return resp


def _footer(req):
    """The commit's ``X-Object-Sysmeta-*`` headers, decoded; 400 if the EC ones are bad."""
    from object_server.server import canonical_header, digits, header_str

    footer = {
        canonical_header(key): header_str(value, key)
        for key, value in req.headers.items()
        if key.lower().startswith(SYSMETA_PREFIX)
    }
    if not footer.get(EC_ETAG_KEY):
        raise HTTPError(400, f"commit without {EC_ETAG_KEY}")
    footer[EC_ETAG_KEY] = conditions.normalize_etag(footer[EC_ETAG_KEY]).lower()
    length = footer.get(EC_CONTENT_LENGTH_KEY)
    if length is None:
        raise HTTPError(400, f"commit without {EC_CONTENT_LENGTH_KEY}")
    footer[EC_CONTENT_LENGTH_KEY] = str(digits(length, EC_CONTENT_LENGTH_KEY))
    if footer.get(EC_ARCHIVE_ETAG_KEY):
        footer[EC_ARCHIVE_ETAG_KEY] = conditions.normalize_etag(footer[EC_ARCHIVE_ETAG_KEY]).lower()
    footer.pop(FRAG_INDEX_KEY, None)
    return footer


def commit_fragment(app, req, policy, target):
    """Phase 2: make the archive durable, then update the container; 201."""
    device, part, account, container, obj, policy_index = target
    frag_index = frag_index_of(req, policy)
    ts = app._timestamp(req)
    footer = _footer(req)
    update_target = container_target(req.headers)
    queue = expiring.queue_target(req.headers)
    dev_path, df = app._diskfile(device, part, account, container, obj, policy_index)

    _, orig_ts, orig_metadata = app._current_state(df)
    if orig_ts is not None and orig_ts > ts:
        raise HTTPError(409, "a newer write exists", backend_timestamp_headers(orig_ts))
    archive_etag = footer.get(EC_ARCHIVE_ETAG_KEY)
    try:
        metadata, fresh = df.commit(ts, frag_index, footer, archive_etag)
    except FragmentNotFound:
        raise HTTPError(404, "no such fragment archive to commit") from None
    except FragmentEtagMismatch as err:
        raise HTTPError(409, str(err)) from None
    except DiskFileCollision as err:
        raise HTTPError(403, str(err)) from None
    except DiskFileNoSpace:
        raise HTTPError(507, "no space left on device") from None
    if fresh:
        update_headers = {
            "X-Size": metadata[EC_CONTENT_LENGTH_KEY],
            "X-Content-Type": metadata.get("Content-Type", ""),
            "X-Etag": metadata[EC_ETAG_KEY],
        }
        names = (account, container, obj)
        app._send_container_update(
            req, update_target, "PUT", names, update_headers, dev_path, df, ts
        )
        old_delete_at = orig_metadata.get("X-Delete-At")
        new_delete_at = metadata.get("X-Delete-At")
        app._update_expiring_queue(req, queue, old_delete_at, new_delete_at, names, df, ts)
    resp = Response(status="201 Created", headerlist=[("Content-Type", "text/plain")])
    resp.headers["ETag"] = f'"{metadata.get("ETag", "")}"'
    return resp
