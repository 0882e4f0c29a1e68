"""Balancing moves that take more than one hop (part of a rebalance).

When no replica can move straight from a device over its count to one under it, a
chain may: part p1 moves a replica from an over-full device to w1, part p2 from w1 to
w2, ..., the last part onto a short device; every device in between keeps its count.
Typical case: the short device's zone is already in nearly every partition, so only the
rare partitions without it can take a replica there, and they sit on devices that are
not over.

One scan of the table notes, per device, a few replicas that could move onto a short
device ("feeds": the rare partitions); a breadth-first search from the over-full
devices, over sampled replicas, stops at any device that is short or can feed one.
"""

from ring.dispersion import fits, positions

# Replicas sampled per device, feeds kept per device, and fit checks in all.
CHAIN_SAMPLE = 48
FEEDS_PER_DEVICE = 16
CHAIN_BUDGET = 300_000


class ChainSearch:
    """Chains of moves for one :class:`ring.placement.Placement` (changed in place)."""

    def __init__(self, placement):
        self.pl = placement

    def run(self):
        """Find and make chains until no device is short, or the search gives up (three
        fruitless tries, or ``CHAIN_BUDGET`` fit checks spent)."""
        rows, delta, fresh, locked = self.pl.rows, self.pl.delta, self.pl.fresh, self.pl.locked
        unders = [u for u in self.pl.orders[0] if delta[u] > 0]
        feeds = {}  # device w -> [(part, row, short device u)], a few per w
        for part in self.pl.walk():
            replica_rows = self.pl.replica_rows(part)
            if not (any(fresh[r][part] for r in replica_rows) or not locked[part]):
                continue
            devs = [rows[r][part] for r in replica_rows]
            count = len(replica_rows)
            keys = self.pl.tier_keys(count)[0]
            for r, dev in zip(replica_rows, devs, strict=True):
                if not (fresh[r][part] or not locked[part]):
                    continue
                mine = feeds.setdefault(dev, [])
                if len(mine) >= FEEDS_PER_DEVICE:
                    continue
                others = [d for d in devs if d != dev]
                full = self.pl.blocked(others, count)
                mine.extend(
                    (part, r, u)
                    for u in unders
                    if full.isdisjoint(keys[u]) and self.pl.complete_ok([*others, u], count)
                )
        slots = _SlotIndex(rows)
        budget = [CHAIN_BUDGET]
        misses = 0
        while any(d > 0 for d in delta) and budget[0] > 0 and misses < 3:
            path = self._find(slots, feeds, budget)
            if not path:
                misses += 1  # the search samples, so another try may still succeed
                continue
            for r, part, dev in path:
                self.pl.move(r, part, dev)
                slots.add(dev, part, r)

    def _feed(self, w, feeds, on_path):
        """A still-valid move of a replica on ``w`` onto a short device, or None."""
        rows, delta = self.pl.rows, self.pl.delta
        for part, r, u in feeds.get(w, ()):
            if delta[u] <= 0 or part in on_path or rows[r][part] != w:
                continue
            if not (self.pl.fresh[r][part] or not self.pl.locked[part]):
                continue  # moved since the scan
            replica_rows = self.pl.replica_rows(part)
            others = [rows[x][part] for x in replica_rows if x != r]
            count = len(replica_rows)
            if fits(others, u, self.pl.checks[count]) and self.pl.complete_ok([*others, u], count):
                return r, part, u
        return None

    def _find(self, slots, feeds, budget):
        rows, delta, fresh, locked = self.pl.rows, self.pl.delta, self.pl.fresh, self.pl.locked
        sources = sorted((d for d, n in enumerate(delta) if n < 0), key=lambda d: delta[d])
        parent = {dev: None for dev in sources}
        unseen = sorted(
            (d for d in self.pl.topo.live_devs if d not in parent), key=lambda d: -delta[d]
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
                part, r = bucket[self.pl.rng.randrange(len(bucket))]
                if rows[r][part] != w or part in on_path:
                    continue
                if not (fresh[r][part] or not locked[part]):
                    continue
                tried += 1
                if tried > CHAIN_SAMPLE or budget[0] <= 0:
                    break
                replica_rows = self.pl.replica_rows(part)
                others = [rows[x][part] for x in replica_rows if x != r]
                count = len(replica_rows)
                checks = self.pl.checks[count]
                for x in list(unseen):
                    budget[0] -= 1
                    if fits(others, x, checks) and self.pl.complete_ok([*others, x], count):
                        parent[x] = (w, part, r)
                        unseen.remove(x)
                        if delta[x] > 0:
                            return self._trace(parent, x)
                        last = self._feed(x, feeds, on_path | {part})
                        if last is not None:
                            return [last, *self._trace(parent, x)]
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


class _SlotIndex:
    """``index[dev]``: the (part, row) slots of a device, found when first asked for
    (a C-speed search of each row) and kept up to date as replicas move in."""

    def __init__(self, rows):
        self.rows = rows
        self.found = {}

    def __getitem__(self, dev):
        if dev not in self.found:
            self.found[dev] = [
                (part, r)
                for r, row in enumerate(self.rows)
                for part in (positions(row, dev) if dev in row else ())
            ]
        return self.found[dev]

    def add(self, dev, part, r):
        if dev in self.found:
            self.found[dev].append((part, r))
