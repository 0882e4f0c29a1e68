"""Listings: the marker/prefix/delimiter walk against a brute-force reference, formats."""

import json
import os
import shutil
import tempfile
from xml.etree import ElementTree

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webob import Request

from common.db import db_file_path
from common.http import HTTPError
from common.listing import (
    ListingParams,
    Subdir,
    after_prefix,
    isoformat,
    listing_format,
    object_entry,
    parse_listing_params,
    render_listing,
    split_swift_bytes,
    walk_listing,
)
from common.timestamp import Timestamp
from container_server.broker import ContainerBroker

ALPHABET = "ab/-.é😀"
names_st = st.sets(st.text(alphabet=ALPHABET, min_size=1, max_size=5), max_size=40)
part_st = st.text(alphabet=ALPHABET, max_size=3)
delim_st = st.sampled_from(["", "/", "-", "a", "é", "/a", "😀"])


def reference(names, prefix="", delimiter="", marker="", end_marker="", limit=10000, reverse=False):
    """What a listing must return, computed the slow, obvious way."""
    ordered = sorted(names, reverse=reverse)
    out = []
    for name in ordered:
        if not name.startswith(prefix):
            continue
        if reverse:
            if (marker and name >= marker) or (end_marker and name <= end_marker):
                continue
        elif (marker and name <= marker) or (end_marker and name >= end_marker):
            continue
        cut = name.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            subdir = name[: cut + len(delimiter)]
            if subdir == marker or (out and out[-1] == ("subdir", subdir)):
                continue
            out.append(("subdir", subdir))
        else:
            out.append(("name", name))
    return out[:limit]


def as_pairs(rows):
    return [("subdir", str(r)) if isinstance(r, Subdir) else ("name", r[0]) for r in rows]


class Tmp:
    """A fresh container DB per hypothesis example (fixtures are per test, not example)."""

    def __init__(self):
        self.root = tempfile.mkdtemp()
        self.count = 0

    def broker(self, names):
        self.count += 1
        path = db_file_path(os.path.join(self.root, "sda"), "containers", self.count, "f" * 32)
        broker = ContainerBroker(path)
        broker.initialize(1, account="a", container="c")
        broker.merge_items(
            {
                "name": name,
                "created_at": Timestamp(2).internal,
                "size": 1,
                "content_type": "t",
                "etag": "e",
                "deleted": 0,
                "storage_policy_index": 0,
            }
            for name in names
        )
        # A deleted row must never show up.
        broker.delete_object("a/deleted", 3)
        return broker


@pytest.fixture(scope="module")
def tmp():
    holder = Tmp()
    yield holder
    shutil.rmtree(holder.root)


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(
    names=names_st,
    prefix=part_st,
    delimiter=delim_st,
    marker=part_st,
    end=part_st,
    reverse=st.booleans(),
)
def test_listing_matches_brute_force(tmp, names, prefix, delimiter, marker, end, reverse):
    names.discard("a/deleted")
    with tmp.broker(names) as broker:
        params = ListingParams(prefix, delimiter, marker, end, 10000, reverse)
        got = as_pairs(broker.list_objects(params))
    assert got == reference(names, prefix, delimiter, marker, end, 10000, reverse)


@SETTINGS
@given(
    names=names_st,
    prefix=part_st,
    delimiter=delim_st,
    limit=st.integers(1, 7),
    reverse=st.booleans(),
)
def test_paging_with_marker_reproduces_the_whole_listing(
    tmp, names, prefix, delimiter, limit, reverse
):
    names.discard("a/deleted")
    full = reference(names, prefix, delimiter, reverse=reverse)
    pages = []
    marker = ""
    with tmp.broker(names) as broker:
        for _ in range(len(full) + 2):
            page = as_pairs(
                broker.list_objects(ListingParams(prefix, delimiter, marker, "", limit, reverse))
            )
            assert len(page) <= limit
            pages.extend(page)
            if len(page) < limit:
                break
            marker = page[-1][1]
    assert pages == full


@SETTINGS
@given(names=names_st, prefix=part_st, delimiter=delim_st)
def test_reverse_is_the_reverse(tmp, names, prefix, delimiter):
    names.discard("a/deleted")
    with tmp.broker(names) as broker:
        forward = as_pairs(broker.list_objects(ListingParams(prefix, delimiter)))
        backward = as_pairs(broker.list_objects(ListingParams(prefix, delimiter, reverse=True)))
    assert backward == forward[::-1]


def test_rolled_up_prefix_is_skipped_with_a_new_range_query():
    names = [f"dir/{i:04d}" for i in range(1000)] + ["zzz"]
    calls = []

    def fetch(lower, inclusive, upper, reverse, count):
        calls.append(lower)
        rows = [
            (n,) for n in sorted(names) if lower is None or n > lower or (inclusive and n == lower)
        ]
        return iter(rows[:count])

    out = walk_listing(fetch, ListingParams(delimiter="/", limit=100))
    assert out == ["dir/", ("zzz",)]
    assert calls == [None, "dir0"]  # one scan per subdir, none through the 1000 rows


