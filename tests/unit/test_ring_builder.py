"""RingBuilder: devices, rebalance rules, reports, validation, the builder file."""

import gzip
import os
import pickle
import struct
from array import array

import msgpack
import pytest

import ring.builder
from ring.builder import BuilderError, BuilderFileError, RingBuilder
from ring.devices import FIELDS, DeviceSpecError
from ring.ringfile import RingData


def cluster(part_power=8, replicas=3, min_part_hours=1, zones=5, per_zone=4, servers=2, **kw):
    """A builder with ``zones * per_zone`` equal devices, ``servers`` per zone."""
    builder = RingBuilder(part_power, replicas, min_part_hours)
    for z in range(1, zones + 1):
        for i in range(per_zone):
            builder.add_dev(
                {
                    "region": kw.get("region", 1),
                    "zone": z,
                    "ip": f"10.0.{z}.{i % servers + 1}",
                    "port": 6200,
                    "device": f"d{i}",
                    "weight": kw.get("weight", 100.0),
                }
            )
    return builder


def new_dev(zone=1, ip="10.9.9.9", device="new", weight=100.0, region=1, **extra):
    return {
        "region": region,
        "zone": zone,
        "ip": ip,
        "port": 6200,
        "device": device,
        "weight": weight,
        **extra,
    }


def table(builder):
    return [list(row) for row in builder.get_ring().replica2part2dev]


def parts_of(builder):
    """Per partition, the dev ids of its replicas."""
    rows = table(builder)
    return [[row[p] for row in rows if p < len(row)] for p in range(builder.parts)]


def counts(builder):
    return builder.dev_parts()


# -- construction and settings -------------------------------------------------------------


def test_new_builder_has_the_given_settings_and_no_devices():
    builder = RingBuilder(10, 2.5, 24)
    assert (builder.part_power, builder.parts, builder.replicas) == (10, 1024, 2.5)
    assert (builder.min_part_hours, builder.overload) == (24, 0.0)
    assert builder.devs == []
    assert not builder.ever_rebalanced


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0, 3, 1), "part_power"),
        ((25, 3, 1), "part_power"),
        ((8.5, 3, 1), "whole"),
        (("8", 3, 1), "number"),
        ((True, 3, 1), "number"),
        ((8, 0.5, 1), "replicas"),
        ((8, 0, 1), "replicas"),
        ((8, "3", 1), "number"),
        ((8, float("nan"), 1), "finite"),
        ((8, float("inf"), 1), "finite"),
        ((8, 65, 1), "replicas"),
        ((8, 3, -1), "min_part_hours"),
        ((8, 3, 1.5), "whole"),
        ((8, 3, None), "number"),
    ],
)
def test_bad_construction_arguments(args, words):
    with pytest.raises(BuilderError, match=words):
        RingBuilder(*args)


def test_settings_are_validated():
    builder = RingBuilder(8, 3, 1)
    builder.set_overload(0.25)
    builder.set_replicas(2)
    builder.min_part_hours = 4
    assert (builder.overload, builder.replicas, builder.min_part_hours) == (0.25, 2.0, 4)
    builder.set_min_part_hours(5)
    assert builder.min_part_hours == 5
    for bad in (-0.1, "x", float("inf")):
        with pytest.raises(BuilderError):
            builder.set_overload(bad)
    for bad in (0, 0.99, "3"):
        with pytest.raises(BuilderError):
            builder.set_replicas(bad)
    with pytest.raises(BuilderError):
        builder.min_part_hours = -1
    assert (builder.overload, builder.replicas, builder.min_part_hours) == (0.25, 2.0, 5)


def test_every_change_bumps_the_version():
    builder = RingBuilder(6, 1, 0)
    seen = [builder.version]
    builder.add_dev(new_dev())
    seen.append(builder.version)
    builder.set_dev_weight(0, 5)
    seen.append(builder.version)
    builder.rebalance(seed=1)
    seen.append(builder.version)
    assert seen == sorted(set(seen))


