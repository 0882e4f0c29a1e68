"""Placing partition-replicas on devices: the working half of ``RingBuilder.rebalance``.

The table is a list of rows, ``rows[r][p]`` = dev id holding replica ``r`` of partition
``p`` (-1 while unassigned); every row has one entry per partition except a shorter last
row for a fractional replica count. Each tier may hold at most its *cap* and at least
its *floor* of a partition's replicas (:mod:`ring.tiers`), and each device should hold
its count. One :class:`Placement` runs one rebalance:

1. *gather*: take replicas off devices being removed (always), and off tiers that break
   a cap or floor (only where ``min_part_hours`` allows);
2. *fill*: an empty table is filled in one sweep from a device sequence that interleaves
   tiers, so neighbouring entries (one partition's replicas) land in different tiers;
3. *place*: each gathered replica goes to the next device in a sequence of the devices
   that are short of their count, skipping those the partition's rules rule out;
4. *balance*: replicas move straight from devices over their count to devices under
   it; then, if devices are still short, a relaxed pass also moves replicas out of
   over-full tiers (the next ordinary pass refills within the tier); what is left goes
   along chains of moves (:mod:`ring.chains`).

Only the rules, the counts and the partition's current replicas are consulted per move,
so the work is one cheap check per replica touched plus a few linear scans.
"""

from array import array

from ring.chains import ChainSearch
from ring.dispersion import (
    UNASSIGNED,
    build_checks,
    build_floors,
    dead_flags,
    dev_counts,
    fits,
    live_tiers,
    positions,
    shortfall,
    suspects,
    violation,
)
from ring.tiers import Topology

# How far ahead in the device sequence a replica may look for a device it fits on.
LOOKAHEAD = 64
# Balance passes over the table; later passes see what earlier moves made possible.
BALANCE_PASSES = 4