def test_after_prefix():
    assert after_prefix("ab") == "ac"
    assert after_prefix("a\U0010ffff") == "b"
    assert after_prefix("\U0010ffff") is None
    assert after_prefix("a\ud7ff") == "a\ue000"  # never a surrogate


# -- parameters and formats -----------------------------------------------------------------


def test_listing_params_parse_and_validate():
    req = Request.blank("/?prefix=p%C3%A9&delimiter=/&marker=m&end_marker=z&limit=5&reverse=on")
    assert parse_listing_params(req) == ListingParams("pé", "/", "m", "z", 5, True)
    assert parse_listing_params(Request.blank("/")).limit == 10000
    for query, status in [
        ("limit=10001", 412),
        ("limit=x", 400),
        ("limit=-1", 400),
        ("prefix=%FF", 400),
        ("marker=a%00b", 400),
    ]:
        with pytest.raises(HTTPError) as err:
            parse_listing_params(Request.blank("/?" + query))
        assert err.value.status == status, query


@pytest.mark.parametrize(
    "query, accept, expected",
    [
        ("", None, ("plain", "text/plain; charset=utf-8")),
        ("?format=json", None, ("json", "application/json; charset=utf-8")),
        ("?format=XML", None, ("xml", "application/xml; charset=utf-8")),
        ("?format=bogus", None, ("plain", "text/plain; charset=utf-8")),
        ("", "application/json", ("json", "application/json; charset=utf-8")),
        ("", "text/xml", ("xml", "text/xml; charset=utf-8")),
        (
            "",
            "application/json;q=0.5, text/plain;q=0.2",
            ("json", "application/json; charset=utf-8"),
        ),
        ("?format=json", "application/xml", ("json", "application/json; charset=utf-8")),
    ],
)
def test_listing_format_from_query_or_accept(query, accept, expected):
    headers = {"Accept": accept} if accept else {}
    assert listing_format(Request.blank("/" + query, headers=headers)) == expected


def test_unacceptable_accept_is_406():
    with pytest.raises(HTTPError) as err:
        listing_format(Request.blank("/", headers={"Accept": "image/png"}))
    assert err.value.status == 406


def test_isoformat_has_microseconds():
    assert isoformat("1700000000.12345") == "2023-11-14T22:13:20.123450"
    assert isoformat(0) == "1970-01-01T00:00:00.000000"
    assert isoformat("1700000000.00000_0000000000000001") == "2023-11-14T22:13:20.000000"


def test_swift_bytes_overrides_the_size():
    assert split_swift_bytes("text/plain;swift_bytes=1234") == ("text/plain", 1234)
    assert split_swift_bytes("text/plain; charset=x") == ("text/plain; charset=x", None)
    entry = object_entry("o", "1.00000", 5, "a/b;swift_bytes=99", "etag")
    assert entry["bytes"] == 99 and entry["content_type"] == "a/b"


ENTRIES = [
    {"subdir": "d/"},
    object_entry("<o&>", "1700000000.00000", 3, "text/plain", "abc"),
]


def test_render_json():
    assert json.loads(render_listing(ENTRIES, "json", "container", "c")) == [
        {"subdir": "d/"},
        {
            "name": "<o&>",
            "hash": "abc",
            "bytes": 3,
            "content_type": "text/plain",
            "last_modified": "2023-11-14T22:13:20.000000",
        },
    ]


def test_render_plain():
    assert render_listing(ENTRIES, "plain", "container", "c") == b"d/\n<o&>\n"
    assert render_listing([], "plain", "container", "c") == b""


def test_render_xml_container_and_account():
    body = render_listing(ENTRIES, "xml", "container", "c&c")
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<container name="c&amp;c">')
    root = ElementTree.fromstring(body)
    assert root.tag == "container" and root.get("name") == "c&c"
    sub, obj = list(root)
    assert sub.tag == "subdir" and sub.get("name") == "d/" and sub.find("name").text == "d/"
    assert [child.tag for child in obj] == [
        "name",
        "hash",
        "bytes",
        "content_type",
        "last_modified",
    ]
    assert obj.find("name").text == "<o&>" and obj.find("bytes").text == "3"
    account = {"name": "c1", "count": 2, "bytes": 9, "last_modified": "x"}
    root = ElementTree.fromstring(render_listing([account], "xml", "account", "a"))
    assert root.tag == "account"
    assert [(c.tag, c.text) for c in root.find("container")] == [
        ("name", "c1"),
        ("count", "2"),
        ("bytes", "9"),
        ("last_modified", "x"),
    ]
    assert ElementTree.fromstring(render_listing([], "xml", "account", "a")).tag == "account"
