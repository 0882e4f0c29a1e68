"""Tier arithmetic for the ring builder.

Devices form a tree: region > zone > server (ip) > device. For every tier this module
works out how many replicas of an average partition it should hold:

* *weighted*: its share of the weight (a device never more than 1, since a partition
  can have only one replica on a device; the excess goes to the others);
* *wanted*: as dispersed as the topology allows, each tier taking ``floor`` or ``ceil``
  of an even spread, and following the weights inside those bounds;
* *target*: weighted, moved towards wanted as far as ``overload`` allows: overload is
  how much more than its weight share a device may take to gain dispersion. When the
  weights already allow full dispersion, target == wanted == weighted.

From the targets come the rules the placement honours, per partition: a tier holds at
most its *cap*, ``ceil(target)``, and at least its *floor*, ``floor(target)``, of the
partition's replicas (so a tier meant for 2.25 replicas holds 2 or 3, never 1 or 3 at
random); and each device's count of partition-replicas. A fractional replica count
makes partitions of two sizes, whose caps are chosen together (see ``_plan_caps``).
Separately, the *topology maximum* (weights ignored) is what the dispersion figure is
measured against.
"""

import math

LEVELS = ("region", "zone", "server", "device")
EPSILON = 1e-9


class Topology:
    """The tier tree of a device list and its per-tier replica figures.

    ``tier_of[level][dev_id]`` is the index of the device's tier at that level (-1 for
    an empty slot; at the device level the index is the dev id itself). Per-level lists
    ``weighted``, ``wanted`` and ``target`` are indexed the same way. Only devices with
    weight > 0 count as capacity; a zero-weight device sits in the tree with target 0.
    """

    def __init__(self, devs, replicas, overload):
        self.devs = devs
        self.replicas = replicas
        ndevs = len(devs)
        self.tier_of = [[-1] * ndevs, [-1] * ndevs, [-1] * ndevs, list(range(ndevs))]
        self.names = [[], [], [], [None] * ndevs]
        # children[level][tier] -> tiers one level down; roots -> region tiers
        self.children = [[], [], [], None]
        self.roots = []
        index = [{}, {}, {}]
        present = sorted(
            (d for d in devs if d is not None),
            key=lambda d: (d["region"], d["zone"], d["ip"], d["id"]),
        )
        for dev in present:
            key = (dev["region"], dev["zone"], dev["ip"])
            parent_list = self.roots
            for level in range(3):
                name = key[: level + 1]
                tier = index[level].get(name)
                if tier is None:
                    tier = index[level][name] = len(self.names[level])
                    self.names[level].append(name)
                    self.children[level].append([])
                    parent_list.append(tier)
                self.tier_of[level][dev["id"]] = tier
                parent_list = self.children[level][tier]
            parent_list.append(dev["id"])
            self.names[3][dev["id"]] = (*key, dev["id"])
        self.weights = [0.0] * ndevs
        for dev in present:
            self.weights[dev["id"]] = float(dev["weight"])
        self.live_devs = [d["id"] for d in present if d["weight"] > 0]
        self.capacity = self._sum_up([1 if w > 0 else 0 for w in self.weights])
        self.weighted = self._sum_up(self._weighted_devices())
        self.wanted = self._dispersed()
        self.required_overload = self._required_overload()
        self.target = self._interpolate(overload)
        self._caps = {}
        self._floors = {}

    # -- building blocks ---------------------------------------------------------------

    def _sum_up(self, per_device):
        """Per-level lists of sums of a per-device quantity over each tier."""
        out = [None, None, None, list(per_device)]
        for level in (2, 1, 0):
            below = out[level + 1]
            out[level] = [sum(below[c] for c in kids) for kids in self.children[level]]
        return out

    def _weighted_devices(self):
        """Replicas per device by weight, capped at 1 with the excess spread on the rest."""
        result = [0.0] * len(self.weights)
        pool = list(self.live_devs)
        remaining = float(self.replicas)
        while pool and remaining > EPSILON:
            total = sum(self.weights[d] for d in pool)
            full = [d for d in pool if remaining * self.weights[d] / total >= 1.0 - EPSILON]
            if not full:
                for d in pool:
                    result[d] = remaining * self.weights[d] / total
                break
            for d in full:
                result[d] = 1.0
            remaining -= len(full)
            pool = [d for d in pool if result[d] < 1.0]
        return result

    def _dispersed(self):
        """Per-level wanted replicas: as even as the topology allows, by weight within."""
        wanted = [[0.0] * len(self.names[level]) for level in range(3)]
        wanted.append([0.0] * len(self.weights))

        def place(amount, kids, level):
            kids = [k for k in kids if self.capacity[level][k] > 0]
            if not kids:
                return
            caps = [self.capacity[level][k] for k in kids]
            even = spread_evenly(amount, caps)
            lows = [math.floor(e + EPSILON) for e in even]
            highs = [min(c, math.ceil(e - EPSILON)) for c, e in zip(caps, even, strict=True)]
            weights = [self.weighted[level][k] for k in kids]
            for kid, value in zip(
                kids, bounded_proportional(amount, weights, lows, highs), strict=True
            ):
                wanted[level][kid] = value
                if level < 3:
                    place(value, self.children[level][kid], level + 1)

        place(float(self.replicas), self.roots, 0)
        return wanted

    def _required_overload(self):
        """The overload at which every device could hold its fully dispersed share."""
        worst = 0.0
        for d in self.live_devs:
            weighted = self.weighted[3][d]
            if weighted > 0:
                worst = max(worst, self.wanted[3][d] / weighted - 1.0)
        return worst

    def _interpolate(self, overload):
        if self.required_overload <= EPSILON:
            return [list(level) for level in self.wanted]
        share = min(1.0, overload / self.required_overload)
        return [
            [w + share * (d - w) for w, d in zip(weighted, wanted, strict=True)]
            for weighted, wanted in zip(self.weighted, self.wanted, strict=True)
        ]

    # -- what the placement uses ---------------------------------------------------------

    def caps(self, count):
        """Per-level caps: the most replicas of a ``count``-replica partition a tier may
        hold. A tier with no capacity (only zero-weight devices) has cap 0."""
        if count not in self._caps:
            self._caps.update(self._plan_caps(count))
        return self._caps[count]

    def _plan_caps(self, count):
        """Caps for the two kinds of partition a fractional count makes (``lo`` and
        ``hi = lo + 1`` replicas, a fraction ``f`` of them ``hi``), chosen together.

        A tier must be able to hold its target on average, ``f * cap_hi + (1 - f) *
        cap_lo >= target``; within that, caps stay at or under the topology's own
        maximum where they can (so dispersion is as good as the weights allow), and
        as tight as possible. Whole counts reduce to ``ceil(target)``. Any other count
        (not one the table uses) gets ``ceil(target * count / replicas)``.
        """
        lo = int(self.replicas + EPSILON)
        frac = self.replicas - lo
        if frac < EPSILON:
            lo, frac = round(self.replicas), 0.0
        counts = [lo, lo + 1] if frac else [lo]
        if count not in counts:
            counts, frac = [count], 0.0
            scale = count / self.replicas
        else:
            scale = 1.0
        limits = [self.topology_max(n) for n in counts]
        plans = {n: [] for n in counts}
        for level in range(4):
            rows = [[] for _ in counts]
            for tier, capacity in enumerate(self.capacity[level]):
                target = self.target[level][tier] * scale
                if capacity == 0:
                    chosen = [0] * len(counts)
                elif not frac:
                    chosen = [min(capacity, max(1, math.ceil(target - EPSILON)))]
                else:
                    lims = [limit[level][tier] for limit in limits]
                    chosen = _pair_caps(target, self.replicas, counts, capacity, lims, frac)
                for row, cap in zip(rows, chosen, strict=True):
                    row.append(cap)
            for n, row in zip(counts, rows, strict=True):
                plans[n].append(row)
        for n in counts:
            self._widen(plans[n], n, self.roots, 0)
        if frac:
            self._share_caps(plans, counts, frac, limits)
            for n in counts:
                self._widen(plans[n], n, self.roots, 0)
        return plans

    def _share_caps(self, plans, counts, frac, limits):
        """Raise paired caps until siblings together can hold their targets on average.

        Each tier's caps cover its own target, but siblings share their parent's cap:
        servers targeted 1.46 and 1.17 with caps (1, 2) each, under a region capped at
        (3, 3), hold at most 2 or 3 together, short of their 2.63 on average, and the
        rest would spill onto devices past their weight. Groups are the siblings taken
        in order of target (the likeliest to be short), top level first so a parent's
        caps are settled before its children are checked; a raise goes where it keeps
        within the topology maximum if it can, else to the biggest target.
        """
        shares = [1 - frac, frac]

        def settle(kids, level, parent):
            kids = sorted(
                (k for k in kids if self.capacity[level][k] > 0),
                key=lambda k: -self.target[level][k],
            )
            for end in range(1, len(kids) + 1):
                group = kids[:end]
                want = sum(self.target[level][k] for k in group)
                while True:
                    held = [
                        min(parent[i], sum(plans[n][level][k] for k in group))
                        for i, n in enumerate(counts)
                    ]
                    if sum(s * h for s, h in zip(shares, held, strict=True)) >= want - EPSILON:
                        break
                    options = []
                    for i, n in enumerate(counts):
                        if held[i] >= parent[i]:
                            continue  # the parent is full here: raising a child gains nothing
                        for k in group:
                            cap = plans[n][level][k]
                            top = min(n, self.capacity[level][k])
                            if i == 0:
                                top = min(top, plans[counts[1]][level][k])  # cap_lo <= cap_hi
                            if cap < top:
                                excess = cap + 1 > limits[i][level][k]
                                options.append((excess, -self.target[level][k], i, k))
                    if not options:
                        break
                    _, _, i, k = min(options)
                    plans[counts[i]][level][k] += 1
            if level < 3:
                for k in kids:
                    caps = [plans[n][level][k] for n in counts]
                    settle(self.children[level][k], level + 1, caps)

        settle(self.roots, 0, counts)

    def floors(self, count):
        """Per level ``{tier: floor}``: a ``count``-replica partition puts at least
        ``floor(target * count / replicas)`` replicas in the tier. Caps alone would let
        a tier meant for 2.25 replicas of each partition hold 3 of some and 1 of others;
        with floors it holds 2 or 3, as evenly as the weights allow.

        Only floors that bind are listed: positive, on a tier with a live sibling (an
        only child holds whatever its parent does). Children's floors never add up to
        more than their parent's, so they can always be met together. Floors apply to
        whole replica counts only.
        """
        whole = abs(self.replicas - round(self.replicas)) < EPSILON
        if not whole or count != round(self.replicas):
            # With a fractional count the two kinds of partition share a target, and
            # per-kind floors can contradict what the sibling caps already force.
            return [{} for _ in range(4)]
        if count not in self._floors:
            caps = self.caps(count)
            scale = count / self.replicas
            floors = [
                [
                    min(caps[level][t], math.floor(target * scale + EPSILON)) if cap else 0
                    for t, (cap, target) in enumerate(
                        zip(self.capacity[level], self.target[level], strict=True)
                    )
                ]
                for level in range(4)
            ]
            binding = [{} for _ in range(4)]

            def settle(parent_floor, kids, level):
                kids = [k for k in kids if self.capacity[level][k] > 0]
                row = floors[level]
                for kid in sorted(kids, key=lambda k: row[k]):
                    if sum(row[k] for k in kids) <= parent_floor:
                        break
                    row[kid] = max(0, row[kid] - (sum(row[k] for k in kids) - parent_floor))
                for kid in kids:
                    if row[kid] > 0 and len(kids) > 1:
                        binding[level][kid] = row[kid]
                    if level < 3:
                        settle(row[kid], self.children[level][kid], level + 1)

            settle(count, self.roots, 0)
            self._floors[count] = binding
        return self._floors[count]

    def _widen(self, caps, parent_cap, kids, level):
        """Raise children's caps until they add up to their parent's, so a partition
        can always be placed whole."""
        kids = [k for k in kids if self.capacity[level][k] > 0]
        row = caps[level]
        by_target = sorted(kids, key=lambda k: -self.target[level][k])
        while sum(row[k] for k in kids) < parent_cap:
            grown = False
            for kid in by_target:
                if row[kid] < self.capacity[level][kid]:
                    row[kid] += 1
                    grown = True
                    if sum(row[k] for k in kids) >= parent_cap:
                        break
            if not grown:
                break
        if level < 3:
            for kid in kids:
                self._widen(caps, row[kid], self.children[level][kid], level + 1)

    def topology_max(self, count):
        """Per-level most replicas of a ``count``-replica partition a tier may hold if the
        partition were spread as widely as the tree allows (weights ignored)."""
        out = [[0] * len(self.names[level]) for level in range(3)]
        out.append([0] * len(self.weights))

        def place(amount, kids, level):
            kids = [k for k in kids if self.capacity[level][k] > 0]
            if not kids or amount <= 0:
                return
            caps = [self.capacity[level][k] for k in kids]
            even = spread_evenly(amount, caps)
            top = max(even)
            level_cap = math.ceil(top - EPSILON)
            for kid, cap in zip(kids, caps, strict=True):
                value = min(cap, level_cap)
                out[level][kid] = value
                if level < 3:
                    place(value, self.children[level][kid], level + 1)

        place(count, self.roots, 0)
        return out

    def device_counts(self, total, parts, order):
        """Partition-replicas each device should hold: ``target`` scaled so the counts sum
        to exactly ``total`` (largest remainder), none above ``parts``. Ties in the
        remainder go in ``order`` (a tier-interleaved device order), so extras spread."""
        scale = total / self.replicas
        exact = {d: self.target[3][d] * scale for d in self.live_devs}
        counts = [0] * len(self.weights)
        for d, value in exact.items():
            counts[d] = min(parts, int(value + EPSILON))
        rank = {d: i for i, d in enumerate(order)}
        short = total - sum(counts)
        by_remainder = sorted(exact, key=lambda d: (-(exact[d] - counts[d]), rank[d]))
        while short > 0:
            progressed = False
            for d in by_remainder:
                if short == 0:
                    break
                if counts[d] < parts:
                    counts[d] += 1
                    short -= 1
                    progressed = True
            if not progressed:
                break
        return counts

    def ideal_counts(self, total):
        """Partition-replicas per device by weight alone (what balance is measured on)."""
        scale = total / self.replicas
        return {d: self.weighted[3][d] * scale for d in self.live_devs}

    def interleaved_devices(self, rng):
        """Live devices in an order that walks across regions, zones and servers in turn
        (each tier's devices spread evenly through the order), child order shuffled by
        ``rng``. Neighbours in this order are as far apart in the tree as possible."""

        def walk(kids, level):
            kids = [k for k in kids if self.capacity[level][k] > 0]
            rng.shuffle(kids)
            if level == 3:
                return kids
            return stride_merge([walk(self.children[level][k], level + 1) for k in kids])

        return walk(self.roots, 0)