def build_sequence(need, orders):
    """Devices, each repeated ``need[dev]`` times, each device's entries spread evenly
    through the sequence, and neighbours as far apart in the tier tree as possible.

    The sequence runs in rounds (a round holds each device at most once); within round
    q the devices follow ``orders[q % len(orders)]``, a tier-interleaved device order.
    Several random orders make the partners a device shares partitions with vary from
    round to round, instead of repeating one fixed pattern.
    """
    rounds = max(need, default=0)
    if rounds <= 0:
        return []
    ndevs = len(need)
    shift = max(1, ndevs).bit_length()
    ranks = []
    for order in orders:
        rank = [0] * ndevs
        for i, dev in enumerate(order):
            rank[dev] = i
        ranks.append(rank)
    nranks = len(ranks)
    keys = []
    for dev, n in enumerate(need):
        if n > 0:
            half = 2 * n
            keys.extend(
                (q << (2 * shift)) | (ranks[q % nranks][dev] << shift) | dev
                for q in (((2 * j + 1) * rounds) // half for j in range(n))
            )
    keys.sort()
    mask = (1 << shift) - 1
    return [key & mask for key in keys]


def _level_of(topo, tier_of):
    """The level whose device-to-tier map is ``tier_of``."""
    return next(level for level, mapping in enumerate(topo.tier_of) if mapping is tier_of)


class Placement:
    """One rebalance over ``rows`` (changed in place).

    ``wanted[dev]`` is each device's count of partition-replicas (summing to the number
    of slots); ``locked[p]`` is 1 for partitions whose replicas may not move now (it is
    updated as replicas move, when ``sticky``: at most one replica of a partition moves
    per ``min_part_hours``). Slots filled during this rebalance hold no data yet, so they
    may be moved again freely.
    """

    def __init__(self, rows, parts, topo: Topology, wanted, locked, sticky, rng, orders):
        self.rows = rows
        self.parts = parts
        self.topo = topo
        self.wanted = wanted
        self.locked = locked
        self.sticky = sticky
        self.rng = rng
        self.orders = orders
        self.rank = {dev: i for i, dev in enumerate(orders[0])}
        self.nfull = sum(1 for row in rows if len(row) == parts)
        self.short = len(rows[-1]) if rows and len(rows[-1]) < parts else 0
        self.counts = dev_counts(rows, len(wanted))
        self.delta = [w - c for w, c in zip(wanted, self.counts, strict=True)]
        self._sum_tier_deltas()
        self.fresh = [bytearray(len(row)) for row in rows]
        self.dead = dead_flags(topo)
        self.checks = {}
        self.floors = {}
        self._keys = {}
        for count in {self.nfull, self.nfull + (1 if self.short else 0)}:
            if count:
                self.checks[count] = build_checks(topo, topo.caps(count), count)
                self.floors[count] = build_floors(topo, count)

    # -- small helpers -----------------------------------------------------------------

    def replica_rows(self, part):
        """Row indexes that hold a replica of ``part``."""
        return range(self.nfull + 1 if part < self.short else self.nfull)

    def complete_ok(self, devs, count):
        """Floors hold for a whole partition on ``devs`` (caps are checked apart)."""
        floors = self.floors[count]
        return not floors or not shortfall(devs, floors)

    def _sum_tier_deltas(self):
        """Per level above devices, how far each tier is short (+) or over (-)."""
        self.tier_delta = []
        for level in range(3):
            sums = [0] * len(self.topo.names[level])
            tier_of = self.topo.tier_of[level]
            for dev, d in enumerate(self.delta):
                if tier_of[dev] >= 0:
                    sums[tier_of[dev]] += d
            self.tier_delta.append(sums)

    def _surplus(self, dev):
        """Sort key: replicas on the most over-full region, zone, server, device first."""
        tier_of = self.topo.tier_of
        return (*(self.tier_delta[i][tier_of[i][dev]] for i in range(3)), self.delta[dev])

    def _in_surplus(self, dev):
        """The device's region, zone or server holds more than its target."""
        tier_of = self.topo.tier_of
        return any(self.tier_delta[i][tier_of[i][dev]] < 0 for i in range(3))

    def _tier_gain(self, src, dst):
        """Moving a replica from ``src`` to ``dst`` leaves an over-full tier for one that
        is short, at the highest level where the two devices differ."""
        tier_of = self.topo.tier_of
        for i in range(3):
            a, b = tier_of[i][src], tier_of[i][dst]
            if a != b:
                return self.tier_delta[i][a] < 0 < self.tier_delta[i][b]
        return False

    def _assign(self, r, part, dev):
        self.rows[r][part] = dev
        self.fresh[r][part] = 1
        self.counts[dev] += 1
        self.delta[dev] -= 1
        for level, sums in enumerate(self.tier_delta):
            sums[self.topo.tier_of[level][dev]] -= 1

    def _unassign(self, r, part):
        dev = self.rows[r][part]
        self.rows[r][part] = UNASSIGNED
        self.counts[dev] -= 1
        self.delta[dev] += 1
        for level, sums in enumerate(self.tier_delta):
            tier = self.topo.tier_of[level][dev]
            if tier >= 0:  # -1: an empty device slot being drained
                sums[tier] += 1
        if not self.fresh[r][part] and self.sticky:
            self.locked[part] = 1

    # -- the steps ---------------------------------------------------------------------

    def run(self, removed):
        """Gather, fill or place, balance. ``removed`` is a set of dev ids to drain."""
        forced = self.gather_removed(removed)
        if sum(len(v) for v in forced.values()) == sum(len(row) for row in self.rows):
            self.fill_empty()
            forced = {}
        self.gather_dispersion(forced)
        self.place(forced)
        self.balance()

    def gather_removed(self, removed):
        """Unassign every replica on a removed device (min_part_hours does not hold these:
        the device is going away). Returns ``{part: [rows]}`` of all empty slots."""
        forced = {}
        for r, row in enumerate(self.rows):
            # Empty slots first: the ones emptied below must not be found twice.
            for dev in [UNASSIGNED, *removed]:
                for part in positions(row, dev) if dev in row else ():
                    if dev != UNASSIGNED:
                        self._unassign(r, part)
                    forced.setdefault(part, []).append(r)
        return forced

    def fill_empty(self):
        """Fill a completely empty table in one sweep: partition p takes the next
        ``count`` entries of the interleaved device sequence."""
        seq = build_sequence(self.wanted, self.orders)
        width_long = self.nfull + 1
        split = self.short * width_long
        head, tail = seq[:split], seq[split:]
        for r in range(self.nfull):
            column = head[r::width_long] + tail[r :: self.nfull]
            self.rows[r][:] = array(self.rows[r].typecode, column)
        if self.short:
            self.rows[-1][:] = array(self.rows[-1].typecode, head[self.nfull :: width_long])
        for flags in self.fresh:
            flags[:] = b"\x01" * len(flags)
        self.counts = list(self.wanted)
        self.delta = [0] * len(self.wanted)
        self._sum_tier_deltas()

    def gather_dispersion(self, forced):
        """Unassign replicas that put a tier over its cap or under its floor, or sit on
        a device that may hold none (where min_part_hours allows)."""
        rows = self.rows
        for part in suspects(rows, self.parts, self.topo, self.topo.caps, with_floors=True):
            replica_rows = self.replica_rows(part)
            count = len(replica_rows)
            devs = [rows[r][part] for r in replica_rows]
            devs = [d for d in devs if d != UNASSIGNED]
            if self._broken(devs, count) is not None:
                self._fix_part(part, count, forced)

    def _broken(self, devs, count):
        """The first rule a ``count``-replica partition now on ``devs`` breaks (see
        :func:`ring.dispersion.violation`), or None. Floors count as broken once the
        partition's empty slots are too few to make them up: one freed slot cannot
        give two short tiers a replica each."""
        floors = self.floors[count]
        if floors and shortfall(devs, floors) <= count - len(devs):
            floors = ()
        return violation(devs, self.checks[count], self.dead, floors)

    def _fix_part(self, part, count, forced):
        """Unassign replicas of ``part`` until no rule is broken (or what would have to
        move may not): off dead devices and over-full tiers; and, while tiers are short
        of their floors, replicas from tiers that can spare them, until the empty slots
        are enough to fill every short tier (placing them again will then have to)."""
        rows, fresh = self.rows, self.fresh
        while True:
            slots = [(r, rows[r][part]) for r in self.replica_rows(part)]
            slots = [(r, d) for r, d in slots if d != UNASSIGNED]
            devs = [d for _, d in slots]
            found = self._broken(devs, count)
            if found is None:
                return
            kind, tier_of, tier = found
            if kind == "dead":
                candidates = [(r, d) for r, d in slots if d == tier]
            elif kind == "over":
                candidates = [(r, d) for r, d in slots if tier_of[d] == tier]
            else:
                # Any replica no floor depends on: freeing it leaves the need as it was
                # and gives one more slot to meet it.
                floors = self.floors[count]
                need = shortfall(devs, floors)
                candidates = [
                    (r, d)
                    for r, d in slots
                    if shortfall([x for x in devs if x != d], floors) <= need
                ]
            movable = [
                (not fresh[r][part], self.delta[d], self.rng.random(), r)
                for r, d in candidates
                if fresh[r][part] or not self.locked[part]
            ]
            if not movable:
                return
            r = min(movable)[3]
            self._unassign(r, part)
            forced.setdefault(part, []).append(r)

    def place(self, forced):
        """Put every unassigned slot on a device that is short and fits its partition."""
        if not forced:
            return
        delta, rows = self.delta, self.rows
        seq = build_sequence([max(0, d) for d in delta], self.orders)
        ptr, end_seq = 0, len(seq)
        for part in sorted(forced):
            count = len(self.replica_rows(part))
            checks, floors = self.checks[count], self.floors[count]
            devs = [rows[r][part] for r in self.replica_rows(part)]
            devs = [d for d in devs if d != UNASSIGNED]
            for r in forced[part]:
                # With floors, leave room for the replicas the short tiers still need.
                room = count - len(devs) - 1
                while ptr < end_seq and delta[seq[ptr]] <= 0:
                    ptr += 1
                chosen = UNASSIGNED
                for i in range(ptr, min(end_seq, ptr + LOOKAHEAD)):
                    dev = seq[i]
                    if (
                        delta[dev] > 0
                        and fits(devs, dev, checks)
                        and (not floors or shortfall([*devs, dev], floors) <= room)
                    ):
                        seq[i] = seq[ptr]
                        seq[ptr] = dev
                        ptr += 1
                        chosen = dev
                        break
                if chosen == UNASSIGNED:
                    chosen = self._best_device(devs, count)
                self._assign(r, part, chosen)
                devs.append(chosen)

    def _best_device(self, devs, count):
        """The fallback when no short device in reach fits: the most wanting device that
        fits; failing that, the one that overfills the fewest caps (highest tiers
        first), then shares the fewest tiers, then is the most wanting."""
        topo, delta = self.topo, self.delta
        keys = self.tier_keys(count)[0]
        full = self.blocked(devs, count)
        fitting = [d for d in topo.live_devs if full.isdisjoint(keys[d])]
        floors = self.floors[count]
        if floors:
            room = count - len(devs) - 1
            fitting = [d for d in fitting if shortfall([*devs, d], floors) <= room]
        if fitting:
            return min(fitting, key=lambda d: (-delta[d], self.rank.get(d, 0)))
        checked = {id(tier_of): caps for tier_of, caps in self.checks[count]}
        levels = []
        for tier_of in topo.tier_of[:3]:
            held = {}
            for other in devs:
                held[tier_of[other]] = held.get(tier_of[other], 0) + 1
            levels.append((tier_of, checked.get(id(tier_of)), held))
        best, best_key = UNASSIGNED, None
        for dev in topo.live_devs:
            if dev in devs:
                continue
            over, shared = [], []
            for tier_of, caps, held in levels:
                tier = tier_of[dev]
                n = held.get(tier, 0)
                over.append(0 if caps is None else max(0, n + 1 - caps[tier]))
                shared.append(n)
            key = (over, shared, -delta[dev], self.rank.get(dev, 0))
            if best_key is None or key < best_key:
                best, best_key = dev, key
        return best

    def balance(self):
        """Move replicas from devices over their count to devices under it: directly,
        then by relaxed passes, then along chains of moves (see the module notes)."""
        relaxed = False
        for _ in range(BALANCE_PASSES):
            if not any(d > 0 for d in self.delta):
                return
            # An ordinary pass that leaves devices short has done what it can; a
            # relaxed one may free the way, and the ordinary pass after it refills the
            # devices the relaxed one emptied inside over-full tiers.
            if not self._direct_moves(relaxed) and relaxed:
                break
            relaxed = not relaxed
        if any(d > 0 for d in self.delta):
            ChainSearch(self).run()

    def _direct_moves(self, relaxed=False):
        """One pass over the table; returns the number of moves made.

        ``relaxed``: also move replicas off devices that are not over their count, when
        the move takes a replica out of a region, zone or server over its target into
        one under it (the device then sits short inside an over-full tier, which the
        next ordinary pass fixes from its over-full neighbours). The tiers' own totals
        bound how much moves this way.
        """
        rows, delta, fresh, locked = self.rows, self.delta, self.fresh, self.locked
        unders = sorted((d for d in self.orders[0] if delta[d] > 0), key=lambda d: -delta[d])
        short = sum(delta[d] for d in unders)
        # Short devices grouped by their top checked tier: one set test skips a group.
        groups = {}
        for count in self.checks:
            keys = self.tier_keys(count)[0]
            by_top = {}
            for u in unders:
                by_top.setdefault(keys[u][:1], []).append(u)
            groups[count] = [(top[0] if top else None, members) for top, members in by_top.items()]
        # Devices in an over-full tier, as the pass starts (each move re-checks tiers).
        surplus = bytearray(len(delta))
        for dev in self.topo.live_devs if relaxed else ():
            surplus[dev] = self._in_surplus(dev)
        progress = 0
        for i, part in enumerate(self.walk() if short else ()):
            replica_rows = self.replica_rows(part)
            devs = [rows[r][part] for r in replica_rows]
            overs = [
                r
                for r, d in zip(replica_rows, devs, strict=True)
                if (delta[d] < 0 or surplus[d]) and (fresh[r][part] or not locked[part])
            ]
            if not overs:
                continue
            count = len(replica_rows)
            keys = self.tier_keys(count)[0]
            # Move off the tiers that most need to shrink: a replica that could leave a
            # tier doubled up in this partition is worth more than one that cannot.
            if len(overs) > 1:
                overs.sort(key=lambda r: (self._surplus(devs[r]), (r + i) % count))
            for r in overs:
                others = [d for d in devs if d != rows[r][part]]
                full = self.blocked(others, count)
                target = UNASSIGNED
                for top, members in groups[count]:
                    if top in full:
                        continue
                    for u in members:
                        if (
                            delta[u] > 0
                            and full.isdisjoint(keys[u])
                            and (delta[devs[r]] < 0 or self._tier_gain(devs[r], u))
                            and self.complete_ok([*others, u], count)
                        ):
                            target = u
                            break
                    if target != UNASSIGNED:
                        break
                if target != UNASSIGNED:
                    self.move(r, part, target)
                    short -= 1
                    progress += 1
                    break
            if not short:
                break
        return progress

    def tier_keys(self, count):
        """For ``count``-replica partitions: per dev id its ``(check index, tier)`` keys;
        per dev id its keys on levels where every cap is 1; and the other levels as
        ``(index, tier_of, caps)``. See :meth:`_blocked`."""
        if count not in self._keys:
            checks = self.checks[count]
            ndevs = len(self.wanted)
            unit = [
                i
                for i, (_, caps) in enumerate(checks)
                if all(
                    caps[t] <= 1 for t in live_tiers(self.topo, _level_of(self.topo, checks[i][0]))
                )
            ]
            keys = [
                tuple((i, tier_of[dev]) for i, (tier_of, _) in enumerate(checks))
                for dev in range(ndevs)
            ]
            unit_keys = [tuple(keys[dev][i] for i in unit) for dev in range(ndevs)]
            counted = [
                (i, tier_of, caps) for i, (tier_of, caps) in enumerate(checks) if i not in unit
            ]
            self._keys[count] = (keys, unit_keys, counted)
        return self._keys[count]

    def blocked(self, devs, count):
        """The ``(check index, tier)`` keys a new replica of a ``count``-replica partition
        on ``devs`` may not enter: a device fits iff none of its keys is in the set. One
        pass over the partition, then a set test per candidate device."""
        _, unit_keys, counted = self.tier_keys(count)
        full = set()
        for dev in devs:
            full.update(unit_keys[dev])
        for i, tier_of, caps in counted:
            held = {}
            for dev in devs:
                tier = tier_of[dev]
                held[tier] = held.get(tier, 0) + 1
            for tier, n in held.items():
                if n >= caps[tier]:
                    full.add((i, tier))
        return full

    def move(self, r, part, dev):
        self._unassign(r, part)
        self._assign(r, part, dev)

    def walk(self):
        """Every partition once, in a seeded pseudo-random order."""
        parts = self.parts
        start = self.rng.randrange(parts)
        stride = self.rng.randrange(parts) | 1  # odd, so the walk visits every part
        mask = parts - 1
        return ((start + i * stride) & mask for i in range(parts))
