"""The slo filter over an in-memory Swift: manifest PUT checks, large-object GET/HEAD
(ranges, conditions, part-number, nested manifests), manifest GET, delete and copy."""

import hashlib
import io
import json

import pytest
from webob import Request, Response

from common.byteranges import parse_range_header, ranges_for_length
from proxy.middleware import slo
from proxy.middleware.slo_get import SegmentError

DATE = "Tue, 02 Jan 2024 03:04:05 GMT"


def md5(data):
    return hashlib.md5(data).hexdigest()


class FakeSwift:
    """Objects in a dict, served like the proxy app does (single ranges only)."""

    def __init__(self):
        self.objects = {}  # path -> (headers, body)
        self.calls = []  # (method, path, Range header)

    def put(self, path, body, **headers):
        headers = {k.replace("_", "-"): v for k, v in headers.items()}
        headers.setdefault("Content-Type", "application/octet-stream")
        self.objects[path] = (headers, body)
        return md5(body)

    def __call__(self, environ, start_response):
        req = Request(environ)
        path = req.path_info.encode("latin-1").decode("utf-8")
        self.calls.append((req.method, path, req.headers.get("Range")))
        return self.handle(req, path)(environ, start_response)

    def handle(self, req, path):
        if req.method == "PUT":
            body = req.body_file.read()
            if req.headers.get("ETag") and req.headers["ETag"] != md5(body):
                return Response(status=422)
            headers = {
                k: v
                for k, v in req.headers.items()
                if k.lower().startswith(("x-object-", "x-static-", "content-type", "x-delete"))
            }
            self.objects[path] = (headers, body)
            return Response(status=201, headers={"ETag": md5(body)})
        found = self.objects.get(path)
        if req.method == "DELETE":
            if found is None:
                return Response(status=404)
            del self.objects[path]
            return Response(status=204)
        if found is None:
            return Response(status=404, body=b"Not Found")
        headers, body = found
        etag = md5(body)
        base = dict(headers, ETag=etag, **{"Last-Modified": DATE})
        if req.headers.get("If-Match") not in (None, etag, f'"{etag}"'):
            return Response(status=412, headers={"ETag": etag})
        if req.headers.get("If-None-Match") in (etag, f'"{etag}"'):
            return Response(status=304, headers=base)
        spec = parse_range_header(req.headers.get("Range"))
        resp = Response(status=200, headers=base)
        if spec:
            ranges = ranges_for_length(spec, len(body))
            if not ranges:
                return Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
            start, stop = ranges[0]
            resp.status = 206
            resp.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(body)}"
            body = body[start:stop]
        resp.app_iter = [body[i : i + 7] for i in range(0, len(body), 7)] or [b""]
        resp.content_length = len(body)
        if req.method == "HEAD":
            resp.app_iter = []
            resp.content_length = len(body)
        return resp

    def segment_gets(self):
        return [(p, r) for m, p, r in self.calls if m == "GET" and "/segs/" in p]


@pytest.fixture
def swift():
    return FakeSwift()


@pytest.fixture
def app(swift):
    return slo.filter_factory({}, {})(swift)


SEGMENTS = [b"a" * 10, b"b" * 10, b"c" * 5]
WHOLE = b"".join(SEGMENTS)


def put_segments(swift, segments=SEGMENTS):
    items = []
    for i, data in enumerate(segments):
        path = f"/segs/s{i}"
        etag = swift.put(f"/v1/AUTH_t{path}", data)
        items.append({"path": path, "etag": etag, "size_bytes": len(data)})
    return items


def req(path, method="GET", body=None, headers=None, query=""):
    r = Request.blank(path + (f"?{query}" if query else ""), method=method, headers=headers or {})
    if body is not None:
        r.body = body
    return r


def put_manifest(app, items, name="/v1/AUTH_t/c/big", headers=None):
    body = json.dumps(items).encode()
    return req(name, "PUT", body, headers, "multipart-manifest=put").get_response(app)