# -- devices -------------------------------------------------------------------------------


def test_add_dev_returns_ids_and_stores_exactly_the_ring_fields():
    builder = RingBuilder(6, 1, 0)
    assert builder.add_dev(new_dev(device="a")) == 0
    assert builder.add_dev(new_dev(device="b", meta="fast")) == 1
    assert builder.devs[0] == {
        "id": 0,
        "region": 1,
        "zone": 1,
        "ip": "10.9.9.9",
        "port": 6200,
        "device": "a",
        "weight": 100.0,
        "meta": "",
    }
    assert set(builder.devs[1]) == set(FIELDS)
    assert builder.devs[1]["meta"] == "fast"
    assert isinstance(builder.add_dev(new_dev(device="c", weight=3)), int)
    assert builder.devs[2]["weight"] == 3.0 and isinstance(builder.devs[2]["weight"], float)


def test_add_dev_with_an_explicit_id_leaves_holes_that_are_filled_later():
    builder = RingBuilder(6, 1, 0)
    assert builder.add_dev(new_dev(device="a", id=3)) == 3
    assert builder.devs[:3] == [None, None, None]
    assert builder.add_dev(new_dev(device="b")) == 0
    with pytest.raises(BuilderError, match="already in use"):
        builder.add_dev(new_dev(device="c", id=3))


def test_add_dev_normalizes_ipv6():
    builder = RingBuilder(6, 1, 0)
    builder.add_dev(new_dev(ip="[2001:DB8:0::1]"))
    assert builder.devs[0]["ip"] == "2001:db8::1"


def test_duplicate_address_and_device_is_refused():
    builder = RingBuilder(6, 1, 0)
    builder.add_dev(new_dev())
    with pytest.raises(BuilderError, match="already exists"):
        builder.add_dev(new_dev(zone=2, weight=5))
    builder.add_dev(new_dev(device="other"))  # same server, another disk: fine


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"weight": -1}, "weight"),
        ({"weight": "heavy"}, "weight"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"zone": -1}, "zone"),
        ({"region": 1.5}, "region"),
        ({"ip": "not an ip!"}, "ip"),
        ({"ip": ""}, "ip"),
        ({"device": ""}, "device name"),
        ({"device": "a/b"}, "device name"),
        ({"meta": 5}, "meta"),
        ({"id": -1}, "device id"),
        ({"id": 1 << 21}, "device id"),
        ({"colour": "red"}, "unknown"),
    ],
)
def test_bad_device_fields(change, words):
    builder = RingBuilder(6, 1, 0)
    with pytest.raises(BuilderError, match=words):
        builder.add_dev(new_dev(**change))
    assert builder.devs == []


def test_missing_device_fields():
    builder = RingBuilder(6, 1, 0)
    dev = new_dev()
    del dev["port"]
    with pytest.raises(BuilderError, match="missing.*port"):
        builder.add_dev(dev)
    with pytest.raises(BuilderError, match="dict"):
        builder.add_dev("r1z1-1.2.3.4:6200/d1")


def test_unknown_device_ids_are_refused():
    builder = cluster(6)
    for bad in (99, -1, "0", None, True):
        with pytest.raises(BuilderError, match="no device"):
            builder.remove_dev(bad)
        with pytest.raises(BuilderError, match="no device"):
            builder.set_dev_weight(bad, 1)
        with pytest.raises(BuilderError, match="no device"):
            builder.list_parts([bad])


def test_set_dev_weight():
    builder = cluster(6)
    builder.set_dev_weight(2, 250)
    assert builder.devs[2]["weight"] == 250.0
    with pytest.raises(BuilderError, match="weight"):
        builder.set_dev_weight(2, -3)
    builder.remove_dev(2)
    with pytest.raises(BuilderError, match="removal"):
        builder.set_dev_weight(2, 10)


