"""Manifest arithmetic: range -> segment mapping (property tests), ETags, entries."""

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from proxy.middleware import slo_manifest as manifest

lengths_st = st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=12)


@given(lengths_st, st.data())
def test_pieces_cover_exactly_the_range(lengths, data):
    total = sum(lengths)
    start = data.draw(st.integers(0, total - 1))
    stop = data.draw(st.integers(start + 1, total))
    blob = b"".join(bytes([i]) * n for i, n in enumerate(lengths))
    segments = [bytes([i]) * n for i, n in enumerate(lengths)]
    got = b"".join(segments[i][a:b] for i, a, b in manifest.pieces(lengths, start, stop))
    assert got == blob[start:stop]


@given(lengths_st, st.data())
def test_pieces_name_only_segments_the_range_touches(lengths, data):
    total = sum(lengths)
    start = data.draw(st.integers(0, total - 1))
    stop = data.draw(st.integers(start + 1, total))
    found = list(manifest.pieces(lengths, start, stop))
    indexes = [i for i, _a, _b in found]
    assert indexes == sorted(set(indexes))  # each once, in order
    for i, a, b in found:
        assert 0 <= a < b <= lengths[i]  # never empty, never past the segment
    offsets = [sum(lengths[:i]) for i in range(len(lengths))]
    for i in range(len(lengths)):
        overlaps = offsets[i] < stop and offsets[i] + lengths[i] > start
        assert (i in indexes) == overlaps
    # only the first and last pieces may be partial
    for i, a, b in found[1:-1]:
        assert (a, b) == (0, lengths[i])


def test_empty_range_yields_nothing():
    assert list(manifest.pieces([5, 5], 3, 3)) == []


def test_slo_etag_is_md5_of_segment_etags_with_ranges_marked():
    entries = [
        {"hash": "a" * 32, "bytes": 10},
        {"hash": "b" * 32, "bytes": 10, "range": "2-5"},
    ]
    expected = hashlib.md5(("a" * 32 + "b" * 32 + ":2-5;").encode()).hexdigest()
    assert manifest.slo_etag(entries) == expected
    assert manifest.total_size(entries) == 14


def test_segment_entry_checks_head_answers():
    spec = {"path": "/c/o", "etag": "a" * 32, "size_bytes": 3, "range": None}
    head = {"Content-Length": "3", "ETag": "a" * 32, "Content-Type": "text/plain"}
    entry, problem = manifest.segment_entry(spec, 200, head)
    assert problem is None and entry["bytes"] == 3 and entry["hash"] == "a" * 32
    assert manifest.segment_entry(spec, 404, {})[1] == "404 Not Found"
    assert manifest.segment_entry(spec, 403, {})[1] == "403 Forbidden"
    assert manifest.segment_entry(spec, 200, dict(head, ETag="b" * 32))[1] == "Etag Mismatch"
    assert manifest.segment_entry(spec, 200, dict(head, **{"Content-Length": "4"}))[1] == (
        "Size Mismatch"
    )


def test_segment_entry_of_a_nested_manifest_uses_its_large_object_size_and_etag():
    spec = {"path": "/c/inner", "etag": None, "size_bytes": None, "range": None}
    head = {
        "Content-Length": "200",
        "ETag": "f" * 32,
        "X-Static-Large-Object": "True",
        "X-Object-Sysmeta-Slo-Size": "4096",
        "X-Object-Sysmeta-Slo-Etag": "e" * 32,
        "Content-Type": "text/plain;swift_bytes=4096",
    }
    entry, problem = manifest.segment_entry(spec, 200, head)
    assert problem is None
    assert entry["sub_slo"] is True
    assert (entry["bytes"], entry["hash"], entry["content_type"]) == (4096, "e" * 32, "text/plain")


def test_segment_range_is_resolved_and_normalized():
    spec = {"path": "/c/o", "etag": None, "size_bytes": None, "range": "-4"}
    entry, _ = manifest.segment_entry(spec, 200, {"Content-Length": "10", "ETag": "a" * 32})
    assert entry["range"] == "6-9"
    assert manifest.entry_length(entry) == 4
    spec["range"] = "20-"
    assert manifest.segment_entry(spec, 200, {"Content-Length": "10", "ETag": "a" * 32})[1] == (
        "Unsatisfiable Range"
    )


def test_override_etag_keeps_params_from_further_out():
    value = manifest.override_etag("m" * 32, "s" * 32, "; s3_etag=abc-2")
    assert value == f"{'m' * 32}; s3_etag=abc-2; slo_etag={'s' * 32}"


def test_content_type_params():
    assert manifest.strip_swift_bytes("text/plain;swift_bytes=5") == "text/plain"
    assert manifest.client_content_type("a/b; charset=x;swift_bytes=9") == "a/b; charset=x"
