"""File names in a hash dir: parsing (incl. EC names) and which files are obsolete."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.timestamp import Timestamp
from object_server.filenames import gather, make_filename, parse_filename

T1, T2, T3, T4 = (Timestamp(n).internal for n in (1, 2, 3, 4))


@pytest.mark.parametrize(
    "name, ext, frag, durable",
    [
        (f"{T1}.data", ".data", None, True),
        (f"{T1}.ts", ".ts", None, True),
        (f"{T1}.meta", ".meta", None, True),
        (f"{T1}#3.data", ".data", 3, False),
        (f"{T1}#12#d.data", ".data", 12, True),
        ("0000000001.00000_00000000000000ff.data", ".data", None, True),
    ],
)
def test_parse_known_names(name, ext, frag, durable):
    info = parse_filename(name)
    assert (info.ext, info.frag_index, info.durable) == (ext, frag, durable)
    assert make_filename(info.timestamp, ext, frag, durable and frag is not None) == name


@pytest.mark.parametrize(
    "name",
    [
        "1.data",  # not the canonical timestamp spelling
        f"{T1}.durable",
        f"{T1}#3.ts",
        f"{T1}#.data",
        f"{T1}#3#.data",
        f"{T1}#3#x.data",
        f"{T1}#-1.data",
        f"{T1}#3#d#d.data",
        "hashes.invalid",
        ".lock",
        f"{T1}",
    ],
)
def test_parse_rejects_other_names(name):
    assert parse_filename(name) is None


def test_newest_data_wins_and_keeps_newer_meta():
    ondisk = gather([f"{T1}.data", f"{T2}.data", f"{T1}.meta", f"{T3}.meta", f"{T4}.meta"])
    assert ondisk.base.filename == f"{T2}.data"
    assert ondisk.meta.filename == f"{T4}.meta"
    assert sorted(ondisk.obsolete) == sorted([f"{T1}.data", f"{T1}.meta", f"{T3}.meta"])


def test_tombstone_wins_a_tie_and_older_files():
    ondisk = gather([f"{T2}.data", f"{T2}.ts", f"{T1}.ts", f"{T1}.meta"])
    assert ondisk.deleted and ondisk.base.filename == f"{T2}.ts"
    assert sorted(ondisk.obsolete) == sorted([f"{T2}.data", f"{T1}.ts", f"{T1}.meta"])


def test_meta_at_the_data_instant_is_obsolete():
    assert gather([f"{T1}.data", f"{T1}.meta"]).obsolete == [f"{T1}.meta"]


def test_unknown_files_are_left_alone():
    ondisk = gather([f"{T1}.data", "junk", f"{T1}.durable"])
    assert ondisk.obsolete == [] and sorted(ondisk.unknown) == sorted(["junk", f"{T1}.durable"])


def test_ec_fragments_at_the_durable_instant_are_all_kept():
    names = [f"{T2}#0#d.data", f"{T2}#1.data", f"{T1}#0#d.data", f"{T3}#0.data"]
    ondisk = gather(names)
    assert ondisk.base.filename == f"{T2}#0#d.data"
    assert {i.filename for i in ondisk.data} == {f"{T2}#0#d.data", f"{T2}#1.data"}
    assert [i.filename for i in ondisk.pending] == [f"{T3}#0.data"]
    assert ondisk.obsolete == [f"{T1}#0#d.data"]


def test_only_uncommitted_fragments_means_no_object():
    ondisk = gather([f"{T1}#0.data"])
    assert ondisk.base is None and ondisk.obsolete == []


def test_reclaim_drops_old_tombstones_only():
    assert gather([f"{T2}.ts"], reclaim_before=Timestamp(3)).obsolete == [f"{T2}.ts"]
    assert gather([f"{T2}.ts"], reclaim_before=Timestamp(2)).obsolete == []
    assert gather([f"{T1}.data"], reclaim_before=Timestamp(3)).obsolete == []
    assert gather([f"{T1}#0.data"], reclaim_before=Timestamp(3)).obsolete == [f"{T1}#0.data"]


_names = st.lists(
    st.tuples(st.integers(1, 6), st.sampled_from([".data", ".ts", ".meta"])),
    max_size=8,
    unique=True,
).map(lambda items: [make_filename(Timestamp(t), ext) for t, ext in items])


@given(_names)
def test_gather_invariants(names):
    ondisk = gather(names)
    kept = {i.filename for i in ondisk.kept()}
    # Every name is exactly one of kept or obsolete.
    assert kept | set(ondisk.obsolete) == set(names)
    assert not kept & set(ondisk.obsolete)
    # Cleaning is idempotent: what is kept stays kept.
    again = gather(sorted(kept))
    assert again.obsolete == [] and {i.filename for i in again.kept()} == kept
    # The base is the newest data/tombstone there is.
    candidates = [parse_filename(n) for n in names if not n.endswith(".meta")]
    if candidates:
        newest = max(c.timestamp for c in candidates)
        assert ondisk.base.timestamp == newest
    else:
        assert ondisk.base is None
    # At most one .data and one .meta survive for a replicated object.
    assert sum(n.endswith(".data") for n in kept) <= 1
    assert sum(n.endswith(".meta") for n in kept) <= 1
