"""Checking partitions against per-tier caps, and measuring dispersion.

A *check* is a ``(tier_of, caps)`` pair for one level of the tier tree: ``tier_of[dev]``
names the device's tier, ``caps[tier]`` the most replicas of one partition it may hold.
The placement checks against caps derived from targets (:meth:`Topology.caps`); the
dispersion figure checks against the topology's own maximum
(:meth:`Topology.topology_max`), where weights play no part.
"""

from collections import Counter

from ring.devices import format_ip
from ring.tiers import LEVELS

UNASSIGNED = -1


def violation(devs, checks, dead, floors=()):
    """The first broken rule of a partition on ``devs``, or None if it is fine.

    Returns ``("dead", None, dev)`` for a replica on a device that may hold none,
    ``("over", tier_of, tier)`` for the highest tier holding more replicas than its cap,
    and, only if ``floors`` (from :func:`build_floors`) are given, ``("short", tier_of,
    tier)`` for a tier holding fewer than its floor.
    """
    for dev in devs:
        if dead[dev]:
            return "dead", None, dev
    count = len(devs)
    for tier_of, caps in checks:
        ids = [tier_of[d] for d in devs]
        distinct = set(ids)
        if len(distinct) == count:
            # Distinct here means distinct at every level below, where caps are >= 1.
            break
        for tier in distinct:
            if ids.count(tier) > caps[tier]:
                return "over", tier_of, tier
    for tier_of, level_floors, _ in floors:
        ids = [tier_of[d] for d in devs]
        for tier, floor in level_floors.items():
            if ids.count(tier) < floor:
                return "short", tier_of, tier
    return None


def fits(devs, dev, checks):
    """True if ``dev`` can join a partition now on ``devs`` without breaking a cap."""
    if dev in devs:
        return False
    for tier_of, caps in checks:
        tier = tier_of[dev]
        held = 0
        for other in devs:
            if tier_of[other] == tier:
                held += 1
        if held >= caps[tier]:
            return False
    return True


def build_floors(topo, count):
    """``(tier_of, {tier: floor}, up)`` for each level where floors bind, top first;
    ``up[tier]`` is the tier's ancestor at the binding level above (None at the top)."""
    found = []
    above = None
    for level, floors in enumerate(topo.floors(count)):
        if not floors:
            continue
        tier_of = topo.tier_of[level]
        up = None
        if above is not None:
            up = {tier_of[d]: above[d] for d in range(len(tier_of)) if tier_of[d] >= 0}
        found.append((tier_of, floors, up))
        above = tier_of
    return found


def shortfall(devs, floors):
    """Replicas a partition on ``devs`` still needs to meet its floors (``floors`` from
    :func:`build_floors`).

    A tier needs its own deficit or what its children need together, whichever is
    more (one replica counts in every tier above it, but two short children need two);
    the partition needs what its top tiers need together.
    """
    carried = {}  # tier at the level being summed -> what its children need
    for tier_of, level_floors, up in reversed(floors):
        ids = [tier_of[d] for d in devs]
        needs = carried
        for tier, floor in level_floors.items():
            need = floor - ids.count(tier)
            if need > needs.get(tier, 0):
                needs[tier] = need
        if up is None:
            return sum(needs.values())
        carried = {}
        for tier, need in needs.items():
            carried[up[tier]] = carried.get(up[tier], 0) + need
    return 0


def live_tiers(topo, level):
    """Tier indexes at ``level`` that hold at least one device with weight."""
    if level == 3:
        return topo.live_devs
    return [t for t, cap in enumerate(topo.capacity[level]) if cap > 0]


def build_checks(topo, caps, count):
    """The (tier_of, caps) pairs, top level first, worth checking for ``count`` replicas:
    a level where every live tier may hold all ``count`` replicas can never overflow."""
    checks = []
    for level, level_caps in enumerate(caps):
        if any(level_caps[t] < count for t in live_tiers(topo, level)):
            checks.append((topo.tier_of[level], level_caps))
    return checks


def positions(row, value):
    """Indexes of ``value`` in an array, found at C speed."""
    n = row.count(value)
    if n == len(row):
        return list(range(n))
    found, i = [], -1
    for _ in range(n):
        i = row.index(value, i + 1)
        found.append(i)
    return found


