"""slo: static large objects, as Swift's SLO middleware serves them.

A static large object is a manifest object listing other objects (its segments); a
GET of the manifest streams the segments one after the other as one object.

- ``PUT <object>?multipart-manifest=put`` with a JSON list of segments (see
  ``slo_manifest``): every segment is HEADed (as the client's user) and must exist,
  hold at least one byte and match the ``etag``/``size_bytes`` given; otherwise 400
  naming each problem. The manifest is stored with ``X-Static-Large-Object: True``,
  its total size in the Content-Type (``;swift_bytes=N``, so listings show it) and in
  sysmeta, and its ETag (MD5 of the segments' ETags) in sysmeta. The answer's ETag is
  the large object's, quoted. A client ``ETag`` must match it (else 422).
- ``GET``/``HEAD`` of a manifest: the large object (``slo_get``). A HEAD never reads the
  segments. ``?multipart-manifest=get`` returns the stored manifest JSON itself
  (``&format=raw``: in the form a manifest PUT takes).
- ``DELETE <object>?multipart-manifest=delete``: the segments (nested manifests too),
  then the manifest; answered like a bulk delete (text, or JSON when asked).
- A copy of a manifest (``X-Copy-From``, ``COPY``) copies the large object's bytes into a
  plain object; with ``?multipart-manifest=get`` it copies the manifest (a new large
  object sharing the segments).
- ``X-Static-Large-Object`` is reserved: a client's PUT or POST may not set it (400).

Options (``[filter:slo]``): ``max_manifest_segments`` (10000: enough for S3's parts),
``max_manifest_size`` (bytes of a manifest PUT body, 8 MiB), ``concurrency`` (segment
HEADs at once during a manifest PUT, 2), ``delete_concurrency`` (segment DELETEs at
once, 2).
"""

import hashlib
import io
import json
import logging

from webob import Request, Response

from common.concurrency import Pile
from common.config import config_int
from common.http import HTTPError, request_path, split_path, status_line
from proxy import register_capability
from proxy.controllers.object_headers import content_type_for
from proxy.middleware import check_options, filter_conf
from proxy.middleware import slo_copy as copy
from proxy.middleware import slo_manifest as manifest
from proxy.middleware import slo_subrequest as sub
from proxy.middleware.slo_get import SegmentReader, respond

OPTIONS = {"max_manifest_segments", "max_manifest_size", "concurrency", "delete_concurrency"}
DEFAULTS = {
    "max_manifest_segments": 10000,
    "max_manifest_size": 8 * 1024 * 1024,
    "concurrency": 2,
    "delete_concurrency": 2,
}
API_VERSIONS = ("v1", "v1.0")
RESERVED = (
    "X-Static-Large-Object is a reserved header. To create a static large object "
    "add query param multipart-manifest=put."
)
CONDITIONAL_ENV = (
    "HTTP_RANGE",
    "HTTP_IF_MATCH",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_RANGE",
)
# Client headers a manifest PUT does not pass on as they are.
PUT_DROPPED_ENV = (
    "HTTP_TRANSFER_ENCODING",
    "HTTP_ETAG",
    "HTTP_CONTENT_MD5",
    "HTTP_X_DETECT_CONTENT_TYPE",
    "HTTP_EXPECT",
    "HTTP_X_COPY_FROM",
    "HTTP_X_COPY_FROM_ACCOUNT",
)


def object_target(req):
    """The Target of an object request, None for anything else (passed through)."""
    try:
        version, account, container, obj = split_path(request_path(req), 1, 4, True)
    except HTTPError:
        return None
    if version not in API_VERSIONS or not account or not container or not obj:
        return None
    return sub.Target(version, account, container, obj)


