"""Rebuilding a fragment archive segment by segment (no servers): any k others give back
exactly the missing archive, whatever the object's size and the segmentation."""

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyeclib.ec_iface import ECDriver

from object_server.reconstructor_fragments import (
    FragmentSource,
    RebuildError,
    rebuilt_segments,
)

K, M = 4, 2
DRIVER = ECDriver(k=K, m=M, ec_type="isa_l_rs_vand")


def archives_of(body, segment_size):
    archives = [bytearray() for _ in range(K + M)]
    for start in range(0, len(body), segment_size):
        for index, fragment in enumerate(DRIVER.encode(body[start : start + segment_size])):
            archives[index] += fragment
    return [bytes(a) for a in archives]


def source(index, data):
    return FragmentSource(index, io.BytesIO(data).read, lambda: None, f"archive {index}")


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 20000),
    segment_size=st.sampled_from([512, 1000, 4096]),
    missing=st.integers(0, K + M - 1),
    data=st.data(),
)
def test_any_k_archives_rebuild_the_missing_one(size, segment_size, missing, data):
    archives = archives_of(os.urandom(size), segment_size)
    others = [i for i in range(K + M) if i != missing]
    chosen = data.draw(st.permutations(others))[:K]
    sources = [source(i, archives[i]) for i in chosen]
    rebuilt = b"".join(rebuilt_segments(DRIVER, sources, missing, len(archives[missing])))
    assert rebuilt == archives[missing]


def test_a_short_source_is_an_error():
    archives = archives_of(os.urandom(9000), 4096)
    sources = [source(i, archives[i]) for i in range(K - 1)]
    sources.append(source(K - 1, archives[K - 1][:-10]))
    with pytest.raises(RebuildError):
        list(rebuilt_segments(DRIVER, sources, K, len(archives[K])))


def test_a_source_of_the_wrong_index_is_an_error():
    archives = archives_of(os.urandom(5000), 4096)
    sources = [source(i, archives[i]) for i in range(K)]
    sources[0].frag_index = 5
    with pytest.raises(RebuildError):
        list(rebuilt_segments(DRIVER, sources, 4, len(archives[4])))