def test_remove_dev_marks_then_rebalance_drops_and_drains():
    builder = cluster(8)
    builder.rebalance(seed=1)
    builder.remove_dev(4)
    assert builder.devs[4]["weight"] == 0.0
    assert builder.pending_removal == [4]
    with pytest.raises(BuilderError, match="already"):
        builder.remove_dev(4)
    # min_part_hours has not passed, but a removed device drains anyway.
    moved, _, _ = builder.rebalance(seed=2)
    assert builder.devs[4] is None
    assert builder.pending_removal == []
    assert moved == 3 * 256 // 20 or moved > 0
    assert all(4 not in devs for devs in parts_of(builder))
    assert builder.get_ring().devs[4] is None
    builder.validate()
    # The freed id is reused.
    assert builder.add_dev(new_dev()) == 4


def test_search_devs_by_string_or_criteria():
    builder = cluster(6, zones=3, per_zone=2)
    assert [d["id"] for d in builder.search_devs("z2")] == [2, 3]
    assert [d["id"] for d in builder.search_devs({"zone": 2, "device": "d1"})] == [3]
    assert [d["id"] for d in builder.search_devs("d4")] == [4]
    assert builder.search_devs("z9") == []
    assert [d["id"] for d in builder.search_devs("-10.0.1.1")] == [0]
    with pytest.raises(DeviceSpecError):
        builder.search_devs("nonsense!")
    with pytest.raises(DeviceSpecError):
        builder.search_devs(42)


# -- rebalance ---------------------------------------------------------------------------------


def test_rebalance_needs_devices_with_weight():
    builder = RingBuilder(6, 3, 0)
    with pytest.raises(BuilderError, match="no devices"):
        builder.rebalance()
    builder.add_dev(new_dev(weight=0))
    with pytest.raises(BuilderError, match="no devices"):
        builder.rebalance()


def test_rebalance_needs_a_device_per_replica():
    builder = RingBuilder(6, 2.5, 0)
    builder.add_dev(new_dev(device="a"))
    builder.add_dev(new_dev(device="b"))
    with pytest.raises(BuilderError, match="at least 3 devices"):
        builder.rebalance()
    assert not builder.ever_rebalanced


def test_first_rebalance_assigns_every_replica_to_distinct_zones():
    builder = cluster(10)
    moved, balance, dispersion = builder.rebalance(seed=7)
    assert moved == 3 * 1024
    assert builder.ever_rebalanced
    zone = {d["id"]: d["zone"] for d in builder.devs}
    for devs in parts_of(builder):
        assert len(devs) == 3
        assert len({zone[d] for d in devs}) == 3
    assert dispersion == 0.0
    assert balance == builder.get_balance()
    builder.validate()


def test_equal_weights_balance_within_one_percent():
    builder = cluster(12, zones=4, per_zone=3)
    _, balance, _ = builder.rebalance(seed=1)
    assert balance < 1.0
    ideal = 3 * 4096 / 12
    assert all(abs(n - ideal) / ideal < 0.01 for n in counts(builder).values())


def test_weights_set_the_shares():
    builder = cluster(12, zones=4, per_zone=3)
    for dev_id in (0, 3, 6, 9):  # one device per zone: zones stay equal
        builder.set_dev_weight(dev_id, 200)
    _, balance, _ = builder.rebalance(seed=1)
    held = counts(builder)
    assert balance < 1.0
    assert held[0] == pytest.approx(2 * held[1], rel=0.02)


def test_same_seed_same_table_other_seed_other_table():
    tables = []
    for seed in (5, 5, 6):
        builder = cluster(9)
        builder.rebalance(seed=seed)
        builder.pretend_min_part_hours_passed()
        builder.add_dev(new_dev(zone=2))
        builder.rebalance(seed=seed)
        tables.append(table(builder))
    assert tables[0] == tables[1]
    assert tables[0] != tables[2]


