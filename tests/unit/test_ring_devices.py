"""Device specs: the swift-ring-builder grammar for adding, searching and printing."""

import pytest

from ring.devices import (
    DeviceSpecError,
    format_device,
    match_device,
    parse_add_value,
    parse_search_value,
)


def dev(**fields):
    base = {
        "id": 3,
        "region": 1,
        "zone": 2,
        "ip": "10.0.0.1",
        "port": 6200,
        "device": "sdb",
        "weight": 100.0,
        "meta": "",
    }
    base.update(fields)
    return base


# -- add values --------------------------------------------------------------------------


def test_add_value_with_region_zone_address_device_and_meta():
    assert parse_add_value("r1z1-127.0.0.1:6200/d1_some meta") == {
        "region": 1,
        "zone": 1,
        "ip": "127.0.0.1",
        "port": 6200,
        "device": "d1",
        "meta": "some meta",
    }


def test_add_value_without_region_means_region_one_and_meta_defaults_empty():
    assert parse_add_value("z3-10.1.2.3:6201/sdc") == {
        "region": 1,
        "zone": 3,
        "ip": "10.1.2.3",
        "port": 6201,
        "device": "sdc",
        "meta": "",
    }


def test_add_value_ipv6_in_brackets_is_stored_bare_and_compressed():
    parsed = parse_add_value("r2z1-[0:0:0:0:0:0:0:1]:6200/d1")
    assert parsed["ip"] == "::1"
    assert parsed["region"] == 2


def test_add_value_accepts_host_names():
    assert parse_add_value("r1z1-Storage-1.example.com:6200/d1")["ip"] == "storage-1.example.com"


def test_meta_may_hold_underscores_and_slashes():
    assert parse_add_value("r1z1-1.2.3.4:6200/d1_a_b/c")["meta"] == "a_b/c"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("r1-127.0.0.1:6200/d1", "z<zone>"),
        ("rxz1-127.0.0.1:6200/d1", "region"),
        ("r1z-127.0.0.1:6200/d1", "zone"),
        ("r1z1127.0.0.1:6200/d1", "'-<ip>'"),
        ("r1z1-127.0.0.1/d1", "port"),
        ("r1z1-127.0.0.1:/d1", "port"),
        ("r1z1-127.0.0.1:70000/d1", "out of range"),
        ("r1z1-127.0.0.1:0/d1", "out of range"),
        ("r1z1-127.0.0.1:6200", "device"),
        ("r1z1-127.0.0.1:6200/", "empty"),
        ("r1z1-:6200/d1", "address"),
        ("r1z1-[::1:6200/d1", "unclosed"),
        ("r1z1-[not-v6]:6200/d1", "not an IP"),
        ("r1z1-999.1.1.1:6200/d1", "not an IP"),
        ("r1z1-127.0.0.1:6200R127.0.0.2:6300/d1", "replication"),
        ("r1z1-127.0.0.1:6200x/d1", "/<device>"),
    ],
)
def test_bad_add_values_say_what_is_wrong(text, why):
    with pytest.raises(DeviceSpecError) as err:
        parse_add_value(text)
    assert why in str(err.value)
    assert isinstance(err.value, ValueError)


def test_add_value_must_be_a_string():
    with pytest.raises(DeviceSpecError):
        parse_add_value(None)


# -- search values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "criteria"),
    [
        ("d74", {"id": 74}),
        ("r1", {"region": 1}),
        ("r1z2", {"region": 1, "zone": 2}),
        ("z1", {"zone": 1}),
        ("d3r1z2", {"id": 3, "region": 1, "zone": 2}),
        ("z1-10.0.0.1", {"zone": 1, "ip": "10.0.0.1"}),
        ("-10.0.0.1:6200", {"ip": "10.0.0.1", "port": 6200}),
        ("10.0.0.1", {"ip": "10.0.0.1"}),
        ("[::1]", {"ip": "::1"}),
        (":6200", {"port": 6200}),
        ("z1:6200", {"zone": 1, "port": 6200}),
        ("/sdb", {"device": "sdb"}),
        ("_meta", {"meta": "meta"}),
        (
            "r1z2-10.0.0.1:6200/sdb_meta",
            {
                "region": 1,
                "zone": 2,
                "ip": "10.0.0.1",
                "port": 6200,
                "device": "sdb",
                "meta": "meta",
            },
        ),
        ("-host.example:6200", {"ip": "host.example", "port": 6200}),
    ],
)
def test_search_values_hold_only_the_parts_given(text, criteria):
    assert parse_search_value(text) == criteria


@pytest.mark.parametrize(
    "text", ["", "  ", "x", "d", "dx", "z1-", "z1x", "r1z1-1.2.3.4:abc", "sdb"]
)
def test_bad_search_values(text):
    with pytest.raises(DeviceSpecError):
        parse_search_value(text)


# -- formatting and matching -------------------------------------------------------------


def test_format_device_with_and_without_meta():
    assert format_device(dev()) == "d3r1z2-10.0.0.1:6200/sdb"
    assert format_device(dev(meta="ssd")) == "d3r1z2-10.0.0.1:6200/sdb_ssd"
    assert format_device(dev(ip="::1")) == "d3r1z2-[::1]:6200/sdb"


def test_formatted_device_parses_back_to_a_search_that_matches_it():
    one = dev(ip="fe80::1", meta="rack 4")
    criteria = parse_search_value(format_device(one))
    assert criteria == {k: one[k] for k in ("id", "region", "zone", "ip", "port", "device", "meta")}
    assert match_device(one, criteria)
    assert not match_device(dev(id=4, ip="fe80::1", meta="rack 4"), criteria)


def test_add_value_and_format_round_trip():
    text = "r2z5-[2001:db8::7]:6000/d9_fast"
    parsed = parse_add_value(text)
    assert format_device({"id": 0, **parsed}) == "d0" + text


def test_match_device_meta_is_a_substring_and_the_rest_exact():
    one = dev(meta="ssd rack4")
    assert match_device(one, {"meta": "rack4"})
    assert match_device(one, {})
    assert not match_device(one, {"meta": "hdd"})
    assert match_device(one, {"zone": 2, "port": 6200})
    assert not match_device(one, {"zone": 1})
    assert not match_device(one, {"device": "sd"})


def test_match_device_compares_addresses_in_canonical_form():
    one = dev(ip="2001:db8::1")
    assert match_device(one, {"ip": "2001:DB8:0:0:0:0:0:1"})
    assert match_device(one, {"ip": "[2001:db8::1]"})
    assert not match_device(one, {"ip": "not an address"})
