"""Placing partition-replicas on devices: the working half of ``RingBuilder.rebalance``.

The table is a list of rows, ``rows[r][p]`` = dev id holding replica ``r`` of partition
``p`` (-1 while unassigned); every row has one entry per partition except a shorter last
row for a fractional replica count. One :class:`Placement` runs one rebalance:

1. *gather*: take replicas off devices being removed (always), and off tiers that hold
   more replicas of a partition than their cap (only where ``min_part_hours`` allows);
2. *fill*: an empty table is filled in one sweep from a device sequence that interleaves
   tiers, so neighbouring entries (one partition's replicas) land in different tiers;
3. *place*: each gathered replica goes to the next device in a sequence of the devices
   that are short of their count, skipping those the partition's caps rule out;
4. *balance*: partition-replicas move straight from devices over their count to devices
   under it, where the caps allow; where no direct move fits, along a short chain of
   moves on different partitions (over -> w1 -> ... -> under), until the counts match.

Only the caps, the counts and the partition's current replicas are consulted per move,
so the work is one cheap check per replica touched plus a linear scan or two.
"""

from array import array

from ring.dispersion import (
    UNASSIGNED,
    build_checks,
    dead_flags,
    dev_counts,
    live_tiers,
    positions,
    suspects,
    violation,
)
from ring.tiers import Topology