def slo_etag_of(items):
    return md5("".join(i["etag"] for i in items).encode())


# -- PUT ---------------------------------------------------------------------------------


def test_manifest_put_stores_manifest_with_total_size_and_answers_slo_etag(app, swift):
    items = put_segments(swift)
    resp = put_manifest(app, items, headers={"Content-Type": "text/x-big", "X-Object-Meta-K": "v"})
    assert resp.status_int == 201
    assert resp.headers["ETag"] == f'"{slo_etag_of(items)}"'
    headers, body = swift.objects["/v1/AUTH_t/c/big"]
    assert headers["X-Static-Large-Object"] == "True"
    assert headers["Content-Type"] == "text/x-big;swift_bytes=25"
    assert headers["X-Object-Sysmeta-Slo-Size"] == "25"
    assert headers["X-Object-Sysmeta-Slo-Etag"] == slo_etag_of(items)
    assert headers["X-Object-Meta-K"] == "v"
    stored = json.loads(body)
    assert [e["name"] for e in stored] == ["/segs/s0", "/segs/s1", "/segs/s2"]
    assert [e["bytes"] for e in stored] == [10, 10, 5]


def test_manifest_put_without_etag_and_size_accepts_what_the_segments_are(app, swift):
    items = put_segments(swift)
    loose = [{"path": i["path"]} for i in items]
    loose[1]["etag"] = None
    assert put_manifest(app, loose).status_int == 201


def test_manifest_put_lists_every_bad_segment(app, swift):
    items = put_segments(swift)
    items[0]["etag"] = "0" * 32
    items[1]["size_bytes"] = 11
    items.append({"path": "/segs/missing", "etag": None, "size_bytes": None})
    resp = put_manifest(app, items)
    assert resp.status_int == 400
    text = resp.body.decode()
    assert "/segs/s0, Etag Mismatch" in text
    assert "/segs/s1, Size Mismatch" in text
    assert "/segs/missing, 404 Not Found" in text
    assert "/v1/AUTH_t/c/big" not in swift.objects


def test_manifest_put_problems_as_json_when_asked(app, swift):
    items = [{"path": "/segs/nope"}]
    resp = put_manifest(app, items, headers={"Accept": "application/json"})
    assert resp.status_int == 400
    assert resp.json == {"Errors": [["/segs/nope", "404 Not Found"]]}


def test_zero_byte_segments_are_refused(app, swift):
    swift.put("/v1/AUTH_t/segs/empty", b"")
    resp = put_manifest(app, [{"path": "/segs/empty"}])
    assert resp.status_int == 400
    assert b"at least 1 byte" in resp.body


@pytest.mark.parametrize(
    "body, status",
    [
        (b"not json", 400),
        (b"{}", 400),
        (b"[]", 400),
        (b'[{"path": "nocontainer"}]', 400),
        (b'[{"path": "/c/o", "bogus": 1}]', 400),
        (b'[{"path": "/c/o", "size_bytes": "x"}]', 400),
        (b'[{"path": "/c/o", "range": "1-2,4-5"}]', 400),
    ],
)
def test_malformed_manifests_are_refused(app, body, status):
    resp = req("/v1/AUTH_t/c/big", "PUT", body, query="multipart-manifest=put").get_response(app)
    assert resp.status_int == status


def test_too_many_segments_is_413(swift):
    app = slo.filter_factory({}, {"max_manifest_segments": "2"})(swift)
    items = put_segments(swift)
    assert put_manifest(app, items).status_int == 413


def test_client_etag_must_match_the_large_object(app, swift):
    items = put_segments(swift)
    assert put_manifest(app, items, headers={"ETag": "0" * 32}).status_int == 422
    good = put_manifest(app, items, headers={"ETag": f'"{slo_etag_of(items)}"'})
    assert good.status_int == 201


