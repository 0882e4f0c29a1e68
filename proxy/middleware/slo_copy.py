"""Copying a static large object (``PUT`` with ``X-Copy-From``, or ``COPY``).

The proxy's own copy reads the source below this filter, so it would copy a manifest's
JSON as if it were the object. Here a copy whose source is a manifest is done by
streaming the large object (read through ``slo_get``, as the client) into a PUT of a
plain object, with the metadata a copy carries. With ``?multipart-manifest=get`` the
manifest itself is copied and stays a manifest (the copy shares the segments). A copy
of anything else goes on to the proxy untouched.
"""

from webob import Request

from common.http import HTTPError
from proxy.controllers.object_headers import (
    copied_from_headers,
    copied_headers,
    copy_account,
    split_copy_path,
)
from proxy.middleware import slo_manifest as manifest
from proxy.middleware import slo_subrequest as sub
from proxy.middleware.slo_get import SegmentError

# Client headers that describe the copy request itself, not the object it makes.
NOT_PASSED = frozenset(
    (
        "x-copy-from",
        "x-copy-from-account",
        "destination",
        "destination-account",
        "x-fresh-metadata",
        "content-length",
        "content-type",
        "transfer-encoding",
        "etag",
        "content-md5",
        "expect",
        "host",
        "range",
        "if-match",
        "if-none-match-source",
    )
)
# Source headers that belong to the manifest, never to a plain copy of its bytes.
MANIFEST_ONLY = (
    "x-object-sysmeta-slo-",
    "x-object-sysmeta-s3api-etag",
    "x-object-sysmeta-s3api-upload-id",
    manifest.OVERRIDE_ETAG.lower(),
    manifest.SLO_HEADER.lower(),
)


def copy_ends(req, target):
    """``((src account, container, obj), (dest account, container, obj))`` of a copy."""
    headers = req.headers
    if req.method == "COPY":
        if not headers.get("Destination"):
            raise HTTPError(412, "Destination header required")
        dest_c, dest_o = split_copy_path(headers["Destination"], "Destination")
        dest_a = copy_account(headers.get("Destination-Account"), target.account)
        return (target.account, target.container, target.obj), (dest_a, dest_c, dest_o)
    src_c, src_o = split_copy_path(headers["X-Copy-From"], "X-Copy-From")
    src_a = copy_account(headers.get("X-Copy-From-Account"), target.account)
    return (src_a, src_c, src_o), (target.account, target.container, target.obj)


def handle_copy(slo, req, target, mode):
    """A copy request: streamed here when its source is a manifest, else passed on."""
    (src_a, src_c, src_o), dest = copy_ends(req, target)
    src_path = sub.object_path(target.version, src_a, src_c, src_o)
    probe = slo.fetch(req.environ, "HEAD", src_path)
    sub.close_body(probe)
    if not (200 <= probe.status_int < 300 and manifest.is_slo(probe.headers)):
        return sub.call(slo.app, req.environ)
    if mode == "get":
        env = dict(req.environ)
        env["HTTP_X_STATIC_LARGE_OBJECT"] = "True"
        env["QUERY_STRING"] = ""
        return sub.call(slo.app, env)
    return copy_large_object(slo, req, target.version, (src_a, src_c, src_o), dest)


def copy_large_object(slo, req, version, src, dest):
    """Stream the large object ``src`` into a plain object ``dest``."""
    src_a, src_c, src_o = src
    dest_a, dest_c, dest_o = dest
    src_path = sub.object_path(version, src_a, src_c, src_o)
    get_env = sub.make_environ(req.environ, "GET", src_path)
    source = slo.get_or_head(Request(get_env), sub.Target(version, src_a, src_c, src_o), None)
    if source.status_int != 200:
        return source
    fresh = (req.headers.get("X-Fresh-Metadata") or "").strip().lower() in ("true", "1", "yes")
    source_headers = {
        key: value
        for key, value in source.headers.items()
        if not key.lower().startswith(MANIFEST_ONLY)
    }
    headers = {key: value for key, value in req.headers.items() if key.lower() not in NOT_PASSED}
    for key in [
        k for k in headers if k.lower().startswith(("x-object-meta-", "x-object-sysmeta-"))
    ]:
        del headers[key]  # copied_headers merges the request's metadata with the source's
    headers.update(copied_headers(source_headers, req.headers, fresh))
    length = source.content_length
    body = IterReader(source.app_iter)
    dest_path = sub.object_path(version, dest_a, dest_c, dest_o)
    put_env = sub.make_environ(
        req.environ, "PUT", dest_path, headers=headers, body=body, length=length
    )
    try:
        resp = sub.call(slo.app, put_env)
    finally:
        body.close()
    if 200 <= resp.status_int < 300:
        extra = copied_from_headers(src_a, dest_a, src_c, src_o, source_headers)
        for key, value in extra.items():
            resp.headers[key] = value
    return resp


class IterReader:
    """A file-like over a response body, for a PUT's ``wsgi.input``.

    A segment that fails mid-copy becomes an HTTPError (409/503), so the PUT stops
    and answers it instead of storing a short object.
    """

    def __init__(self, app_iter):
        self.app_iter = app_iter
        self.iterator = iter(app_iter)
        self.buffer = b""

    def read(self, size=-1):
        while size < 0 or len(self.buffer) < size:
            try:
                chunk = next(self.iterator)
            except StopIteration:
                break
            except SegmentError as err:
                raise HTTPError(err.status, f"copy source: {err}") from None
            self.buffer += chunk
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def close(self):
        close = getattr(self.app_iter, "close", None)
        if close is not None:
            close()