def _pair_caps(target, replicas, counts, capacity, limits, frac):
    """(cap_lo, cap_hi) for one tier; see ``Topology._plan_caps``."""
    lo, hi = counts
    options = []
    for n, limit in zip(counts, limits, strict=True):
        near = math.ceil(target * n / replicas - EPSILON)
        values = {near - 1, near, near + 1, limit}
        options.append(sorted(v for v in values if 1 <= v <= min(n, capacity)))
    best, best_key = None, None
    for cap_lo in options[0]:
        for cap_hi in options[1]:
            if cap_hi < cap_lo or frac * cap_hi + (1 - frac) * cap_lo < target - EPSILON:
                continue
            excess = max(0, cap_lo - limits[0]) + max(0, cap_hi - limits[1])
            key = (excess, cap_lo + cap_hi, cap_hi)
            if best_key is None or key < best_key:
                best, best_key = [cap_lo, cap_hi], key
    return best or [min(lo, capacity), min(hi, capacity)]


def spread_evenly(amount, capacities):
    """Fill children up to a common level: child i gets ``min(capacity_i, level)`` with
    the level chosen so the total is ``amount`` (everything full if it does not fit)."""
    order = sorted(range(len(capacities)), key=capacities.__getitem__)
    remaining = float(amount)
    left = len(capacities)
    level = math.inf
    for i in order:
        cap = capacities[i]
        if cap * left >= remaining:
            level = remaining / left
            break
        remaining -= cap
        left -= 1
    return [min(c, level) for c in capacities]


