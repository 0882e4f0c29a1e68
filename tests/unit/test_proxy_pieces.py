"""The proxy's small parts: error limiting, node order, quorum, info cache, headers."""

import io

import pytest
from webob import Request

from common.http import HTTPError
from proxy.controllers.info import InfoCache, headers_to_info
from proxy.controllers.nodes import NodeIter, parse_request_node_count
from proxy.controllers.object_headers import (
    check_if_none_match,
    content_type_for,
    copied_headers,
    delete_at,
    guess_content_type,
    split_copy_path,
    update_target_headers,
)
from proxy.controllers.quorum import best_status, delete_status, quorum_size
from proxy.controllers.streaming import client_body, request_content_length
from proxy.error_limiter import ErrorLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def node(n):
    return {"id": n, "ip": "10.0.0.1", "port": 6200 + n, "device": f"d{n}"}


# -- error limiter ---------------------------------------------------------------------


def test_node_is_limited_after_limit_errors_within_interval():
    clock = Clock()
    limiter = ErrorLimiter(interval=60, limit=3, clock=clock)
    for _ in range(2):
        limiter.error(node(1))
    assert not limiter.is_limited(node(1))
    assert limiter.error(node(1)) is True
    assert limiter.is_limited(node(1))
    assert not limiter.is_limited(node(2))


def test_limited_node_comes_back_after_interval():
    clock = Clock()
    limiter = ErrorLimiter(interval=60, limit=1, clock=clock)
    limiter.error(node(1))
    assert limiter.is_limited(node(1))
    clock.now += 61
    assert not limiter.is_limited(node(1))
    assert limiter.errors(node(1)) == 0


def test_errors_spread_over_more_than_the_interval_do_not_add_up():
    clock = Clock()
    limiter = ErrorLimiter(interval=10, limit=2, clock=clock)
    limiter.error(node(1))
    clock.now += 11
    limiter.error(node(1))
    assert not limiter.is_limited(node(1))


def test_507_limits_a_node_at_once():
    clock = Clock()
    limiter = ErrorLimiter(interval=60, limit=10, clock=clock)
    limiter.limit_now(node(3))
    assert limiter.is_limited(node(3))
    clock.now += 60
    assert not limiter.is_limited(node(3))


# -- node iteration --------------------------------------------------------------------


def test_node_iter_gives_primaries_in_order_then_handoffs_up_to_limit():
    primaries = [node(0), node(1), node(2)]
    handoffs = (node(n) for n in range(3, 10))
    nodes = list(NodeIter(primaries, handoffs, 5))
    assert [n["id"] for n in nodes] == [0, 1, 2, 3, 4]


def test_node_iter_skips_error_limited_nodes_and_fills_with_handoffs():
    limiter = ErrorLimiter(interval=60, limit=1, clock=Clock())
    limiter.error(node(1))
    limiter.error(node(3))
    walk = NodeIter([node(0), node(1), node(2)], iter([node(3), node(4), node(5)]), 4, limiter)
    assert [n["id"] for n in walk] == [0, 2, 4, 5]
    assert walk.skipped == 2


def test_node_iter_take_is_lazy():
    def handoffs():
        yield node(3)
        raise AssertionError("handoffs should not be read")

    walk = NodeIter([node(0), node(1)], handoffs(), 6)
    assert [n["id"] for n in walk.take(2)] == [0, 1]
    assert walk.take(0) == []


def test_request_node_count_accepts_multiples_of_replicas_or_a_number():
    assert parse_request_node_count("2 * replicas")(3) == 6
    assert parse_request_node_count("replicas")(3) == 3
    assert parse_request_node_count("5")(3) == 5
    with pytest.raises(ValueError):
        parse_request_node_count("lots")


# -- quorum ----------------------------------------------------------------------------