def test_reserved_header_is_refused_on_put_and_post(app):
    for method in ("PUT", "POST"):
        resp = req("/v1/AUTH_t/c/o", method, b"x", {"X-Static-Large-Object": "true"}).get_response(
            app
        )
        assert resp.status_int == 400


# -- GET and HEAD ------------------------------------------------------------------------


@pytest.fixture
def big(app, swift):
    items = put_segments(swift)
    assert put_manifest(app, items).status_int == 201
    swift.calls.clear()
    return items


def test_get_streams_the_segments_in_order(app, swift, big):
    resp = req("/v1/AUTH_t/c/big").get_response(app)
    assert resp.status_int == 200
    assert resp.body == WHOLE
    assert resp.content_length == 25
    assert resp.headers["ETag"] == f'"{slo_etag_of(big)}"'
    assert resp.headers["X-Static-Large-Object"] == "True"
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert [r for _p, r in swift.segment_gets()] == [None, None, None]


def test_head_answers_size_and_etag_without_touching_segments(app, swift, big):
    resp = req("/v1/AUTH_t/c/big", "HEAD").get_response(app)
    assert resp.status_int == 200
    assert resp.content_length == 25
    assert resp.headers["ETag"] == f'"{slo_etag_of(big)}"'
    assert [c[0] for c in swift.calls] == ["HEAD"]


def test_range_across_a_boundary_reads_only_the_segments_it_covers(app, swift, big):
    resp = req("/v1/AUTH_t/c/big", headers={"Range": "bytes=8-12"}).get_response(app)
    assert resp.status_int == 206
    assert resp.body == WHOLE[8:13]
    assert resp.headers["Content-Range"] == "bytes 8-12/25"
    assert swift.segment_gets() == [
        ("/v1/AUTH_t/segs/s0", "bytes=8-9"),
        ("/v1/AUTH_t/segs/s1", "bytes=0-2"),
    ]


def test_suffix_range(app, swift, big):
    resp = req("/v1/AUTH_t/c/big", headers={"Range": "bytes=-7"}).get_response(app)
    assert resp.status_int == 206
    assert resp.body == WHOLE[-7:]
    assert swift.segment_gets() == [
        ("/v1/AUTH_t/segs/s1", "bytes=8-9"),
        ("/v1/AUTH_t/segs/s2", None),
    ]


def test_multi_range_is_multipart_byteranges(app, big):
    resp = req("/v1/AUTH_t/c/big", headers={"Range": "bytes=0-1,9-11,-2"}).get_response(app)
    assert resp.status_int == 206
    assert resp.content_type == "multipart/byteranges"
    body = resp.body
    assert len(body) == resp.content_length
    for start, stop in ((0, 2), (9, 12), (23, 25)):
        assert f"Content-Range: bytes {start}-{stop - 1}/25".encode() in body
        assert WHOLE[start:stop] in body


def test_unsatisfiable_range_is_416(app, big):
    resp = req("/v1/AUTH_t/c/big", headers={"Range": "bytes=25-"}).get_response(app)
    assert resp.status_int == 416
    assert resp.headers["Content-Range"] == "bytes */25"


def test_conditions_use_the_large_object_etag(app, big):
    etag = slo_etag_of(big)
    assert (
        req("/v1/AUTH_t/c/big", headers={"If-None-Match": f'"{etag}"'}).get_response(app).status_int
        == 304
    )
    assert (
        req("/v1/AUTH_t/c/big", headers={"If-Match": '"nope"'}).get_response(app).status_int == 412
    )
    ok = req("/v1/AUTH_t/c/big", headers={"If-Match": f'"{etag}"'}).get_response(app)
    assert ok.status_int == 200 and ok.body == WHOLE
    head = req("/v1/AUTH_t/c/big", "HEAD", headers={"If-Match": f'"{etag}"'}).get_response(app)
    assert head.status_int == 200 and head.content_length == 25


