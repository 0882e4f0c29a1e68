import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.timestamp import InvalidTimestamp, Timestamp, normalize_timestamp


def test_normal_form_is_fixed_width_with_five_decimals():
    assert Timestamp(1.5).normal == "0000000001.50000"
    assert Timestamp("1234567890.12345").normal == "1234567890.12345"
    assert len(Timestamp.now().normal) == 16


def test_internal_form_carries_offset_only_when_set():
    assert Timestamp(10).internal == "0000000010.00000"
    ts = Timestamp(10, offset=26)
    assert ts.internal == "0000000010.00000_000000000000001a"
    assert Timestamp(ts.internal) == ts


def test_offset_orders_same_instant():
    base = Timestamp("100.00001")
    later = Timestamp("100.00001", offset=1)
    assert base < later
    assert later < Timestamp("100.00002")
    assert sorted([later, base]) == [base, later]


def test_comparison_with_strings_and_floats():
    assert Timestamp(5) == "5"
    assert Timestamp(5) == 5.0
    assert Timestamp("5.000001") == Timestamp("5")  # below precision rounds
    assert Timestamp(5) != None  # noqa: E711
    assert Timestamp(4) < "5"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "-1",
        "1_",
        "1_zz",
        "1_" + "f" * 17,
        "nan",
        "inf",
        "1e40",
        "9" * 5000,
        None,
        [],
        True,
    ],
)
def test_bad_input_raises_clear_error(bad):
    with pytest.raises(InvalidTimestamp):
        Timestamp(bad)


def test_negative_offset_rejected():
    with pytest.raises(InvalidTimestamp):
        Timestamp(1, offset=-1)


def test_normalize_timestamp():
    assert normalize_timestamp("1") == "0000000001.00000"


@given(st.integers(min_value=0, max_value=10**15 - 1), st.integers(min_value=0, max_value=2**40))
def test_round_trip_and_order_match_ticks(ticks, offset):
    ts = Timestamp(f"{ticks // 100000}.{ticks % 100000:05d}", offset=offset)
    assert Timestamp(ts.internal) == ts
    assert ts.ticks == ticks
    assert Timestamp(ts.internal) < Timestamp(ts.internal, offset=1)