def test_quorum_size_is_a_majority():
    assert [quorum_size(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 2, 3, 3, 4]


@pytest.mark.parametrize(
    "statuses, expected",
    [
        ([201, 201, 201], 201),
        ([201, 201, 503], 201),
        ([201, 503, 503], 503),
        ([404, 404, 201], 404),
        ([409, 409, 404], 409),
        ([422, 422, 201], 422),
        ([202, 201, 201], 201),
        ([500, 500, 500], 503),
        ([], 503),
    ],
)
def test_best_status_picks_the_class_with_a_quorum(statuses, expected):
    assert best_status(statuses, 2) == expected


def test_delete_counts_404_as_done_once_some_node_deleted():
    assert delete_status([204, 404, 404], 2) == 204
    assert delete_status([404, 404, 404], 2) == 404
    assert delete_status([204, 503, 503], 2) == 503
    assert delete_status([204, 204, 503], 2) == 204


# -- info cache ------------------------------------------------------------------------


def test_info_cache_expires_and_invalidates():
    clock = Clock()
    cache = InfoCache(ttl=10, clock=clock)
    info = headers_to_info("container", 204, {"X-Container-Object-Count": "3"})
    cache.put(("container", "a", "c"), info)
    assert cache.get(("container", "a", "c"))["object_count"] == 3
    clock.now += 11
    assert cache.get(("container", "a", "c")) is None
    cache.put(("container", "a", "c"), info)
    cache.invalidate(("container", "a", "c"))
    assert cache.get(("container", "a", "c")) is None


def test_info_cache_keeps_only_existing_things_and_can_be_off():
    cache = InfoCache(ttl=10, clock=Clock())
    cache.put(("container", "a", "gone"), headers_to_info("container", 404, {}))
    assert cache.get(("container", "a", "gone")) is None
    off = InfoCache(ttl=0, clock=Clock())
    off.put(("account", "a"), headers_to_info("account", 204, {}))
    assert off.get(("account", "a")) is None


def test_info_cache_stays_bounded():
    cache = InfoCache(ttl=100, max_entries=10, clock=Clock())
    for n in range(50):
        cache.put(("account", str(n)), headers_to_info("account", 204, {}))
    assert len(cache._entries) <= 10
    assert cache.get(("account", "49")) is not None


def test_container_info_reads_policy_acls_counts_and_meta():
    info = headers_to_info(
        "container",
        204,
        {
            "X-Container-Object-Count": "5",
            "X-Container-Bytes-Used": "77",
            "X-Backend-Storage-Policy-Index": "2",
            "X-Container-Read": ".r:*",
            "X-Container-Write": "a:b",
            "X-Container-Meta-Color": "blue",
            "X-Container-Sysmeta-Versions": "v",
        },
    )
    assert info["object_count"] == 5 and info["bytes"] == 77
    assert info["storage_policy"] == 2
    assert (info["read_acl"], info["write_acl"]) == (".r:*", "a:b")
    assert info["meta"] == {"color": "blue"}
    assert info["sysmeta"] == {"versions": "v"}


# -- object headers --------------------------------------------------------------------


def test_content_type_is_guessed_from_the_extension_when_absent():
    assert guess_content_type("photos/cat.jpg") == "image/jpeg"
    assert guess_content_type("notes.txt") == "text/plain"
    assert guess_content_type("blob") == "application/octet-stream"
    assert content_type_for({"Content-Type": "x/y"}, "a.txt") == "x/y"
    assert content_type_for({}, "a.html") == "text/html"
    detect = {"Content-Type": "x/y", "X-Detect-Content-Type": "true"}
    assert content_type_for(detect, "a.json") == "application/json"


def test_delete_after_becomes_delete_at_and_the_past_is_refused():
    assert delete_at({"X-Delete-After": "60"}, now=1000.5) == "1060"
    assert delete_at({"X-Delete-At": "2000"}, now=1000) == "2000"
    assert delete_at({}, now=1000) is None
    for headers in (
        {"X-Delete-At": "999"},
        {"X-Delete-At": "soon"},
        {"X-Delete-After": "-1"},
        {"X-Delete-After": "1.5"},
    ):
        with pytest.raises(HTTPError) as err:
            delete_at(headers, now=1000)
        assert err.value.status == 400


def test_if_none_match_on_put_is_star_only():
    assert check_if_none_match({"If-None-Match": "*"})
    assert not check_if_none_match({})
    with pytest.raises(HTTPError) as err:
        check_if_none_match({"If-None-Match": '"abc"'})
    assert err.value.status == 400


def test_each_write_slot_gets_one_update_target_round_robin():
    targets = [
        {"ip": "10.0.0.1", "port": 6201, "device": "a"},
        {"ip": "::1", "port": 6201, "device": "b"},
    ]
    headers = update_target_headers("Container", targets, 7, 3)
    assert [h["X-Container-Device"] for h in headers] == ["a", "b", "a"]
    assert headers[1]["X-Container-Host"] == "[::1]:6201"
    assert headers[0]["X-Container-Partition"] == "7"


def test_copy_paths_are_container_slash_object():
    assert split_copy_path("/c/o/with/slashes", "X-Copy-From") == ("c", "o/with/slashes")
    assert split_copy_path("c%20x/%E2%98%83", "X-Copy-From") == ("c x", "\u2603")
    # A raw UTF-8 header arrives as latin-1 WSGI text.
    raw = "c/\u2603".encode().decode("latin-1")
    assert split_copy_path(raw, "X-Copy-From") == ("c", "\u2603")
    for bad in ("c", "/c/", "", "/o"):
        with pytest.raises(HTTPError) as err:
            split_copy_path(bad, "Destination")
        assert err.value.status == 412


def test_copy_carries_source_metadata_under_the_request_unless_fresh():
    source = {
        "Content-Type": "text/plain",
        "X-Object-Meta-Old": "1",
        "X-Object-Meta-Both": "source",
        "X-Object-Sysmeta-Thing": "s",
        "Content-Encoding": "gzip",
        "X-Timestamp": "1.0",
        "ETag": "abc",
    }
    request = {"X-Object-Meta-Both": "request", "X-Object-Meta-New": "2"}
    merged = copied_headers(source, request, fresh=False)
    assert merged == {
        "Content-Type": "text/plain",
        "X-Object-Meta-Old": "1",
        "X-Object-Meta-Both": "request",
        "X-Object-Meta-New": "2",
        "X-Object-Sysmeta-Thing": "s",
        "Content-Encoding": "gzip",
    }
    fresh = copied_headers(source, {"Content-Type": "a/b", "X-Object-Meta-New": "2"}, fresh=True)
    assert fresh == {"Content-Type": "a/b", "X-Object-Meta-New": "2", "X-Object-Sysmeta-Thing": "s"}


# -- request bodies --------------------------------------------------------------------


def body_request(body=b"", **environ):
    req = Request.blank("/v1/a/c/o", method="PUT")
    req.environ["wsgi.input"] = io.BytesIO(body)
    req.environ.pop("CONTENT_LENGTH", None)
    req.environ.update(environ)
    return req


def test_content_length_or_chunked_is_required():
    assert request_content_length(body_request(CONTENT_LENGTH="5")) == (5, False)
    assert request_content_length(body_request(HTTP_TRANSFER_ENCODING="chunked")) == (None, True)
    for environ, status in (({}, 411), ({"CONTENT_LENGTH": "x"}, 400)):
        with pytest.raises(HTTPError) as err:
            request_content_length(body_request(**environ))
        assert err.value.status == status


def test_client_body_comes_in_chunks():
    req = body_request(b"x" * 10)
    chunks = list(client_body(req.environ, 10, 4, 5, 100))
    assert chunks == [b"xxxx", b"xxxx", b"xx"]


def test_short_client_body_is_a_499():
    req = body_request(b"x" * 5)
    with pytest.raises(HTTPError) as err:
        list(client_body(req.environ, 10, 4, 5, 100))
    assert err.value.status == 499


def test_chunked_body_larger_than_the_limit_is_a_413():
    req = body_request(b"x" * 20)
    with pytest.raises(HTTPError) as err:
        list(client_body(req.environ, None, 8, 5, 10))
    assert err.value.status == 413


def test_client_that_times_out_gets_a_408():
    class Slow:
        def read(self, size):
            raise TimeoutError("timed out")

    with pytest.raises(HTTPError) as err:
        list(client_body({"wsgi.input": Slow()}, 10, 4, 5, 100))
    assert err.value.status == 408
