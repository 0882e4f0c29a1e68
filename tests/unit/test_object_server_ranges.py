"""Range arithmetic (common.byteranges) and conditional-request rules (conditions)."""

from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import conditions
from common.byteranges import (
    multipart_body,
    multipart_length,
    parse_range_header,
    ranges_for_length,
)


@pytest.mark.parametrize(
    "header, expected",
    [
        ("bytes=0-9", [(0, 9)]),
        ("bytes=-5", [(None, 5)]),
        ("bytes=5-", [(5, None)]),
        ("BYTES= 1-2 , 4-5", [(1, 2), (4, 5)]),
        ("bytes=1-2,,3-4", [(1, 2), (3, 4)]),
        ("bytes=5-4", None),
        ("bytes=-", None),
        ("bytes=a-b", None),
        ("bytes=1-2-3", None),
        ("bytes=--1", None),
        ("bits=0-1", None),
        ("bytes=", None),
        ("", None),
        (None, None),
        ("bytes=１-２", None),  # non-ASCII digits
    ],
)
def test_parse_range_header(header, expected):
    assert parse_range_header(header) == expected


def test_ranges_for_length_rules():
    assert ranges_for_length([(0, 9)], 5) == [(0, 5)]
    assert ranges_for_length([(None, 3)], 5) == [(2, 5)]
    assert ranges_for_length([(None, 30)], 5) == [(0, 5)]
    assert ranges_for_length([(None, 0)], 5) == []
    assert ranges_for_length([(5, None)], 5) == []
    assert ranges_for_length([(0, 0)], 0) == []  # nothing to serve of an empty object
    assert ranges_for_length([(None, 1)], 0) == []
    assert ranges_for_length([(9, None), (1, 1)], 5) == [(1, 2)]


def test_egregious_range_requests_are_refused():
    assert ranges_for_length([(i, i) for i in range(51)], 1000) == []
    assert len(ranges_for_length([(i, i) for i in range(50)], 1000)) == 50
    assert ranges_for_length([(0, 10)] * 3, 100) == []  # three overlapping
    assert len(ranges_for_length([(0, 10)] * 2, 100)) == 2
    backwards = [(i, i) for i in range(8, 0, -1)]
    assert ranges_for_length(backwards, 100) == []
    assert len(ranges_for_length(backwards[:7], 100)) == 7


@given(
    st.integers(0, 500),
    st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 600)), st.integers(0, 600)), max_size=6),
)
def test_satisfiable_ranges_lie_inside_the_object(length, raw):
    specs = []
    for start, end in raw:
        if start is None:
            specs.append((None, end))
        else:
            specs.append((min(start, end), max(start, end)))
    for start, stop in ranges_for_length(specs, length):
        assert 0 <= start < stop <= length


@given(st.binary(min_size=1, max_size=300), st.data())
def test_multipart_length_matches_the_body(data, draw):
    length = len(data)
    ranges = draw.draw(
        st.lists(
            st.integers(0, length - 1).flatmap(
                lambda s: st.tuples(st.just(s), st.integers(s + 1, length))
            ),
            min_size=2,
            max_size=5,
        )
    )
    body = b"".join(
        multipart_body(ranges, "b0und", "text/plain", length, lambda a, b: iter([data[a:b]]))
    )
    assert len(body) == multipart_length(ranges, "b0und", "text/plain", length)
    for start, stop in ranges:
        assert f"bytes {start}-{stop - 1}/{length}".encode() in body


def test_etag_lists_and_weak_tags():
    assert conditions.etag_matches('"a", W/"b"', "b")
    assert conditions.etag_matches("*", "z")
    assert not conditions.etag_matches('"a"', "b")
    assert conditions.normalize_etag(' "abc" ') == "abc"


def test_http_dates():
    assert conditions.parse_http_date(formatdate(1000, usegmt=True)) == 1000
    assert conditions.parse_http_date("Thu, 01 Jan 1970 00:16:40 -0000") == 1000
    assert conditions.parse_http_date("not a date") is None
    assert conditions.parse_http_date("") is None


def test_if_range_by_date_and_etag():
    date = formatdate(1000, usegmt=True)
    assert conditions.range_applies({}, "e", 1000)
    assert conditions.range_applies({"If-Range": '"e"'}, "e", 1000)
    assert not conditions.range_applies({"If-Range": 'W/"e"'}, "e", 1000)
    assert conditions.range_applies({"If-Range": date}, "e", 1000)
    assert not conditions.range_applies({"If-Range": date}, "e", 1001)