def test_fractional_replicas_make_a_short_last_row():
    builder = cluster(8, replicas=2.5)
    moved, _, dispersion = builder.rebalance(seed=1)
    rows = table(builder)
    assert [len(row) for row in rows] == [256, 256, 128]
    assert moved == 640
    assert builder.get_ring().replica_count == 2.5
    assert dispersion == 0.0
    builder.validate()


def test_tiny_fractions_round_to_whole_rows():
    assert ring.builder.row_shape(3.0001, 64) == (3, 0)
    assert ring.builder.row_shape(2.999, 64) == (3, 0)
    assert ring.builder.row_shape(1.25, 64) == (1, 16)


def test_changing_replicas_reshapes_the_table_at_rebalance():
    builder = cluster(8, min_part_hours=0)
    builder.rebalance(seed=1)
    before = table(builder)
    builder.set_replicas(4)
    assert len(table(builder)) == 3  # not until rebalance
    moved, _, _ = builder.rebalance(seed=1)
    after = table(builder)
    assert [len(row) for row in after] == [256] * 4
    assert moved >= 256  # the new replicas, plus any shuffling for balance
    builder.set_replicas(2)
    builder.rebalance(seed=1)
    assert [len(row) for row in table(builder)] == [256, 256]
    assert before != after
    builder.validate()


def test_adding_one_device_moves_about_its_share():
    builder = cluster(14, zones=5, per_zone=20, servers=4)
    builder.rebalance(seed=1)
    builder.pretend_min_part_hours_passed()
    new_id = builder.add_dev(new_dev(zone=3))
    moved, balance, dispersion = builder.rebalance(seed=2)
    share = 3 * (1 << 14) / 101
    assert moved <= 1.1 * share
    assert counts(builder)[new_id] >= 0.99 * share
    assert balance < 1.0 and dispersion == 0.0


def test_min_part_hours_holds_partitions_that_just_moved(monkeypatch):
    clock = [1000]
    monkeypatch.setattr(ring.builder, "current_hour", lambda: clock[0])
    builder = cluster(8, min_part_hours=2)
    builder.rebalance(seed=1)
    builder.add_dev(new_dev(zone=1))
    assert builder.rebalance(seed=2)[0] == 0  # every part was just placed
    assert builder.min_part_hours_remaining() == 2
    clock[0] += 1
    assert builder.rebalance(seed=2)[0] == 0
    clock[0] += 1
    assert builder.min_part_hours_remaining() == 0
    before = parts_of(builder)
    moved, _, _ = builder.rebalance(seed=2)
    assert moved > 0
    after = parts_of(builder)
    changed = [p for p in range(builder.parts) if before[p] != after[p]]
    # At most one replica of any partition moves within min_part_hours.
    for p in changed:
        assert len(set(before[p]) - set(after[p])) == 1
    # ... and those partitions are held again.
    builder.set_dev_weight(0, 300)
    moved_again = builder.rebalance(seed=3)[0]
    again = parts_of(builder)
    assert moved_again > 0
    assert all(again[p] == after[p] for p in changed)


def test_min_part_hours_zero_lets_anything_move():
    builder = cluster(8, min_part_hours=0)
    builder.rebalance(seed=1)
    builder.add_dev(new_dev(zone=1))
    assert builder.rebalance(seed=2)[0] > 0


def test_pretend_min_part_hours_passed_unlocks_everything():
    builder = cluster(8, min_part_hours=24)
    builder.rebalance(seed=1)
    builder.add_dev(new_dev(zone=1))
    assert builder.rebalance(seed=2)[0] == 0
    builder.pretend_min_part_hours_passed()
    assert builder.min_part_hours_remaining() == 0
    assert builder.rebalance(seed=2)[0] > 0


def test_zero_weight_device_drains_as_min_part_hours_allows():
    builder = cluster(8)
    builder.rebalance(seed=1)
    builder.pretend_min_part_hours_passed()
    builder.set_dev_weight(0, 0)
    builder.rebalance(seed=1)
    assert counts(builder)[0] == 0
    assert builder.devs[0] is not None  # still there: weight 0 is not removal