def test_if_range_with_another_etag_sends_everything(app, big):
    resp = req(
        "/v1/AUTH_t/c/big", headers={"Range": "bytes=0-1", "If-Range": '"other"'}
    ).get_response(app)
    assert resp.status_int == 200 and resp.body == WHOLE


def test_part_number_serves_one_segment(app, big):
    resp = req("/v1/AUTH_t/c/big", query="part-number=2").get_response(app)
    assert resp.status_int == 206
    assert resp.body == SEGMENTS[1]
    assert resp.headers["Content-Range"] == "bytes 10-19/25"
    assert resp.headers["X-Parts-Count"] == "3"
    head = req("/v1/AUTH_t/c/big", "HEAD", query="part-number=3").get_response(app)
    assert head.content_length == 5
    assert req("/v1/AUTH_t/c/big", query="part-number=4").get_response(app).status_int == 416


def test_manifest_get_returns_the_json(app, big):
    resp = req("/v1/AUTH_t/c/big", query="multipart-manifest=get").get_response(app)
    assert resp.status_int == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert [e["hash"] for e in resp.json] == [i["etag"] for i in big]
    raw = req("/v1/AUTH_t/c/big", query="multipart-manifest=get&format=raw").get_response(app)
    assert raw.json == big


def test_missing_first_segment_is_409(app, swift, big):
    del swift.objects["/v1/AUTH_t/segs/s0"]
    resp = req("/v1/AUTH_t/c/big").get_response(app)
    assert resp.status_int == 409


def test_changed_segment_mid_stream_cuts_the_body(app, swift, big):
    swift.put("/v1/AUTH_t/segs/s1", b"B" * 10)
    resp = req("/v1/AUTH_t/c/big").get_response(app)
    assert resp.status_int == 200
    with pytest.raises(SegmentError):
        b"".join(resp.app_iter)


def test_plain_objects_pass_through(app, swift):
    swift.put("/v1/AUTH_t/c/plain", b"hello")
    resp = req("/v1/AUTH_t/c/plain", headers={"Range": "bytes=1-2"}).get_response(app)
    assert resp.status_int == 206 and resp.body == b"el"
    assert req("/v1/AUTH_t/c/none").get_response(app).status_int == 404


def test_segment_ranges_in_the_manifest(app, swift):
    items = put_segments(swift)
    items[0]["range"] = "2-4"
    items[2]["range"] = "-2"
    assert put_manifest(app, items).status_int == 201
    resp = req("/v1/AUTH_t/c/big").get_response(app)
    expected = SEGMENTS[0][2:5] + SEGMENTS[1] + SEGMENTS[2][-2:]
    assert resp.body == expected
    assert resp.content_length == len(expected)
    part = req("/v1/AUTH_t/c/big", headers={"Range": "bytes=1-3"}).get_response(app)
    assert part.body == expected[1:4]


def test_nested_manifests(app, swift):
    items = put_segments(swift)
    assert put_manifest(app, items[:2], name="/v1/AUTH_t/c/inner").status_int == 201
    inner = req("/v1/AUTH_t/c/inner", "HEAD").get_response(app)
    outer_items = [
        {"path": "/c/inner", "etag": inner.headers["ETag"].strip('"'), "size_bytes": 20},
        items[2],
    ]
    assert put_manifest(app, outer_items, name="/v1/AUTH_t/c/outer").status_int == 201
    resp = req("/v1/AUTH_t/c/outer").get_response(app)
    assert resp.body == WHOLE
    part = req("/v1/AUTH_t/c/outer", headers={"Range": "bytes=15-21"}).get_response(app)
    assert part.body == WHOLE[15:22]


# -- DELETE and copy ---------------------------------------------------------------------


