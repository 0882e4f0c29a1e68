"""Rebalance invariants over random topologies (hypothesis).

Topologies: 1-3 regions, 1-6 zones, 1-4 servers a zone, 3-60 devices, equal or mixed
weights, 1 to 3.5 replicas (never more than devices), part power 6-10.
"""

import math
from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ring.builder import RingBuilder, row_shape

REPLICAS = [1, 1.5, 2, 2.5, 3, 3.5]
# Derandomized: CI runs the same examples every time (a random hunt that finds a new
# counterexample is a bug report, not a red build: run with --hypothesis-seed=<n> to hunt).
PROFILE = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Topology:
    part_power: int
    replicas: float
    devices: list  # (region, zone, server, weight)
    seed: int

    def builder(self, min_part_hours=1, overload=0.0):
        builder = RingBuilder(self.part_power, self.replicas, min_part_hours)
        builder.set_overload(overload)
        for i, (region, zone, server, weight) in enumerate(self.devices):
            builder.add_dev(
                {
                    "region": region,
                    "zone": zone,
                    "ip": f"10.{region}.{zone}.{server}",
                    "port": 6200,
                    "device": f"d{i}",
                    "weight": weight,
                }
            )
        return builder


@st.composite
def topologies(draw, equal_weights=None):
    regions = draw(st.integers(1, 3))
    zones = draw(st.integers(1, 6))
    servers = draw(st.integers(1, 4))
    equal = draw(st.booleans()) if equal_weights is None else equal_weights
    weight = st.just(100.0) if equal else st.sampled_from([25.0, 50.0, 100.0, 200.0, 400.0])
    devices = draw(
        st.lists(
            st.tuples(
                st.integers(1, regions), st.integers(1, zones), st.integers(1, servers), weight
            ),
            min_size=3,
            max_size=60,
        )
    )
    replicas = draw(st.sampled_from([r for r in REPLICAS if math.ceil(r) <= len(devices)]))
    return Topology(draw(st.integers(6, 10)), replicas, devices, draw(st.integers(0, 2**16)))


def parts_of(builder):
    rows = builder.get_ring().replica2part2dev
    return [[row[p] for row in rows if p < len(row)] for p in range(builder.parts)]


def spread_limits(count, capacities):
    """Most replicas of a ``count``-replica partition each child may hold when they are
    spread as evenly as the children's device counts allow (independent of the code
    under test)."""
    level = 0
    while sum(min(c, level) for c in capacities) < count:
        level += 1
    return [min(c, level) for c in capacities]


@PROFILE
@given(topologies())
def test_every_replica_is_assigned_and_no_partition_repeats_a_device(topo):
    builder = topo.builder()
    builder.rebalance(seed=topo.seed)
    builder.validate()
    whole, short = row_shape(topo.replicas, builder.parts)
    rows = builder.get_ring().replica2part2dev
    assert [len(row) for row in rows] == [builder.parts] * whole + ([short] if short else [])
    live = {d["id"] for d in builder.devs if d is not None}
    for devs in parts_of(builder):
        assert len(devs) == len(set(devs))
        assert set(devs) <= live


@PROFILE
@given(topologies(equal_weights=True))
def test_with_room_to_overload_replicas_are_as_dispersed_as_the_topology_allows(topo):
    builder = topo.builder(overload=100.0)
    _, _, dispersion = builder.rebalance(seed=topo.seed)
    assert dispersion == 0.0
    # Check regions and zones independently of the builder's own bookkeeping.
    region_devs = Counter(r for r, _, _, _ in topo.devices)
    zone_devs = Counter((r, z) for r, z, _, _ in topo.devices)
    dev_region = {i: d[0] for i, d in enumerate(topo.devices)}
    dev_zone = {i: (d[0], d[1]) for i, d in enumerate(topo.devices)}
    regions = sorted(region_devs)
    for devs in parts_of(builder):
        region_cap = dict(
            zip(regions, spread_limits(len(devs), [region_devs[r] for r in regions]), strict=True)
        )
        held = Counter(dev_region[d] for d in devs)
        assert all(held[r] <= region_cap[r] for r in held)
        for region, n in held.items():
            zones = sorted(z for z in zone_devs if z[0] == region)
            zone_cap = dict(
                zip(zones, spread_limits(n, [zone_devs[z] for z in zones]), strict=True)
            )
            in_zone = Counter(dev_zone[d] for d in devs if dev_region[d] == region)
            assert all(in_zone[z] <= zone_cap[z] for z in in_zone)