def bounded_proportional(amount, weights, lows, highs):
    """Values ``clamp(k * weight_i, low_i, high_i)`` summing to ``amount`` (k by bisection)."""
    if amount >= sum(highs) - EPSILON:
        return [float(h) for h in highs]
    if amount <= sum(lows) + EPSILON:
        return [float(lo) for lo in lows]

    def total(k):
        return sum(min(h, max(lo, k * w)) for w, lo, h in zip(weights, lows, highs, strict=True))

    low_k, high_k = 0.0, max(h / w for w, h in zip(weights, highs, strict=True) if w > 0)
    for _ in range(200):
        mid = (low_k + high_k) / 2
        if total(mid) < amount:
            low_k = mid
        else:
            high_k = mid
        if high_k - low_k <= 1e-15 * high_k:
            break
    values = [min(h, max(lo, high_k * w)) for w, lo, h in zip(weights, lows, highs, strict=True)]
    # Put the rounding residue on the child with the most room, so sums stay exact.
    residue = amount - sum(values)
    room = [
        (h - v if residue > 0 else v - lo) for v, lo, h in zip(values, lows, highs, strict=True)
    ]
    best = max(range(len(values)), key=room.__getitem__)
    values[best] += residue
    return values


def stride_merge(sequences):
    """Merge lists so each one's items are spread evenly through the result
    (item j of a list of n sits at about (j + 0.5) / n of the way along)."""
    keyed = []
    for index, seq in enumerate(sequences):
        n = len(seq)
        keyed.extend(((2 * j + 1) / (2 * n), index, item) for j, item in enumerate(seq))
    keyed.sort(key=lambda entry: entry[:2])
    return [item for _, _, item in keyed]