def test_delete_with_multipart_manifest_removes_segments_and_manifest(app, swift, big):
    resp = req("/v1/AUTH_t/c/big", "DELETE", query="multipart-manifest=delete").get_response(app)
    assert resp.status_int == 200
    assert "Number Deleted: 4" in resp.text
    assert "Response Status: 200 OK" in resp.text
    assert not [p for p in swift.objects if p.startswith("/v1/AUTH_t/segs/")]
    assert "/v1/AUTH_t/c/big" not in swift.objects


def test_delete_json_and_not_a_manifest(app, swift):
    swift.put("/v1/AUTH_t/c/plain", b"x")
    resp = req(
        "/v1/AUTH_t/c/plain",
        "DELETE",
        headers={"Accept": "application/json"},
        query="multipart-manifest=delete",
    ).get_response(app)
    assert resp.json["Response Status"] == "400 Bad Request"
    assert resp.json["Errors"] == [["/v1/AUTH_t/c/plain", "Not an SLO manifest"]]
    assert "/v1/AUTH_t/c/plain" in swift.objects


def test_plain_delete_keeps_segments(app, swift, big):
    assert req("/v1/AUTH_t/c/big", "DELETE").get_response(app).status_int == 204
    assert "/v1/AUTH_t/segs/s0" in swift.objects


def test_copy_of_a_large_object_is_a_plain_object_with_its_bytes(app, swift, big):
    resp = req(
        "/v1/AUTH_t/c/copy", "PUT", b"", {"X-Copy-From": "c/big", "X-Object-Meta-New": "1"}
    ).get_response(app)
    assert resp.status_int == 201
    assert resp.headers["X-Copied-From"] == "c/big"
    headers, body = swift.objects["/v1/AUTH_t/c/copy"]
    assert body == WHOLE
    assert "X-Static-Large-Object" not in headers
    assert not any(k.lower().startswith("x-object-sysmeta-slo") for k in headers)
    assert headers["X-Object-Meta-New"] == "1"
    assert headers["Content-Type"] == "application/octet-stream"


def test_copy_with_manifest_get_copies_the_manifest(app, swift, big):
    resp = req(
        "/v1/AUTH_t/c/big",
        "COPY",
        headers={"Destination": "c/twin"},
        query="multipart-manifest=get",
    ).get_response(app)
    # The fake below does not implement COPY itself; what reaches it is what matters.
    assert swift.calls[-1][0] == "COPY"
    assert resp.status_int in (201, 200)


def test_filter_factory_refuses_unknown_options():
    from common.config import ConfigError

    with pytest.raises(ConfigError):
        slo.filter_factory({}, {"max_manifest_segmnets": "5"})


def test_body_is_read_in_bounded_chunks(app, swift):
    data = bytes(range(256)) * 40
    swift.put("/v1/AUTH_t/segs/big0", data)
    assert put_manifest(app, [{"path": "/segs/big0"}, {"path": "/segs/big0"}]).status_int == 201
    resp = req("/v1/AUTH_t/c/big").get_response(app)
    chunks = list(resp.app_iter)
    assert b"".join(chunks) == data + data
    assert max(len(c) for c in chunks) <= 7  # the fake's chunk size: nothing coalesced


def test_wsgi_input_manifest_put_chunked(app, swift):
    items = put_segments(swift)
    body = json.dumps(items).encode()
    r = Request.blank("/v1/AUTH_t/c/big?multipart-manifest=put", method="PUT")
    r.environ["wsgi.input"] = io.BytesIO(body)
    r.environ.pop("CONTENT_LENGTH", None)
    r.headers["Transfer-Encoding"] = "chunked"
    assert r.get_response(app).status_int == 201


def test_a_manifest_that_lost_its_flag_is_still_a_large_object(app, swift, big):
    headers, body = swift.objects["/v1/AUTH_t/c/big"]
    del headers["X-Static-Large-Object"]  # what a POST naming other headers leaves
    resp = req("/v1/AUTH_t/c/big").get_response(app)
    assert resp.body == WHOLE
    assert resp.headers["X-Static-Large-Object"] == "True"