def suspects(rows, parts, topo, caps_for, with_floors=False):
    """Partitions that might break a cap (``caps_for(count)`` gives the per-level caps):
    a superset, cheap to find, for the caller to check one by one with :func:`violation`.

    A level where a partition's replicas sit in ``count - c`` or more distinct tiers,
    ``c`` being the level's smallest cap, cannot overflow; and once a level with all
    caps 1 is distinct, so are all levels below it. Testing ``len(set(...))`` per
    partition over mapped rows is far cheaper than counting tiers per partition.
    ``with_floors``: every partition of a count whose floors bind is a suspect too
    (floors bind only in lopsided topologies, so this is rarely the slow path).
    """
    found = set()
    dead = [d for d, w in enumerate(topo.weights) if w <= 0]
    for row in rows:
        for dev in [*dead, UNASSIGNED]:
            if dev in row:
                found.update(positions(row, dev))
    full = [row for row in rows if len(row) == parts]
    partial = [row for row in rows if len(row) < parts]
    short = len(partial[0]) if partial else 0
    groups = []
    if short:
        groups.append((0, len(full) + 1, [row[:short] for row in full] + partial))
    if short < parts:
        groups.append((short, len(full), [row[short:] for row in full]))
    for first, count, group in groups:
        if with_floors and build_floors(topo, count):
            found.update(range(first, first + len(group[0])))
            continue
        caps = caps_for(count)
        for level in range(4):
            live = [caps[level][t] for t in live_tiers(topo, level)]
            lowest = min(live, default=count)
            if lowest >= count:
                continue
            lookup = topo.tier_of[level].__getitem__
            mapped = [list(map(lookup, row)) for row in group]
            if max(live) == 1:
                found.update(
                    p for p, t in enumerate(zip(*mapped, strict=True), first) if len(set(t)) < count
                )
                break
            limit = count - lowest
            found.update(
                p for p, t in enumerate(zip(*mapped, strict=True), first) if len(set(t)) <= limit
            )
    return sorted(found)


def part_columns(rows, parts):
    """Yield ``(first part, replica count, iterator of per-part dev tuples)`` groups."""
    full = [row for row in rows if len(row) == parts]
    partial = [row for row in rows if len(row) < parts]
    short = len(partial[0]) if partial else 0
    # zip() stops at the shortest row: that is how the partial row is cut off.
    if short:
        yield 0, len(full) + 1, zip(*full, partial[0], strict=False)
    if short < parts:
        yield short, len(full), zip(*(row[short:] for row in full), strict=False)


def count_at_risk(rows, parts, topo):
    """Partitions whose replicas sit less dispersed than the topology allows."""
    dead = dead_flags(topo)
    checks = {}
    at_risk = 0
    for part in suspects(rows, parts, topo, topo.topology_max):
        devs = [row[part] for row in rows if len(row) > part]
        devs = [d for d in devs if d != UNASSIGNED]
        count = len(devs)
        if count not in checks:
            checks[count] = build_checks(topo, topo.topology_max(count), count)
        if violation(devs, checks[count], dead) is not None:
            at_risk += 1
    return at_risk


def dead_flags(topo):
    """1 for each dev id that may hold no replicas (weight 0 or an empty slot)."""
    dead = bytearray(len(topo.weights))
    for dev, weight in enumerate(topo.weights):
        if weight <= 0:
            dead[dev] = 1
    return dead


def dev_counts(rows, ndevs):
    """Partition-replicas held per dev id (a list; unassigned slots are not counted)."""
    counts = [0] * ndevs
    for row in rows:
        for dev, n in Counter(row).items():
            if dev != UNASSIGNED:
                counts[dev] += n
    return counts


def dispersion_detail(rows, parts, topo):
    """Per-tier replica histograms; see ``RingBuilder.dispersion_report`` for the shape."""

    def name(level, key):
        region, zone, ip = key[0], key[1] if level else None, key[2] if level > 1 else None
        text = f"r{region}"
        if level >= 1:
            text += f"z{zone}"
        if level >= 2:
            text += f"-{format_ip(ip)}"
        if level == 3:
            dev = topo.devs[key[3]]
            text += f":{dev['port']}/{dev['device']}"
        return text

    hists = [Counter() for _ in range(4)]  # (tier, replicas there) -> partitions
    most = 1
    for _, count, columns in part_columns(rows, parts):
        most = max(most, count)
        for devs in columns:
            for level in range(4):
                tier_of = topo.tier_of[level]
                for tier, held in Counter(tier_of[d] for d in devs if d != UNASSIGNED).items():
                    hists[level][tier, held] += 1
    limits = topo.topology_max(most)
    detail = {}
    for level, level_name in enumerate(LEVELS):
        tiers = range(len(topo.names[level])) if level < 3 else topo.live_devs
        placed = {}
        for (tier, held), n in hists[level].items():
            placed.setdefault(tier, [0] * (most + 1))[held] += n
        for tier in sorted(set(tiers) | set(placed), key=lambda t: topo.names[level][t]):
            counts = placed.get(tier, [0] * (most + 1))
            counts[0] = parts - sum(counts[1:])
            limit = limits[level][tier]
            detail[name(level, topo.names[level][tier])] = {
                "level": level_name,
                "max_replicas": limit,
                "placed_replicas": sum(i * n for i, n in enumerate(counts)),
                "parts_at_risk": sum(n for i, n in enumerate(counts) if i > limit),
                "replicas": counts,
            }
    return detail