def test_overload_trades_balance_for_dispersion():
    # Zone 1 has 6 equal devices, zones 2 and 3 one each: by weight zone 1 should hold
    # 2.25 replicas of every partition, so some partitions get two replicas there.
    def lopsided(overload):
        builder = RingBuilder(10, 3, 0)
        for i in range(6):
            builder.add_dev(new_dev(zone=1, ip=f"10.0.1.{i}", device="d"))
        builder.add_dev(new_dev(zone=2, ip="10.0.2.1", device="d"))
        builder.add_dev(new_dev(zone=3, ip="10.0.3.1", device="d"))
        builder.set_overload(overload)
        return builder, builder.rebalance(seed=1)

    _, (_, balance, at_zero) = lopsided(0.0)
    assert balance < 1.0 and at_zero > 50
    builder, (_, balance, at_half) = lopsided(0.5)
    held = counts(builder)
    share = 3 * 1024 / 8
    # The small zones' devices take up to 50% more than their weight share, no more.
    assert 1.45 * share < held[6] <= 1.5 * share + 1
    assert 0 < at_half < at_zero
    builder, (_, balance, dispersion) = lopsided(10.0)
    assert dispersion == 0.0
    assert counts(builder)[6] == 1024  # one replica of every partition
    assert balance > 100


def test_replicas_spread_over_regions_first():
    builder = RingBuilder(8, 3, 0)
    for region in (1, 2, 3):
        for zone in (1, 2):
            builder.add_dev(new_dev(region=region, zone=zone, ip=f"10.{region}.{zone}.1"))
    builder.rebalance(seed=1)
    region = {d["id"]: d["region"] for d in builder.devs}
    assert all(len({region[d] for d in devs}) == 3 for devs in parts_of(builder))


def test_replicas_spread_over_servers_then_devices_in_one_zone():
    builder = RingBuilder(8, 3, 0)
    for server in range(3):
        for disk in range(4):
            builder.add_dev(new_dev(ip=f"10.0.0.{server}", device=f"d{disk}"))
    builder.rebalance(seed=1)
    ip = {d["id"]: d["ip"] for d in builder.devs}
    assert all(len({ip[d] for d in devs}) == 3 for devs in parts_of(builder))


def test_more_replicas_than_zones_doubles_up_evenly():
    builder = cluster(8, replicas=3, zones=2, per_zone=4)
    _, _, dispersion = builder.rebalance(seed=1)
    zone = {d["id"]: d["zone"] for d in builder.devs}
    for devs in parts_of(builder):
        assert sorted(sum(1 for d in devs if zone[d] == z) for z in (1, 2)) == [1, 2]
    assert dispersion == 0.0


def lopsided(part_power, servers, seed):
    """A rebalanced 3-replica builder over equal devices on ``(region, zone, server)``."""
    builder = RingBuilder(part_power, 3, 1)
    for i, (region, zone, server) in enumerate(servers):
        ip = f"10.{region}.{zone}.{server}"
        builder.add_dev(new_dev(region=region, zone=zone, ip=ip, device=f"d{i}"))
    builder.rebalance(seed=seed)
    return builder


def test_a_partition_short_in_two_tiers_gets_a_replica_in_each():
    # Zones r2z2 and r2z4 have a third of the devices each, so every partition keeps a
    # replica in both. One first placed outside both needs two replicas moved, not
    # one; left short, its extra replica stays on devices then over their share.
    servers = [(1, 1, 1), (2, 1, 1), *[(2, 2, 1)] * 3, (2, 3, 1), *[(2, 4, 1)] * 3]
    builder = lopsided(7, servers, seed=1)
    for devs in parts_of(builder):
        zones = [servers[d][:2] for d in devs]
        assert (2, 2) in zones and (2, 4) in zones
    assert all(abs(n - 3 * 128 / 9) < 1 for n in counts(builder).values())