class StaticLargeObject:
    """WSGI filter: manifests in, large objects out (see the module docstring)."""

    def __init__(self, app, conf=None, logger=None):
        conf = conf or {}
        self.app = app
        self.logger = logger or logging.getLogger("haneul.proxy.slo")
        settings = {
            name: config_int(conf.get(name, default), name, minimum=1)
            for name, default in DEFAULTS.items()
        }
        self.max_manifest_segments = settings["max_manifest_segments"]
        self.max_manifest_size = settings["max_manifest_size"]
        self.concurrency = settings["concurrency"]
        self.delete_concurrency = settings["delete_concurrency"]
        # A stored manifest holds more per segment than the client sent.
        self.max_stored_manifest = 4 * self.max_manifest_size

    def __call__(self, environ, start_response):
        req = Request(environ)
        target = object_target(req)
        if target is None:
            return self.app(environ, start_response)
        try:
            resp = self.handle(req, target)
        except HTTPError as err:
            resp = err.response(req)
        return resp(environ, start_response)

    def handle(self, req, target):
        method = req.method
        mode = req.GET.get("multipart-manifest")
        if method == "PUT":
            if mode == "put":
                return self.put_manifest(req, target)
            if manifest.SLO_HEADER in req.headers:
                raise HTTPError(400, RESERVED)
            if req.headers.get("X-Copy-From"):
                return copy.handle_copy(self, req, target, mode)
        elif method == "POST":
            if manifest.SLO_HEADER in req.headers:
                raise HTTPError(400, RESERVED)
        elif method == "COPY":
            return copy.handle_copy(self, req, target, mode)
        elif method in ("GET", "HEAD"):
            return self.get_or_head(req, target, mode)
        elif method == "DELETE" and mode == "delete":
            return self.delete_manifest(req, target)
        return sub.call(self.app, req.environ)

    # -- GET and HEAD --------------------------------------------------------------------

    def get_or_head(self, req, target, mode):
        resp = sub.call(self.app, req.environ)
        if mode == "get":
            return self.manifest_itself(req, resp)
        if manifest.is_slo(resp.headers) and (
            200 <= resp.status_int < 300 or resp.status_int == 304
        ):
            return self.large_object(req, target, resp)
        asked = any(key in req.environ for key in CONDITIONAL_ENV)
        if asked and resp.status_int in (304, 412, 416):
            # The node judged the manifest's own ETag or length: ask again plainly.
            probe = self.fetch(req.environ, "HEAD", target.path)
            if manifest.is_slo(probe.headers) and 200 <= probe.status_int < 300:
                sub.close_body(resp)
                return self.large_object(req, target, probe, has_body=False)
        return resp

    def fetch(self, environ, method, path, headers=None):
        """``method path`` below this filter, as the client, without its conditions."""
        return sub.call(self.app, sub.make_environ(environ, method, path, headers=headers))

    def large_object(self, req, target, resp, has_body=True):
        """The client's answer for a manifest whose (first) answer is ``resp`` (whose
        body is the whole manifest only for a plain 200 to a GET)."""
        headers = resp.headers
        needs_entries = req.method == "GET" or "part-number" in req.GET
        if (
            not needs_entries
            and headers.get(manifest.SYSMETA_SIZE)
            and (headers.get(manifest.SYSMETA_ETAG))
        ):
            sub.close_body(resp)
            return respond(None, req, headers, None)
        if not has_body or req.method != "GET" or resp.status_int != 200:
            sub.close_body(resp)
            resp = self.fetch(req.environ, "GET", target.path)
            if resp.status_int != 200 or not manifest.is_slo(resp.headers):
                return resp
        entries = self.load_entries(resp, target.path)
        reader = SegmentReader(
            self.app,
            req.environ,
            target.version,
            target.account,
            entries,
            target.path,
            self.max_stored_manifest,
        )
        return respond(reader, req, resp.headers, entries)

    def load_entries(self, resp, path):
        body = sub.read_body(resp, self.max_stored_manifest)
        try:
            if body is None:
                raise ValueError("manifest too large")
            return manifest.parse_manifest(body)
        except (TypeError, ValueError) as err:
            self.logger.error("cannot load the manifest of %s: %s", path, err)
            raise HTTPError(500, "Unable to load SLO manifest") from None

    def manifest_itself(self, req, resp):
        """``?multipart-manifest=get``: the stored JSON (``format=raw``: as PUT takes it)."""
        if not manifest.is_slo(resp.headers) or not 200 <= resp.status_int < 300:
            return resp
        resp.headers["Content-Type"] = "application/json; charset=utf-8"
        if req.GET.get("format") != "raw" or req.method != "GET":
            return resp
        entries = self.load_entries(resp, req.path_info)
        body = json.dumps(manifest.raw_manifest(entries)).encode("utf-8")
        for key in ("ETag", "Content-Range"):
            resp.headers.pop(key, None)
        resp.status = status_line(200)
        resp.app_iter = [body]
        resp.content_length = len(body)
        return resp

    # -- PUT of a manifest -----------------------------------------------------------------

    def put_manifest(self, req, target):
        raw = self.read_manifest_body(req)
        try:
            specs = manifest.parse_input(raw, self.max_manifest_segments)
        except manifest.ManifestError as err:
            raise HTTPError(err.status, err.message) from None
        entries, problems = self.check_segments(req, target, specs)
        if problems:
            return problems_response(req, problems)
        slo_etag = manifest.slo_etag(entries)
        total = manifest.total_size(entries)
        given = req.headers.get("ETag")
        if given is not None and given.strip().strip('"').lower() != slo_etag:
            raise HTTPError(422, "the ETag given does not match the large object's ETag")
        body = json.dumps(entries).encode("utf-8")
        env = self.manifest_put_environ(req, target, body, slo_etag, total)
        resp = sub.call(self.app, env)
        if 200 <= resp.status_int < 300:
            resp.headers["ETag"] = f'"{slo_etag}"'
        return resp

    def read_manifest_body(self, req):
        length = req.content_length
        chunked = req.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if length is None and not chunked:
            raise HTTPError(411, "a manifest PUT needs a Content-Length or a chunked body")
        if length is not None and length > self.max_manifest_size:
            raise HTTPError(413, f"Manifest File > {self.max_manifest_size} bytes")
        stream = req.environ["wsgi.input"]
        parts, size = [], 0
        while True:
            want = 65536 if length is None else min(65536, length - size)
            if want <= 0:
                break
            try:
                chunk = stream.read(want)
            except (OSError, ValueError) as err:
                raise HTTPError(499, f"client disconnected: {err}") from None
            if not chunk:
                if length is not None:
                    raise HTTPError(499, "client disconnected before sending the whole body")
                break
            size += len(chunk)
            if size > self.max_manifest_size:
                raise HTTPError(413, f"Manifest File > {self.max_manifest_size} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def check_segments(self, req, target, specs):
        """HEAD every segment (a few at once): ``(entries, problems)``."""
        answers = [None] * len(specs)

        def head(index, spec):
            path = sub.object_path(target.version, target.account, spec["container"], spec["obj"])
            resp = self.fetch(req.environ, "HEAD", path)
            sub.close_body(resp)
            answers[index] = (resp.status_int, resp.headers)

        pile = Pile(self.concurrency)
        for index, spec in enumerate(specs):
            pile.spawn(head, index, spec)
        for result in pile:
            if isinstance(result, Exception):
                self.logger.error("segment HEAD failed: %r", result)
        entries, problems = [], []
        for spec, answer in zip(specs, answers, strict=True):
            status, headers = answer if answer is not None else (503, {})
            entry, problem = manifest.segment_entry(spec, status, headers)
            if problem is not None:
                problems.append((spec["path"], problem))
            else:
                entries.append(entry)
        return entries, problems

    def manifest_put_environ(self, req, target, body, slo_etag, total):
        """The client's PUT, now carrying the stored manifest and what marks it."""
        env = dict(req.environ)
        for key in PUT_DROPPED_ENV:
            env.pop(key, None)
        content_type = content_type_for(req.headers, target.obj)
        content_type = manifest.strip_swift_bytes(content_type)
        body_md5 = _md5(body)
        env.update(
            {
                "QUERY_STRING": "",
                "wsgi.input": io.BytesIO(body),
                "CONTENT_LENGTH": str(len(body)),
                "CONTENT_TYPE": f"{content_type};swift_bytes={total}",
                "HTTP_ETAG": body_md5,
                "HTTP_X_STATIC_LARGE_OBJECT": "True",
                "HTTP_X_OBJECT_SYSMETA_SLO_ETAG": slo_etag,
                "HTTP_X_OBJECT_SYSMETA_SLO_SIZE": str(total),
                "HTTP_X_OBJECT_SYSMETA_CONTAINER_UPDATE_OVERRIDE_ETAG": manifest.override_etag(
                    body_md5,
                    slo_etag,
                    req.headers.get(manifest.OVERRIDE_ETAG),
                ),
                sub.SOURCE_KEY: "SLO",
            }
        )
        return env

    # -- DELETE of a manifest and its segments ---------------------------------------------

    def delete_manifest(self, req, target):
        result = {"deleted": 0, "not_found": 0, "errors": [], "status": 200, "body": ""}
        resp = self.fetch(req.environ, "GET", target.path)
        if resp.status_int == 404:
            sub.close_body(resp)
            result["not_found"] += 1
            return delete_response(req, result)
        if not 200 <= resp.status_int < 300:
            sub.close_body(resp)
            result["errors"].append([target.path, resp.status])
            result["status"] = resp.status_int
            return delete_response(req, result)
        if not manifest.is_slo(resp.headers):
            sub.close_body(resp)
            result["errors"].append([target.path, "Not an SLO manifest"])
            result["status"] = 400
            return delete_response(req, result)
        try:
            names = self.segments_to_delete(req, target, self.load_entries(resp, target.path))
        except HTTPError as err:
            result["errors"].append([target.path, err.explanation])
            result["status"] = err.status
            return delete_response(req, result)
        self.delete_all(req, target, names, result)
        if not result["errors"]:
            self.delete_all(req, target, [f"/{target.container}/{target.obj}"], result)
        if result["errors"]:
            result["status"] = 400 if result["status"] < 400 else result["status"]
        return delete_response(req, result)

    def segments_to_delete(self, req, target, entries, depth=1):
        """Segment names (``/c/o``) in deletion order: a nested manifest after its own."""
        names = []
        for entry in entries:
            if entry.get("sub_slo"):
                if depth >= 10:
                    raise HTTPError(400, "manifests nested too deep")
                container, obj = manifest.split_segment_path(entry["name"])
                path = sub.object_path(target.version, target.account, container, obj)
                resp = self.fetch(req.environ, "GET", path)
                if resp.status_int == 200 and manifest.is_slo(resp.headers):
                    nested = self.load_entries(resp, path)
                    names.extend(self.segments_to_delete(req, target, nested, depth + 1))
                else:
                    sub.close_body(resp)
            names.append(entry["name"])
        seen = set()
        return [n for n in names if not (n in seen or seen.add(n))]

    def delete_all(self, req, target, names, result):
        def delete(name):
            container, obj = manifest.split_segment_path(name)
            path = sub.object_path(target.version, target.account, container, obj)
            resp = self.fetch(req.environ, "DELETE", path)
            sub.close_body(resp)
            return name, resp.status_int, resp.status

        pile = Pile(self.delete_concurrency)
        for name in names:
            pile.spawn(delete, name)
        for outcome in pile:
            if isinstance(outcome, Exception):
                self.logger.error("segment DELETE failed: %r", outcome)
                result["errors"].append(["?", "500 Internal Error"])
                continue
            name, status, status_text = outcome
            if 200 <= status < 300:
                result["deleted"] += 1
            elif status == 404:
                result["not_found"] += 1
            else:
                result["errors"].append([name, status_text])


# -- answers ---------------------------------------------------------------------------------


def wants_json(req):
    accept = req.headers.get("Accept", "")
    return "application/json" in accept


def problems_response(req, problems):
    """400 naming each bad segment, as text (``path, problem`` lines) or JSON."""
    if wants_json(req):
        body = json.dumps({"Errors": [list(p) for p in problems]}).encode("utf-8")
        content_type = "application/json"
    else:
        lines = ["Errors:"] + [f"{path}, {problem}" for path, problem in problems]
        body = ("\n".join(lines) + "\n").encode("utf-8")
        content_type = "text/plain"
    resp = Response(status=status_line(400), headerlist=[])
    resp.content_type = content_type
    resp.body = body
    return resp


def delete_response(req, result):
    """A bulk-delete style answer: always 200, the outcome in the body."""
    status = status_line(result["status"])
    if wants_json(req):
        doc = {
            "Number Deleted": result["deleted"],
            "Number Not Found": result["not_found"],
            "Response Body": result["body"],
            "Response Status": status,
            "Errors": result["errors"],
        }
        body = json.dumps(doc).encode("utf-8")
        content_type = "application/json"
    else:
        lines = [
            f"Number Deleted: {result['deleted']}",
            f"Number Not Found: {result['not_found']}",
            f"Response Body: {result['body']}",
            f"Response Status: {status}",
            "Errors:",
        ] + [f"{name}, {why}" for name, why in result["errors"]]
        body = ("\n".join(lines) + "\n").encode("utf-8")
        content_type = "text/plain"
    resp = Response(status=status_line(200), headerlist=[])
    resp.content_type = content_type
    resp.body = body
    return resp


def _md5(data):
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def filter_factory(global_conf, local_conf):
    """``[filter:slo]``: options ``max_manifest_segments``, ``max_manifest_size``,
    ``concurrency``, ``delete_concurrency``."""
    check_options(local_conf, OPTIONS)
    conf = filter_conf(global_conf, local_conf)
    probe = StaticLargeObject(None, conf)  # check the options now, not at first request
    register_capability(
        "slo",
        max_manifest_segments=probe.max_manifest_segments,
        max_manifest_size=probe.max_manifest_size,
        min_segment_size=1,
    )

    def make_filter(app):
        return StaticLargeObject(app, conf)

    return make_filter
