import pytest
from webob import Request, Response

from common.constraints import check_listing_limit, check_metadata, check_name
from common.devices import check_partition, device_path
from common.http import HTTPError, WSGIApp, request_timestamp, split_path, wsgi_path_to_str


def test_split_path_object_keeps_slashes():
    assert split_path("/d/1/a/c/o/p/q", 3, 5, True) == ["d", "1", "a", "c", "o/p/q"]
    assert split_path("/d/1/a", 3, 5, True) == ["d", "1", "a", None, None]


@pytest.mark.parametrize("path", ["d/1/a", "/d//a", "/d/1", "//1/a"])
def test_split_path_rejects_bad_paths(path):
    with pytest.raises(HTTPError) as err:
        split_path(path, 3, 5, True)
    assert err.value.status == 400


def test_split_path_fixed_segments():
    assert split_path("/v1/a/", 2) == ["v1", "a"]
    with pytest.raises(HTTPError):
        split_path("/v1/a/b", 2)


def test_wsgi_path_decodes_utf8_once():
    raw = "하늘".encode().decode("latin-1")
    assert wsgi_path_to_str("/" + raw) == "/하늘"
    with pytest.raises(HTTPError):
        wsgi_path_to_str("/\xff")


def test_names_checked():
    check_name("object", "a" * 1024)
    for kind, name in [
        ("object", "a" * 1025),
        ("container", "c" * 257),
        ("account", ""),
        ("object", "x\x00y"),
        ("container", "a/b"),
    ]:
        with pytest.raises(HTTPError) as err:
            check_name(kind, name)
        assert err.value.status == 400


def test_metadata_limits():
    check_metadata({"X-Object-Meta-" + "k" * 128: "v" * 256}, "object")
    too_many = {f"X-Object-Meta-K{i}": "v" for i in range(91)}
    bad = [
        {"X-Object-Meta-" + "k" * 129: "v"},
        {"X-Object-Meta-K": "v" * 257},
        too_many,
        {f"X-Object-Meta-K{i:02d}": "v" * 250 for i in range(17)},
        {"X-Object-Meta-": "v"},
    ]
    for headers in bad:
        with pytest.raises(HTTPError) as err:
            check_metadata(headers, "object")
        assert err.value.status == 400
    # other kinds' prefixes and removals are not counted
    check_metadata({"X-Container-Meta-K": "v" * 999, "X-Object-Meta-Gone": ""}, "object")


def test_listing_limit():
    assert check_listing_limit(None) == 10000
    assert check_listing_limit("5") == 5
    with pytest.raises(HTTPError) as err:
        check_listing_limit("10001")
    assert err.value.status == 412
    with pytest.raises(HTTPError) as err:
        check_listing_limit("x")
    assert err.value.status == 400


def test_device_paths(tmp_path):
    (tmp_path / "d1").mkdir()
    assert device_path(str(tmp_path), "d1") == str(tmp_path / "d1")
    for name, status in [("..", 400), ("a/b", 400), ("", 400), ("d9", 507)]:
        with pytest.raises(HTTPError) as err:
            device_path(str(tmp_path), name)
        assert err.value.status == status
    with pytest.raises(HTTPError) as err:
        device_path(str(tmp_path), "d1", mount_check=True)
    assert err.value.status == 507
    assert check_partition("12") == 12
    for bad in ("-1", "9" * 5000, "١"):
        with pytest.raises(HTTPError):
            check_partition(bad)


def test_request_timestamp():
    req = Request.blank("/", headers={"X-Timestamp": "12.5"})
    assert request_timestamp(req).normal == "0000000012.50000"
    with pytest.raises(HTTPError):
        request_timestamp(Request.blank("/", headers={"X-Timestamp": "soon"}))
    with pytest.raises(HTTPError):
        request_timestamp(Request.blank("/"))


class _App(WSGIApp):
    def GET(self, req):
        if req.path_info == "/boom":
            raise RuntimeError("bug")
        if req.path_info == "/bad":
            raise HTTPError(400, "bad thing")
        return Response(text="ok")


def test_wsgi_app_maps_errors_and_sets_trans_id():
    app = _App()
    resp = Request.blank("/").get_response(app)
    assert resp.status_int == 200 and resp.headers["X-Trans-Id"].startswith("tx")
    resp = Request.blank("/bad").get_response(app)
    assert resp.status_int == 400 and "bad thing" in resp.text
    resp = Request.blank("/boom", headers={"X-Trans-Id": "tx123"}).get_response(app)
    assert resp.status_int == 500 and "tx123" in resp.text
    assert resp.headers["X-Trans-Id"] == "tx123"
    resp = Request.blank("/", method="PATCH").get_response(app)
    assert resp.status_int == 405 and "GET" in resp.headers["Allow"]


def test_header_items_names_headers_as_webob_does():
    from webob import Request

    from common.http import header_items

    req = Request.blank(
        "/v1/a/c/o",
        headers={"X-Object-Meta-Color": "blue", "content-type": "text/x", "X-Under_Score": "1"},
        environ={"CONTENT_LENGTH": "3", "SERVER_NAME": "h", "wsgi.url_scheme": "http"},
    )
    assert sorted(header_items(req.environ)) == sorted(req.headers.items())