def test_floors_of_nested_tiers_are_met_together():
    # Region 1 keeps two replicas of every partition, one of them on server 10.1.1.1
    # (three of its six devices). A partition with both region 1 replicas on other
    # servers and none in region 2 is short one replica at each level, but needs two.
    servers = [*[(1, 1, 1)] * 3, *[(1, 1, 2)] * 2, (1, 1, 3), (2, 1, 1), (2, 1, 2), (2, 1, 3)]
    builder = lopsided(8, servers, seed=2)
    for devs in parts_of(builder):
        held = [servers[d] for d in devs]
        assert held.count((1, 1, 1)) == 1
        assert sum(1 for s in held if s[0] == 2) == 1


# -- reports -----------------------------------------------------------------------------------


def test_balance_and_dispersion_before_any_rebalance():
    assert RingBuilder(6, 3, 0).get_balance() == 0.0
    builder = cluster(6)
    assert builder.get_balance() == 100.0  # every device holds nothing yet
    assert builder.get_dispersion() == 0.0
    assert builder.dispersion_report()["tiers"] == {}


def test_dev_balance_reports_each_device():
    builder = cluster(10)
    builder.rebalance(seed=1)
    per_dev = builder.dev_balance()
    assert set(per_dev) == {d["id"] for d in builder.devs}
    assert max(abs(v) for v in per_dev.values()) == builder.get_balance()


def test_dispersion_report_shape_and_sums():
    builder = cluster(8, zones=3, per_zone=2, servers=2)
    builder.rebalance(seed=1)
    report = builder.dispersion_report()
    assert report["dispersion"] == 0.0 and report["parts_at_risk"] == 0
    assert (report["parts"], report["replicas"]) == (256, 3.0)
    tiers = report["tiers"]
    assert list(tiers)[:4] == ["r1", "r1z1", "r1z2", "r1z3"]
    assert "r1z1-10.0.1.1" in tiers and "r1z1-10.0.1.1:6200/d0" in tiers
    assert tiers["r1"] == {
        "level": "region",
        "max_replicas": 3,
        "placed_replicas": 768,
        "parts_at_risk": 0,
        "replicas": [0, 0, 0, 256],
    }
    for name, tier in tiers.items():
        assert sum(tier["replicas"]) == 256, name
        if tier["level"] == "zone":
            assert tier["max_replicas"] == 1
            assert tier["replicas"][2:] == [0, 0]
    assert sum(t["placed_replicas"] for t in tiers.values() if t["level"] == "device") == 768


def test_dispersion_report_counts_partitions_at_risk():
    builder = RingBuilder(8, 2, 0)
    for i in range(3):
        builder.add_dev(new_dev(zone=1, ip=f"10.0.1.{i}"))
    builder.add_dev(new_dev(zone=2, ip="10.0.2.1", weight=1))
    _, _, dispersion = builder.rebalance(seed=1)
    report = builder.dispersion_report()
    assert dispersion > 0
    assert report["parts_at_risk"] == round(dispersion * 256 / 100)
    assert report["tiers"]["r1z1"]["parts_at_risk"] == report["parts_at_risk"]


def test_list_parts_counts_replicas_on_the_devices_most_first():
    builder = cluster(6, zones=3, per_zone=2, servers=2)
    builder.rebalance(seed=1)
    listing = builder.list_parts([0, 2])
    assert listing == sorted(listing, key=lambda item: (-item[1], item[0]))
    expected = {}
    for part, devs in enumerate(parts_of(builder)):
        n = sum(1 for d in devs if d in (0, 2))
        if n:
            expected[part] = n
    assert dict(listing) == expected
    assert builder.list_parts([]) == []


# -- validate ------------------------------------------------------------------------------------


def test_validate_a_good_ring_and_a_never_rebalanced_one():
    builder = cluster(6)
    with pytest.raises(BuilderError, match="never been rebalanced"):
        builder.validate()
    builder.rebalance(seed=1)
    builder.validate()


