"""The read side of the ring: which devices hold a name, and where to go when they fail.

A ``Ring`` is loaded from the file that ``RingBuilder.get_ring().save()`` wrote and is
nearly immutable: a lookup is one MD5, one shift and one array index per replica. It
never imports the builder. When the file on disk is replaced, the next lookup after
``reload_interval`` seconds notices and swaps the new table in whole.

Node dicts handed out by ``get_nodes``/``get_part_nodes`` are shared between calls (so
a lookup allocates nothing but its result list) and therefore read-only; ``dict(node)``
gives a private, mutable copy.
"""

import copy
import functools
import hashlib
import logging
import operator
import os
import struct
import threading
import time
from math import gcd

from common.hashing import load_hash_secrets
from ring.ringfile import RingData, RingFileError

__all__ = ["Ring", "RingFileError"]

DEFAULT_RELOAD_INTERVAL = 15.0
MAX_PART_POWER = 32

_LOG = logging.getLogger(__name__)
_FIRST_WORD = struct.Struct(">I").unpack_from
_MASK64 = (1 << 64) - 1
_monotonic = time.monotonic
# A name's hash places data; it protects nothing (and must work in FIPS mode).
_md5 = functools.partial(hashlib.md5, usedforsecurity=False)


class FrozenNode(dict):
    """A device dict that refuses changes, because every lookup shares the same one.

    Reads cost exactly what a plain dict's do; ``copy``/``deepcopy``/``pickle`` and
    ``dict(node)`` give an ordinary, mutable dict.
    """

    __slots__ = ()

    def _readonly(self, *_args, **_kwargs):
        raise TypeError("ring nodes are shared and read-only; change a copy: dict(node)")

    __setitem__ = __delitem__ = __ior__ = _readonly
    update = pop = popitem = setdefault = clear = _readonly

    def __copy__(self):
        return dict(self)

    def __deepcopy__(self, memo):
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self):
        return (dict, (dict(self),))