# How far ahead in the device sequence a replica may look for a device it fits on.
LOOKAHEAD = 64
# Balance passes over the table; later passes see what earlier moves made possible.
BALANCE_PASSES = 2
# Chains of moves: replicas sampled per device, and fit checks in all.
CHAIN_SAMPLE = 48
CHAIN_BUDGET = 300_000


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
        self.fresh = [bytearray(len(row)) for row in rows]
        self.dead = dead_flags(topo)
        self.checks = {}
        self._keys = {}
        for count in {self.nfull, self.nfull + (1 if self.short else 0)}:
            if count:
                self.checks[count] = build_checks(topo, topo.caps(count), count)

    # -- small helpers -----------------------------------------------------------------

    def replica_rows(self, part):
        """Row indexes that hold a replica of ``part``."""
        return range(self.nfull + 1 if part < self.short else self.nfull)

    def _assign(self, r, part, dev):
        self.rows[r][part] = dev
        self.fresh[r][part] = 1
        self.counts[dev] += 1
        self.delta[dev] -= 1

    def _unassign(self, r, part):
        dev = self.rows[r][part]
        self.rows[r][part] = UNASSIGNED
        self.counts[dev] -= 1
        self.delta[dev] += 1
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

    def gather_dispersion(self, forced):
        """Unassign replicas that put a tier over its cap (where min_part_hours allows)."""
        rows, dead = self.rows, self.dead
        for part in suspects(rows, self.parts, self.topo, self.topo.caps):
            replica_rows = self.replica_rows(part)
            checks = self.checks[len(replica_rows)]
            devs = [rows[r][part] for r in replica_rows]
            devs = [d for d in devs if d != UNASSIGNED]
            if violation(devs, checks, dead) is not None:
                self._fix_part(part, checks, forced)

    def _fix_part(self, part, checks, forced):
        rows, fresh = self.rows, self.fresh
        while True:
            slots = [(r, rows[r][part]) for r in self.replica_rows(part)]
            slots = [(r, d) for r, d in slots if d != UNASSIGNED]
            found = violation([d for _, d in slots], checks, self.dead)
            if found is None:
                return
            tier_of, tier = found
            if tier_of is None:
                candidates = [(r, d) for r, d in slots if d == tier]
            else:
                candidates = [(r, d) for r, d in slots if tier_of[d] == tier]
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
            checks = self.checks[len(self.replica_rows(part))]
            devs = [rows[r][part] for r in self.replica_rows(part)]
            devs = [d for d in devs if d != UNASSIGNED]
            for r in forced[part]:
                while ptr < end_seq and delta[seq[ptr]] <= 0:
                    ptr += 1
                chosen = UNASSIGNED
                for i in range(ptr, min(end_seq, ptr + LOOKAHEAD)):
                    dev = seq[i]
                    if delta[dev] > 0 and fits(devs, dev, checks):
                        seq[i] = seq[ptr]
                        seq[ptr] = dev
                        ptr += 1
                        chosen = dev
                        break
                if chosen == UNASSIGNED:
                    chosen = self._best_device(devs, len(self.replica_rows(part)))
                self._assign(r, part, chosen)
                devs.append(chosen)

    def _best_device(self, devs, count):
        """The fallback when no short device in reach fits: the most wanting device that
        fits; failing that, the one that overfills the fewest caps (highest tiers
        first), then shares the fewest tiers, then is the most wanting."""
        topo, delta = self.topo, self.delta
        keys = self._tier_keys(count)[0]
        full = self._blocked(devs, count)
        fitting = [d for d in topo.live_devs if full.isdisjoint(keys[d])]
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
        """Move replicas from devices over their count to devices under it: first
        directly, then along chains of moves where no direct move fits."""
        for _ in range(BALANCE_PASSES):
            short = sum(d for d in self.delta if d > 0)
            # Another pass is worth its scan only after one that got somewhere.
            if self._direct_moves() * 10 < short:
                break
        if any(d > 0 for d in self.delta):
            self._chain_moves()

    def _direct_moves(self):
        """One pass over the table; returns the number of moves made."""
        rows, delta, fresh, locked = self.rows, self.delta, self.fresh, self.locked
        unders = sorted((d for d in self.orders[0] if delta[d] > 0), key=lambda d: -delta[d])
        short = sum(delta[d] for d in unders)
        # Short devices grouped by their top checked tier: one set test skips a group.
        groups = {}
        for count in self.checks:
            keys = self._tier_keys(count)[0]
            by_top = {}
            for u in unders:
                by_top.setdefault(keys[u][:1], []).append(u)
            groups[count] = [(top[0] if top else None, members) for top, members in by_top.items()]
        progress = 0
        for i, part in enumerate(self._walk() if short else ()):
            replica_rows = self.replica_rows(part)
            devs = [rows[r][part] for r in replica_rows]
            overs = [
                r
                for r, d in zip(replica_rows, devs, strict=True)
                if delta[d] < 0 and (fresh[r][part] or not locked[part])
            ]
            if not overs:
                continue
            count = len(replica_rows)
            keys = self._tier_keys(count)[0]
            # Start from a different replica each time, so no row is favoured.
            turn = i % len(overs)
            for r in overs[turn:] + overs[:turn]:
                full = self._blocked([d for d in devs if d != rows[r][part]], count)
                target = UNASSIGNED
                for top, members in groups[count]:
                    if top in full:
                        continue
                    for u in members:
                        if delta[u] > 0 and full.isdisjoint(keys[u]):
                            target = u
                            break
                    if target != UNASSIGNED:
                        break
                if target != UNASSIGNED:
                    self._move(r, part, target)
                    short -= 1
                    progress += 1
                    break
            if not short:
                break
        return progress

    def _tier_keys(self, count):
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

    def _blocked(self, devs, count):
        """The ``(check index, tier)`` keys a new replica of a ``count``-replica partition
        on ``devs`` may not enter: a device fits iff none of its keys is in the set. One
        pass over the partition, then a set test per candidate device."""
        _, unit_keys, counted = self._tier_keys(count)
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

    def _move(self, r, part, dev):
        self._unassign(r, part)
        self._assign(r, part, dev)

    def _chain_moves(self):
        """Shift surplus along chains where no direct move fits: part p1 moves a replica
        from an over-full device to w1, p2 from w1 to w2, ..., and the last part onto a
        short device; every device in between keeps its count.

        One scan of the table indexes every movable replica by device and notes, for
        each short device, replicas that could move onto it (these can be rare: "the
        parts that lack this zone"). A breadth-first search from the over-full devices,
        over sampled replicas, then stops at any device that is short or can feed one.
        The search is bounded by ``CHAIN_BUDGET`` fit checks in all.
        """
        rows, delta, fresh, locked = self.rows, self.delta, self.fresh, self.locked
        unders = [u for u in self.orders[0] if delta[u] > 0]
        slots = {dev: [] for dev in range(len(delta))}
        feeds = {}  # device w -> [(part, row, short device u)]
        fed = dict.fromkeys(unders, 0)
        for part in self._walk():
            replica_rows = self.replica_rows(part)
            if not (any(fresh[r][part] for r in replica_rows) or not locked[part]):
                continue
            devs = [rows[r][part] for r in replica_rows]
            count = len(replica_rows)
            keys = self._tier_keys(count)[0]
            for r, dev in zip(replica_rows, devs, strict=True):
                if not (fresh[r][part] or not locked[part]):
                    continue
                slots[dev].append((part, r))
                wanting = [u for u in unders if fed[u] < CHAIN_SAMPLE]
                if not wanting:
                    continue
                full = self._blocked([d for d in devs if d != dev], count)
                for u in wanting:
                    if full.isdisjoint(keys[u]):
                        feeds.setdefault(dev, []).append((part, r, u))
                        fed[u] += 1
        budget = [CHAIN_BUDGET]
        misses = 0
        while any(d > 0 for d in delta) and budget[0] > 0 and misses < 3:
            path = self._find_chain(slots, feeds, budget)
            if not path:
                misses += 1  # the search samples, so another try may still succeed
                continue
            for r, part, dev in path:
                self._move(r, part, dev)
                slots[dev].append((part, r))

    def _feed(self, w, feeds, on_path):
        """A still-valid move of a replica on ``w`` onto a short device, or None."""
        rows, delta = self.rows, self.delta
        for part, r, u in feeds.get(w, ()):
            if delta[u] <= 0 or part in on_path or rows[r][part] != w:
                continue
            if not (self.fresh[r][part] or not self.locked[part]):
                continue  # moved since the scan
            replica_rows = self.replica_rows(part)
            others = [rows[x][part] for x in replica_rows if x != r]
            if fits(others, u, self.checks[len(replica_rows)]):
                return r, part, u
        return None

    def _find_chain(self, slots, feeds, budget):
        rows, delta, fresh, locked = self.rows, self.delta, self.fresh, self.locked
        sources = sorted((d for d in slots if delta[d] < 0), key=lambda d: delta[d])
        parent = {dev: None for dev in sources}
        unseen = sorted(
            (d for d in self.topo.live_devs if d not in parent), key=lambda d: -delta[d]
        )
        for w in (queue := list(sources)):
            on_path, step = set(), parent[w]
            while step is not None:
                on_path.add(step[1])
                step = parent[step[0]]
            last = self._feed(w, feeds, on_path)
            if last is not None:
                return [last, *self._trace(parent, w)]
            bucket, tried = slots[w], 0
            # Random picks: a device's slots are in partition order, and the useful
            # partitions often sit together, so a window of them could miss them all.
            for _ in range(2 * CHAIN_SAMPLE if bucket else 0):
                part, r = bucket[self.rng.randrange(len(bucket))]
                if rows[r][part] != w or part in on_path:
                    continue
                if not (fresh[r][part] or not locked[part]):
                    continue
                tried += 1
                if tried > CHAIN_SAMPLE or budget[0] <= 0:
                    break
                replica_rows = self.replica_rows(part)
                others = [rows[x][part] for x in replica_rows if x != r]
                checks = self.checks[len(replica_rows)]
                for x in list(unseen):
                    budget[0] -= 1
                    if fits(others, x, checks):
                        parent[x] = (w, part, r)
                        unseen.remove(x)
                        if delta[x] > 0:
                            return self._trace(parent, x)
                        queue.append(x)
                        # A part carries one replica along the chain at most.
                        break
        return None

    @staticmethod
    def _trace(parent, dev):
        """The moves ``(row, part, to device)`` of the chain ending at ``dev``."""
        path = []
        while parent[dev] is not None:
            w, part, r = parent[dev]
            path.append((r, part, dev))
            dev = w
        return path

    def _walk(self):
        """Every partition once, in a seeded pseudo-random order."""
        parts = self.parts
        start = self.rng.randrange(parts)
        stride = self.rng.randrange(parts) | 1  # odd, so the walk visits every part
        mask = parts - 1
        return ((start + i * stride) & mask for i in range(parts))