def corrupt(builder, row, part, value):
    builder._table[row][part] = value  # white-box: validate exists to catch this


def test_validate_finds_an_unassigned_replica():
    builder = cluster(6)
    builder.rebalance(seed=1)
    corrupt(builder, 1, 5, -1)
    with pytest.raises(BuilderError, match="replica 1 of partition 5 is unassigned"):
        builder.validate()


def test_validate_finds_two_replicas_on_one_device():
    builder = cluster(6)
    builder.rebalance(seed=1)
    corrupt(builder, 2, 7, builder._table[0][7])
    with pytest.raises(BuilderError, match="partition 7 has two replicas on device"):
        builder.validate()


def test_validate_finds_a_device_out_of_range_or_removed():
    builder = cluster(6)
    builder.rebalance(seed=1)
    corrupt(builder, 0, 3, 500)
    with pytest.raises(BuilderError, match="device 500, which does not exist"):
        builder.validate()
    builder = cluster(6)
    builder.rebalance(seed=1)
    victim = builder._table[0][3]
    builder.devs[victim] = None
    with pytest.raises(BuilderError, match=f"device {victim}, which does not exist"):
        builder.validate()


def test_validate_finds_a_damaged_device_record():
    builder = cluster(6)
    builder.rebalance(seed=1)
    builder.devs[2]["id"] = 9
    with pytest.raises(BuilderError, match="slot 2 has id 9"):
        builder.validate()


def test_validate_allows_a_device_pending_removal_to_hold_parts():
    builder = cluster(6)
    builder.rebalance(seed=1)
    builder.remove_dev(0)
    builder.validate()


# -- the ring ------------------------------------------------------------------------------------


def test_get_ring_before_rebalance_is_an_error():
    with pytest.raises(BuilderError, match="never been rebalanced"):
        cluster(6).get_ring()


def test_get_ring_carries_devices_and_short_rows(tmp_path):
    builder = cluster(6, replicas=2.5)
    builder.rebalance(seed=1)
    builder.remove_dev(1)
    builder.rebalance(seed=1)
    data = builder.get_ring()
    assert data.part_power == 6
    assert data.devs[1] is None
    assert data.devs[0] == builder.devs[0] and data.devs[0] is not builder.devs[0]
    assert [row.typecode for row in data.replica2part2dev] == ["H"] * 3
    assert [len(row) for row in data.replica2part2dev] == [64, 64, 32]
    path = tmp_path / "object.ring.gz"
    data.save(str(path))
    loaded = RingData.load(str(path))
    assert [list(r) for r in loaded.replica2part2dev] == table(builder)


def test_get_ring_uses_wide_rows_for_huge_device_ids():
    builder = RingBuilder(4, 1, 0)
    builder.add_dev(new_dev(device="a"))
    builder.add_dev(new_dev(device="b", id=70000))
    builder.rebalance(seed=1)
    assert builder.get_ring().replica2part2dev[0].typecode == "I"
    assert 70000 in table(builder)[0]


# -- the builder file --------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    builder = cluster(8, replicas=2.5, min_part_hours=3)
    builder.set_overload(0.125)
    builder.rebalance(seed=1)
    builder.remove_dev(3)
    builder.add_dev(new_dev(zone=2, meta="spare"))
    path = str(tmp_path / "object.builder")
    builder.save(path)
    loaded = RingBuilder.load(path)
    assert (loaded.part_power, loaded.replicas, loaded.min_part_hours) == (8, 2.5, 3)
    assert loaded.overload == 0.125
    assert loaded.devs == builder.devs
    assert loaded.pending_removal == [3]
    assert loaded.version == builder.version
    assert loaded.ever_rebalanced
    assert table(loaded) == table(builder)
    assert loaded.min_part_hours_remaining() == builder.min_part_hours_remaining()
    # A loaded builder rebalances exactly as the original would.
    assert loaded.rebalance(seed=4) == builder.rebalance(seed=4)
    assert table(loaded) == table(builder)