@PROFILE
@given(topologies(equal_weights=True))
# Found by hypothesis: a partition placed outside both zones every partition must use
# (r2z2, r2z4) had only one replica moved, and sat on over-full devices for good.
@example(
    Topology(
        7,
        3,
        [(1, 1, 1, 100.0), (2, 1, 1, 100.0), *[(2, 2, 1, 100.0)] * 3, (2, 3, 1, 100.0)]
        + [(2, 4, 1, 100.0)] * 3,
        1,
    )
)
# Found by hypothesis: 3-replica partitions capped the two big servers of region 1 at
# one replica each, so with the 4-replica ones they could not hold their weight share,
# and the rest spilled into region 2.
@example(
    Topology(
        7,
        3.5,
        [(1, 1, 1, 100.0)] * 5
        + [(1, 1, 2, 100.0)] * 4
        + [(1, 1, 3, 100.0)]
        + [(2, 1, 1, 100.0)] * 2,
        0,
    )
)
def test_equal_weights_balance(topo):
    builder = topo.builder()
    _, balance, _ = builder.rebalance(seed=topo.seed)
    held = builder.dev_parts()
    ideal = sum(len(row) for row in builder.get_ring().replica2part2dev) / len(topo.devices)
    # Whole partition-replicas: within 3 of the weight share; a fractional replica
    # count whose dispersion rules leave little freedom may need a few more.
    slack = 3 if topo.replicas == int(topo.replicas) else max(8, 0.1 * ideal)
    assert all(abs(n - ideal) <= slack for n in held.values()), (held, ideal)
    assert balance == max(abs(100.0 * n / ideal - 100.0) for n in held.values())


@PROFILE
@given(topologies(), st.data())
def test_same_seed_same_table(topo, data):
    first, second = topo.builder(), topo.builder()
    assert first.rebalance(seed=topo.seed) == second.rebalance(seed=topo.seed)
    assert parts_of(first) == parts_of(second)
    changed = data.draw(st.sets(st.integers(0, len(topo.devices) - 1), max_size=5))
    for builder in (first, second):
        builder.pretend_min_part_hours_passed()
        for dev_id in changed:
            builder.set_dev_weight(dev_id, 33.0)
    assert first.rebalance(seed=7) == second.rebalance(seed=7)
    assert parts_of(first) == parts_of(second)


@PROFILE
@given(topologies(), st.data())
def test_one_replica_of_a_partition_moves_per_min_part_hours(topo, data):
    builder = topo.builder(min_part_hours=1)
    builder.rebalance(seed=topo.seed)
    builder.pretend_min_part_hours_passed()
    ids = range(len(topo.devices))
    weights = st.sampled_from([0.0, 10.0, 100.0, 500.0])
    for dev_id in data.draw(st.sets(st.sampled_from(ids), min_size=1, max_size=8)):
        builder.set_dev_weight(dev_id, data.draw(weights))
    if sum(1 for d in builder.devs if d["weight"] > 0) < math.ceil(topo.replicas):
        return  # not enough devices left to hold the replicas: nothing to test
    before = parts_of(builder)
    builder.rebalance(seed=1)
    after = parts_of(builder)
    moved = {p for p in range(builder.parts) if before[p] != after[p]}
    for p in moved:
        assert sum(1 for a, b in zip(before[p], after[p], strict=True) if a != b) == 1
    # Those partitions are now held for min_part_hours; the rest may still move.
    for dev_id in data.draw(st.sets(st.sampled_from(ids), min_size=1, max_size=8)):
        builder.set_dev_weight(dev_id, data.draw(weights.filter(bool)))
    builder.rebalance(seed=2)
    again = parts_of(builder)
    assert all(again[p] == after[p] for p in moved)


@PROFILE
@given(topologies(), st.data())
def test_a_removed_device_drains_at_once_and_nothing_else_moves(topo, data):
    if len(topo.devices) <= math.ceil(topo.replicas):
        return  # removing a device would leave too few for the replicas
    builder = topo.builder(min_part_hours=24)
    builder.rebalance(seed=topo.seed)
    victim = data.draw(st.integers(0, len(topo.devices) - 1))
    before = parts_of(builder)
    builder.remove_dev(victim)
    builder.rebalance(seed=3)
    after = parts_of(builder)
    assert builder.devs[victim] is None
    for p in range(builder.parts):
        assert victim not in after[p]
        for a, b in zip(before[p], after[p], strict=True):
            # min_part_hours holds every partition, except where the removed device was.
            assert a == b or a == victim