def _mix(value):
    """A cheap 64-bit integer mixer (splitmix64 finalizer): nearby parts -> unrelated words."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class _RingState:
    """Everything derived from one ring file, swapped in whole on reload (thread safety)."""

    __slots__ = (
        "part_power",
        "part_count",
        "shift",
        "replica_count",
        "devs",
        "rows",
        "part_nodes",
        "row_count",
        "pool",
        "strides",
        "signature",
    )

    def __init__(self, data, signature):
        part_power = data.part_power
        if not isinstance(part_power, int) or not 0 <= part_power <= MAX_PART_POWER:
            raise RingFileError(f"ring has an invalid part power {part_power!r}")
        self.part_power = part_power
        self.part_count = 1 << part_power
        self.shift = 32 - part_power
        self.signature = signature
        self.devs = self._load_devs(data.devs)
        self.rows = list(data.replica2part2dev)
        if not self.rows:
            raise RingFileError("ring has no replica rows")
        self.row_count = len(self.rows)
        self.replica_count = sum(len(row) for row in self.rows) / self.part_count
        self._check_rows()

        # One FrozenNode per (row, device): the node already carries its "index", so a
        # lookup is a pure table walk. Full rows are walked without a bounds check; the
        # short row of a fractional replica count is checked per lookup.
        full, partial = [], []
        for index, row in enumerate(self.rows):
            nodes = [None if dev is None else FrozenNode(dev, index=index) for dev in self.devs]
            (full if len(row) == self.part_count else partial).append((row, nodes))
        self.part_nodes = _make_part_nodes(full, partial, self._may_repeat())

        # Handoff candidates: in-service devices, ordered by id, with the keys that decide
        # how "distinct" each is from the primaries precomputed.
        self.pool = [
            (
                dev["id"],
                dev["region"],
                (dev["region"], dev["zone"]),
                (dev["ip"], dev["port"]),
                dev,
            )
            for dev in self.devs
            if dev is not None and dev.get("weight", 0) > 0
        ]
        size = len(self.pool)
        self.strides = [s for s in range(1, size) if gcd(s, size) == 1] or [1]

    def _load_devs(self, devs):
        required = ("id", "region", "zone", "ip", "port", "device")
        if not isinstance(devs, list):
            raise RingFileError("ring device list is not a list")
        for position, dev in enumerate(devs):
            if dev is None:
                continue
            if not isinstance(dev, dict) or any(key not in dev for key in required):
                raise RingFileError(f"ring device {position} lacks one of {', '.join(required)}")
            if dev["id"] != position:
                raise RingFileError(f"ring device at position {position} has id {dev['id']}")
        return [None if dev is None else FrozenNode(dev) for dev in devs]

    def _check_rows(self):
        # Checked once here (about 10 ms a row at part power 20) so that no lookup can
        # ever index past the device list or land on a removed device.
        used = set()
        for row in self.rows:
            if len(row) > self.part_count:
                raise RingFileError(f"ring row has {len(row)} entries for {self.part_count} parts")
            used.update(row)
        for dev_id in used:
            if dev_id >= len(self.devs) or self.devs[dev_id] is None:
                raise RingFileError(f"ring assigns partitions to missing device {dev_id}")

    def _may_repeat(self):
        """Could a partition name one device twice (a ring with fewer devices than replicas)?

        Proving it cannot costs about 20 ms per pair of rows at part power 20, so it is
        done for up to four rows; wider rings (erasure coding) check on each lookup.
        """
        if self.row_count > 4:
            return True
        rows = self.rows
        return any(
            any(map(operator.eq, rows[i], rows[j]))
            for i in range(len(rows))
            for j in range(i + 1, len(rows))
        )


class Ring:
    """Lookups on one ring file (account, container or an object policy's ring).

    ``hash_secrets`` defaults to the cluster's ``[hash]`` section (a ConfigError if it
    is missing); ``reload_interval`` is how often, at most, a lookup checks whether the
    file was replaced (0 checks on every lookup).
    """

    def __init__(self, path, hash_secrets=None, reload_interval=DEFAULT_RELOAD_INTERVAL):
        self.path = os.fspath(path)
        secrets = load_hash_secrets() if hash_secrets is None else hash_secrets
        self._prefix = secrets.prefix
        self._suffix = secrets.suffix
        self.reload_interval = float(reload_interval)
        self._reload_lock = threading.Lock()
        self._state = self._read(_file_signature(self.path))
        self._next_check = time.monotonic() + self.reload_interval

    # -- loading ---------------------------------------------------------------------

    def _read(self, signature):
        return _RingState(RingData.load(self.path), signature)

    def _maybe_reload(self):
        """Swap in the file on disk if it was replaced; keep serving the old one on error."""
        if not self._reload_lock.acquire(blocking=False):
            return  # another thread is already looking
        try:
            self._next_check = time.monotonic() + self.reload_interval
            signature = _file_signature(self.path)
            if signature is None or signature == self._state.signature:
                return
            try:
                self._state = self._read(signature)
            except RingFileError as err:
                # A half-copied or broken file must not take the server down: keep the
                # ring we have and try again next interval.
                _LOG.warning("keeping the loaded ring; cannot reload %s: %s", self.path, err)
        finally:
            self._reload_lock.release()

    def _current(self):
        if _monotonic() >= self._next_check:
            self._maybe_reload()
        return self._state

    # -- shape -----------------------------------------------------------------------

    @property
    def part_power(self):
        """log2 of the number of partitions."""
        return self._current().part_power

    @property
    def partition_count(self):
        """Number of partitions, ``2 ** part_power``."""
        return self._current().part_count

    @property
    def replica_count(self):
        """Replicas per partition as a float (fractional counts are allowed)."""
        return self._current().replica_count

    @property
    def devs(self):
        """The devices by id (``None`` where a device was removed); read-only dicts."""
        return list(self._current().devs)

    # -- lookups ---------------------------------------------------------------------

    def get_part(self, account, container=None, obj=None):
        """The partition of ``/account[/container[/object]]``."""
        return self._part_of(self._current(), account, container, obj)

    def _part_of(self, state, account, container, obj):
        if container is None:
            if obj is not None:
                raise ValueError("an object name needs a container name")
            path = "/" + account
        elif obj is None:
            path = f"/{account}/{container}"
        else:
            path = f"/{account}/{container}/{obj}"
        digest = _md5(self._prefix + path.encode("utf-8") + self._suffix).digest()
        return _FIRST_WORD(digest)[0] >> state.shift

    def get_nodes(self, account, container=None, obj=None):
        """``(partition, [primary node dicts])`` for a name; each node has an ``index``."""
        # The hot path of every request: _current and _part_of are inlined here.
        if _monotonic() >= self._next_check:
            self._maybe_reload()
        state = self._state
        if container is None:
            if obj is not None:
                raise ValueError("an object name needs a container name")
            path = "/" + account
        elif obj is None:
            path = f"/{account}/{container}"
        else:
            path = f"/{account}/{container}/{obj}"
        digest = _md5(self._prefix + path.encode("utf-8") + self._suffix).digest()
        part = _FIRST_WORD(digest)[0] >> state.shift
        return part, state.part_nodes(part)

    def get_part_nodes(self, part):
        """The primary node dicts of a partition, in replica order."""
        state = self._current()
        _check_part(state, part)
        return state.part_nodes(part)

    def get_more_nodes(self, part):
        """Handoff nodes for ``part``, most distinct from the primaries first.

        Devices in regions the primaries do not use come first, then devices in zones
        they do not use, then on servers (ip:port) they do not use, then the rest.
        Within each of those tiers the handoffs also avoid each other's regions, zones
        and servers where they can, and the order is a pseudo-random walk seeded by the
        partition, so a failed device's load spreads over the cluster. Deterministic;
        never a primary, a device twice, a removed device or one of weight 0. Each node
        is a fresh (mutable) dict with a ``handoff_index`` (0, 1, ...).
        """
        state = self._current()
        _check_part(state, part)
        return _handoffs(state, part, state.part_nodes(part))


def _make_part_nodes(full, partial, may_repeat):
    """Build the primaries lookup for one ring: ``part -> [node, ...]`` (no range check).

    This is the hot path of every request, so the common shape (full rows only, no
    device named twice in a partition) gets a plain comprehension and nothing else.
    """
    if not partial and not may_repeat:
        if len(full) == 3:
            (row0, nodes0), (row1, nodes1), (row2, nodes2) = full
            return lambda part: [nodes0[row0[part]], nodes1[row1[part]], nodes2[row2[part]]]
        return lambda part: [row_nodes[row[part]] for row, row_nodes in full]

    def part_nodes(part):
        nodes = [row_nodes[row[part]] for row, row_nodes in full]
        for row, row_nodes in partial:
            if part < len(row):
                nodes.append(row_nodes[row[part]])
        if may_repeat and len({node["id"] for node in nodes}) != len(nodes):
            # A device holds one copy of a partition: keep the first (lowest index).
            seen = set()
            nodes = [n for n in nodes if not (n["id"] in seen or seen.add(n["id"]))]
        return nodes

    return part_nodes


def _check_part(state, part):
    if not 0 <= part < state.part_count:
        raise ValueError(f"partition {part} is outside 0..{state.part_count - 1}")


def _handoffs(state, part, primaries):
    # Runs lazily: a caller that never needs a handoff never pays for this walk.
    pool = state.pool
    size = len(pool)
    if not size:
        return
    used_ids = {node["id"] for node in primaries}
    used_regions = {node["region"] for node in primaries}
    used_zones = {(node["region"], node["zone"]) for node in primaries}
    used_servers = {(node["ip"], node["port"]) for node in primaries}

    # Sort the candidates into tiers by how distinct they are from the primaries
    # (0: other region, 1: other zone, 2: other server, 3: the rest), each tier in the
    # order of a walk through the pool with a start and stride picked by the partition.
    word = _mix(part)
    stride = state.strides[(word >> 32) % len(state.strides)]
    pos = word % size
    tiers = ([], [], [], [])
    for _ in range(size):
        entry = pool[pos]
        pos += stride
        if pos >= size:
            pos -= size
        dev_id, region, zone, server, _node = entry
        if dev_id in used_ids:
            continue
        if region not in used_regions:
            tiers[0].append(entry)
        elif zone not in used_zones:
            tiers[1].append(entry)
        elif server not in used_servers:
            tiers[2].append(entry)
        else:
            tiers[3].append(entry)

    # Within a tier, spread the handoffs themselves too: prefer a region, then a zone,
    # then a server that no earlier node (primary or handoff) has used.
    handoff_index = 0
    for tier in tiers:
        for level in range(4):
            for dev_id, region, zone, server, node in tier:
                if dev_id in used_ids:
                    continue
                if level == 0 and region in used_regions:
                    continue
                if level == 1 and zone in used_zones:
                    continue
                if level == 2 and server in used_servers:
                    continue
                used_ids.add(dev_id)
                used_regions.add(region)
                used_zones.add(zone)
                used_servers.add(server)
                yield dict(node, handoff_index=handoff_index)
                handoff_index += 1


def _file_signature(path):
    """What identifies one version of the file: a replacement changes the inode at least.

    Timestamps alone can repeat within the kernel's clock tick when a ring is written
    twice in quick succession.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