def test_save_of_a_fresh_builder_loads(tmp_path):
    path = str(tmp_path / "b")
    RingBuilder(5, 1, 0).save(path)
    loaded = RingBuilder.load(path)
    assert not loaded.ever_rebalanced and loaded.devs == []


def test_builder_file_is_msgpack_behind_a_magic_and_is_written_atomically(tmp_path):
    builder = cluster(6)
    builder.rebalance(seed=1)
    path = tmp_path / "object.builder"
    builder.save(str(path))
    raw = path.read_bytes()
    assert raw[:4] == b"HNRB"
    assert struct.unpack(">H", raw[4:6]) == (1,)
    record = msgpack.unpackb(raw[6:], raw=False)
    assert record["kind"] == "haneul-ring-builder"
    assert os.listdir(tmp_path) == ["object.builder"]  # no temp file left behind


def record_bytes(**changes):
    builder = cluster(4)
    builder.rebalance(seed=1)
    record = {
        "kind": "haneul-ring-builder",
        "part_power": 4,
        "replicas": 3.0,
        "min_part_hours": 1,
        "overload": 0.0,
        "version": 1,
        "devs": builder.devs,
        "removing": [],
        "table": [row.tobytes() for row in builder._table],
        "last_moved": array("I", [0] * 16).tobytes(),
    }
    record.update(changes)
    record = {k: v for k, v in record.items() if v is not ...}
    return b"HNRB\x00\x01" + msgpack.packb(record, use_bin_type=True)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "bad magic"),
        (b"HNRB", "bad magic"),
        (b"not a builder at all", "bad magic"),
        (gzip.compress(b"HNRG..."), "gzip"),
        (pickle.dumps({"devs": []}), "pickle"),
        (b"HNRB\x00\x02" + msgpack.packb({}), "format version 2"),
        (b"HNRB\x00\x01\xc1\xc1", "corrupt"),
        (b"HNRB\x00\x01" + msgpack.packb([1, 2]), "corrupt"),
        (b"HNRB\x00\x01" + msgpack.packb({"kind": "something-else"}), "corrupt"),
        (record_bytes(devs=...), "missing devs"),
        (record_bytes()[:-7], "corrupt"),
        (record_bytes(part_power=40), "part_power"),
        (record_bytes(replicas="three"), "replicas"),
        (record_bytes(devs="nope"), "devs"),
        (record_bytes(devs=[{"id": 5}]), "device slot 0"),
        (record_bytes(removing=[99]), "no device"),
        (record_bytes(last_moved=b"\x00" * 7), "bad length"),
        (record_bytes(last_moved=b"\x00" * 8), "move stamps"),
        (record_bytes(table=[b"\x00" * 12]), "row 0"),
        (record_bytes(table=[b"\xff\x00\x00\x00" * 16]), "out of range"),
        (record_bytes(table="rows"), "table"),
        (record_bytes(version=-3), "version"),
    ],
)
def test_bad_builder_files_are_one_line_builder_file_errors(tmp_path, content, words):
    path = tmp_path / "object.builder"
    path.write_bytes(content)
    with pytest.raises(BuilderFileError) as err:
        RingBuilder.load(str(path))
    message = str(err.value)
    assert words in message
    assert str(path) in message
    assert "\n" not in message
    assert isinstance(err.value, BuilderError)


def test_missing_builder_file(tmp_path):
    with pytest.raises(BuilderFileError, match="not found"):
        RingBuilder.load(str(tmp_path / "nope.builder"))
    with pytest.raises(BuilderFileError, match="cannot read"):
        RingBuilder.load(str(tmp_path))


def test_a_ring_file_is_not_a_builder_file(tmp_path):
    builder = cluster(4)
    builder.rebalance(seed=1)
    path = str(tmp_path / "object.ring.gz")
    builder.get_ring().save(path)
    with pytest.raises(BuilderFileError, match="gzip"):
        RingBuilder.load(path)
