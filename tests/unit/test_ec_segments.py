"""Property tests of the EC segment maths: object ranges <-> segments <-> archive ranges.

A simple model of pyeclib's sizes (a fragment is ceil(n / k) bytes plus an 80-byte
header) drives most properties; the last ones encode real data with pyeclib and check
that decoding the archive bytes the maths names gives back exactly the range asked for.
"""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.byteranges import ranges_for_length
from proxy.controllers.ec_segments import (
    Layout,
    archive_range_hint,
    segment_count,
    segment_runs,
)

K = 4
HEADER = 80


def model_fragment_size(n):
    return -(-n // K) + HEADER


def model_layout(length, segment_size):
    return Layout.of(length, segment_size, model_fragment_size)


segment_sizes = st.integers(min_value=1, max_value=4096)
MAX_SEGMENTS = 300  # keeps each example quick whatever the segment size


@st.composite
def layouts(draw, min_length=0):
    segment_size = draw(segment_sizes)
    length = draw(st.integers(min_value=min_length, max_value=segment_size * MAX_SEGMENTS))
    return length, segment_size


@st.composite
def object_and_range(draw, min_length=1):
    length, segment_size = draw(layouts(min_length))
    start = draw(st.integers(min_value=0, max_value=length - 1))
    stop = draw(st.integers(min_value=start + 1, max_value=length))
    return length, segment_size, start, stop


@given(layouts())
def test_segments_tile_the_object_and_fragments_tile_the_archive(case):
    length, segment_size = case
    layout = model_layout(length, segment_size)
    assert layout.num_segments == segment_count(length, segment_size)
    position = archive = 0
    for index in range(layout.num_segments):
        start, stop = layout.segment_bounds(index)
        assert start == position and 0 < stop - start <= segment_size
        assert layout.segment_length(index) == stop - start
        assert layout.fragment_length(index) == model_fragment_size(stop - start)
        assert layout.archive_range(index, index + 1) == (
            archive,
            archive + layout.fragment_length(index),
        )
        position, archive = stop, archive + layout.fragment_length(index)
    assert position == length
    assert archive == layout.archive_length


def test_an_empty_object_has_no_segments_and_an_empty_archive():
    layout = model_layout(0, 1024)
    assert (layout.num_segments, layout.archive_length, layout.last_segment_length) == (0, 0, 0)
    with pytest.raises(ValueError):
        layout.segments_for(0, 1)


@given(object_and_range())
def test_the_segments_of_a_range_are_exactly_those_it_touches(case):
    length, segment_size, start, stop = case
    layout = model_layout(length, segment_size)
    first, last = layout.segments_for(start, stop)
    for index in range(layout.num_segments):
        seg_start, seg_stop = layout.segment_bounds(index)
        touches = seg_start < stop and start < seg_stop
        assert touches == (first <= index < last)


@given(object_and_range())
def test_trimming_the_covering_segments_gives_the_range(case):
    length, segment_size, start, stop = case
    data = bytes(i % 251 for i in range(length))
    layout = model_layout(length, segment_size)
    first, last = layout.segments_for(start, stop)
    out = bytearray()
    for index in range(first, last):
        seg_start, seg_stop = layout.segment_bounds(index)
        cut_from, cut_to = layout.trim(index, start, stop)
        out += data[seg_start:seg_stop][cut_from:cut_to]
    assert bytes(out) == data[start:stop]


@given(object_and_range())
def test_the_archive_range_of_a_span_is_its_fragments_end_to_end(case):
    length, segment_size, start, stop = case
    layout = model_layout(length, segment_size)
    first, last = layout.segments_for(start, stop)
    arch_start, arch_stop = layout.archive_range(first, last)
    assert arch_start == first * layout.fragment_size
    assert arch_stop - arch_start == sum(layout.fragment_length(i) for i in range(first, last))
    assert arch_stop <= layout.archive_length


@given(
    layouts(),
    st.integers(min_value=0, max_value=60_000),
    st.one_of(st.none(), st.integers(min_value=0, max_value=60_000)),
)
def test_a_range_hint_holds_the_satisfiable_part_whatever_the_length(case, start, end):
    length, segment_size = case
    if end is not None and end < start:
        start, end = end, start
    layout = model_layout(length, segment_size)
    hint_start, hint_end = archive_range_hint(start, end, segment_size, layout.fragment_size)
    ranges = ranges_for_length([(start, end)], length)
    if not ranges:
        # past the end: the hint starts at or past the end of every archive
        assert start >= length
        return
    first, last = layout.segments_for(*ranges[0])
    arch_start, arch_stop = layout.archive_range(first, last)
    assert hint_start == arch_start
    assert hint_end is None or hint_end >= arch_stop - 1


@given(
    layouts(min_length=1),
    st.lists(
        st.tuples(st.integers(0, 25_000), st.one_of(st.none(), st.integers(0, 25_000))),
        min_size=1,
        max_size=6,
    ),
)
def test_runs_visit_every_needed_segment_in_serving_order(case, specs):
    length, segment_size = case
    specs = [(a, b) if b is None or b >= a else (b, a) for a, b in specs]
    ranges = ranges_for_length(specs, length)
    if not ranges:
        return
    layout = model_layout(length, segment_size)
    runs = segment_runs(layout, ranges)
    visited = [i for first, stop in runs for i in range(first, stop)]
    # Serving the ranges in order asks for segments in this order, each one either
    # the one just decoded or the next one of the runs.
    wanted = []
    for start, stop in ranges:
        first, last = layout.segments_for(start, stop)
        wanted += list(range(first, last))
    position, last_decoded = 0, None
    for index in wanted:
        if index == last_decoded:
            continue
        assert visited[position] == index
        position += 1
        last_decoded = index
    assert position == len(visited)
    for first, stop in runs:
        assert 0 <= first < stop <= layout.num_segments


# -- against pyeclib itself ------------------------------------------------------------


@pytest.fixture(scope="module")
def driver():
    ec_iface = pytest.importorskip("pyeclib.ec_iface")
    return ec_iface.ECDriver(k=4, m=2, ec_type="isa_l_rs_vand")


SEGMENT = 4096


def real_layout(driver, length):
    def size(n):
        return driver.get_segment_info(n, SEGMENT)["fragment_size"]

    return Layout.of(length, SEGMENT, size)


def encode_archives(driver, data):
    archives = [bytearray() for _ in range(6)]
    for offset in range(0, len(data), SEGMENT):
        for index, fragment in enumerate(driver.encode(data[offset : offset + SEGMENT])):
            archives[index] += fragment
    return [bytes(a) for a in archives]


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=5 * SEGMENT + 17), st.data())
def test_decoding_the_named_archive_bytes_gives_the_range(driver, length, draw):
    data = os.urandom(length)
    archives = encode_archives(driver, data)
    layout = real_layout(driver, length)
    assert all(len(a) == layout.archive_length for a in archives)
    start = draw.draw(st.integers(min_value=0, max_value=length - 1))
    stop = draw.draw(st.integers(min_value=start + 1, max_value=length))
    which = draw.draw(st.permutations(range(6)))[:4]
    first, last = layout.segments_for(start, stop)
    arch_start, _ = layout.archive_range(first, last)
    out = bytearray()
    offset = arch_start
    for index in range(first, last):
        size = layout.fragment_length(index)
        fragments = [archives[i][offset : offset + size] for i in which]
        segment = driver.decode(fragments)
        assert len(segment) == layout.segment_length(index)
        cut_from, cut_to = layout.trim(index, start, stop)
        out += segment[cut_from:cut_to]
        offset += size
    assert bytes(out) == data[start:stop]


def test_pyeclib_fragment_sizes_follow_the_segment_not_the_object(driver):
    for n in (1, 2, 79, 80, 81, 4095, 4096):
        fragments = driver.encode(os.urandom(n))
        assert {len(f) for f in fragments} == {driver.get_segment_info(n, SEGMENT)["fragment_size"]}
