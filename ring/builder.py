"""RingBuilder: the plan of a ring, kept in a builder file, rebalanced into ring files.

The builder holds the devices, the replica table (``rows[r][p]`` = dev id of replica r of
partition p) and, per partition, the hour it last moved. ``rebalance`` keeps every
device's share in line with its weight, spreads each partition's replicas over regions,
zones, servers and devices as far as the weights allow (``overload`` trades balance for
dispersion), and moves at most one replica of a partition per ``min_part_hours``.
The placement work itself lives in :mod:`ring.placement`, the tier arithmetic in
:mod:`ring.tiers`. Servers never import this module: they read ring files
(:mod:`ring.ringfile`) through :mod:`ring.ring`.

Builder files are msgpack (never pickle) behind a magic and a format version
(:mod:`ring.builder_file`).
"""

import math
import random
import time
from array import array
from collections import Counter

from common.fileops import atomic_write_bytes
from ring import builder_file
from ring.devices import FIELDS, DeviceSpecError, match_device, normalize_ip, parse_search_value
from ring.dispersion import (
    UNASSIGNED,
    count_at_risk,
    dev_counts,
    dispersion_detail,
    part_columns,
)
from ring.placement import Placement
from ring.ringfile import RingData
from ring.tiers import Topology

MIN_PART_POWER, MAX_PART_POWER = 1, 24
MAX_REPLICAS = 64
MAX_DEV_ID = (1 << 20) - 1
MAX_MIN_PART_HOURS = 1 << 16
ORDERS, ORDER_BUDGET = 64, 200_000


class BuilderError(Exception):
    """A request the builder cannot carry out: bad arguments, unknown device, and so on."""


class BuilderFileError(BuilderError):
    """A builder file that is missing, corrupt or not a Haneul builder file."""


def current_hour():
    """Hours since the epoch: the clock min_part_hours is measured on."""
    return int(time.time() // 3600)


def _number(value, what, minimum=None, integer=False):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BuilderError(f"{what} must be a number, not {value!r}")
    if integer and (isinstance(value, float) and not value.is_integer()):
        raise BuilderError(f"{what} must be a whole number, not {value!r}")
    if not math.isfinite(value):
        raise BuilderError(f"{what} must be finite, not {value!r}")
    if minimum is not None and value < minimum:
        raise BuilderError(f"{what} must be at least {minimum}, not {value!r}")
    return int(value) if integer else float(value)


def row_shape(replicas, parts):
    """(full rows, length of the partial last row or 0) for a replica count."""
    whole = int(replicas)
    short = int(round((replicas - whole) * parts))
    if short >= parts:
        return whole + 1, 0
    return whole, short


class RingBuilder:
    """The plan of one ring: devices, the replica table, and the rules for changing it.

    ``part_power`` (1..24) fixes 2**part_power partitions; ``replicas`` (>= 1, may be
    fractional) and ``min_part_hours`` (>= 0) can change later. ``devs[i]`` is the device
    with id i (a dict of exactly id, region, zone, ip, port, device, weight, meta) or None.
    """

    def __init__(self, part_power, replicas, min_part_hours):
        part_power = _number(part_power, "part_power", MIN_PART_POWER, integer=True)
        if part_power > MAX_PART_POWER:
            raise BuilderError(f"part_power must be at most {MAX_PART_POWER}, not {part_power}")
        self._part_power = part_power
        self._replicas = self._check_replicas(replicas)
        self._min_part_hours = self._check_min_part_hours(min_part_hours)
        self._overload = 0.0
        self.devs = []
        self._removing = set()
        self._table = None
        self._last_moved = array("I", bytes(4 << part_power))
        self._version = 0
        self._dispersion = None  # (version, value)

    # -- settings ------------------------------------------------------------------------

    @property
    def part_power(self):
        return self._part_power

    @property
    def parts(self):
        """Number of partitions, 2 ** part_power."""
        return 1 << self._part_power

    @property
    def replicas(self):
        return self._replicas

    @property
    def overload(self):
        return self._overload

    @property
    def min_part_hours(self):
        return self._min_part_hours

    @min_part_hours.setter
    def min_part_hours(self, hours):
        self._min_part_hours = self._check_min_part_hours(hours)
        self._changed()

    @property
    def version(self):
        """Counts changes: every edit and every rebalance adds one."""
        return self._version

    @property
    def ever_rebalanced(self):
        return self._table is not None

    @property
    def pending_removal(self):
        """Ids of devices removed but still in the table until the next rebalance."""
        return sorted(self._removing)

    @staticmethod
    def _check_replicas(replicas):
        value = _number(replicas, "replicas", 1)
        if value > MAX_REPLICAS:
            raise BuilderError(f"replicas must be at most {MAX_REPLICAS}, not {replicas!r}")
        return value

    @staticmethod
    def _check_min_part_hours(hours):
        value = _number(hours, "min_part_hours", 0, integer=True)
        if value > MAX_MIN_PART_HOURS:
            raise BuilderError(f"min_part_hours must be at most {MAX_MIN_PART_HOURS}")
        return value

    def set_replicas(self, replicas):
        """Change the replica count; the table follows at the next rebalance."""
        self._replicas = self._check_replicas(replicas)
        self._changed()

    def set_overload(self, overload):
        """How far (a fraction, 0.1 = 10%) a device may exceed its weight share so that
        partitions can be better dispersed."""
        self._overload = _number(overload, "overload", 0)
        self._changed()

    def set_min_part_hours(self, hours):
        """Same as assigning ``min_part_hours``."""
        self.min_part_hours = hours

    def _changed(self):
        self._version += 1

    # -- devices ---------------------------------------------------------------------------

    def add_dev(self, dev):
        """Add a device; returns its id (the given ``id``, else the lowest free one).

        ``dev`` needs region, zone, ip, port, device, weight; meta and id are optional.
        """
        if not isinstance(dev, dict):
            raise BuilderError(f"a device must be a dict, not {type(dev).__name__}")
        unknown = set(dev) - set(FIELDS)
        if unknown:
            raise BuilderError(f"unknown device field(s): {', '.join(sorted(unknown))}")
        missing = [f for f in FIELDS if f not in dev and f not in ("id", "meta")]
        if missing:
            raise BuilderError(f"device is missing field(s): {', '.join(missing)}")
        new = self._checked_fields(dev)
        for other in self.devs:
            if other is not None and (other["ip"], other["port"], other["device"]) == (
                new["ip"],
                new["port"],
                new["device"],
            ):
                raise BuilderError(
                    f"a device {new['ip']}:{new['port']}/{new['device']} already exists "
                    f"(id {other['id']})"
                )
        dev_id = dev.get("id")
        if dev_id is None:
            dev_id = next((i for i, d in enumerate(self.devs) if d is None), len(self.devs))
        else:
            dev_id = _number(dev_id, "device id", 0, integer=True)
            if dev_id > MAX_DEV_ID:
                raise BuilderError(f"device id must be at most {MAX_DEV_ID}, not {dev_id}")
            if dev_id < len(self.devs) and self.devs[dev_id] is not None:
                raise BuilderError(f"device id {dev_id} is already in use")
        if dev_id >= len(self.devs):
            self.devs.extend([None] * (dev_id + 1 - len(self.devs)))
        self.devs[dev_id] = {"id": dev_id, **new}
        self._changed()
        return dev_id

    @staticmethod
    def _checked_fields(dev):
        region = _number(dev["region"], "region", 0, integer=True)
        zone = _number(dev["zone"], "zone", 0, integer=True)
        port = _number(dev["port"], "port", 1, integer=True)
        if port > 65535:
            raise BuilderError(f"port must be at most 65535, not {port}")
        try:
            ip = normalize_ip(dev["ip"])
        except ValueError as err:
            raise BuilderError(f"bad device ip: {err}") from None
        device = dev["device"]
        if not isinstance(device, str) or not device or "/" in device or "_" in device:
            raise BuilderError(f"bad device name {device!r}: non-empty, without '/' or '_'")
        meta = dev.get("meta", "")
        if not isinstance(meta, str):
            raise BuilderError(f"device meta must be a string, not {meta!r}")
        weight = _number(dev["weight"], "weight", 0)
        return {
            "region": region,
            "zone": zone,
            "ip": ip,
            "port": port,
            "device": device,
            "weight": weight,
            "meta": meta,
        }

    def _dev(self, dev_id):
        if (
            isinstance(dev_id, bool)
            or not isinstance(dev_id, int)
            or not 0 <= dev_id < len(self.devs)
            or self.devs[dev_id] is None
        ):
            raise BuilderError(f"no device with id {dev_id!r}")
        return self.devs[dev_id]

    def remove_dev(self, dev_id):
        """Mark a device for removal: weight 0 now; its partitions move off, and its slot
        becomes None, at the next rebalance."""
        dev = self._dev(dev_id)
        if dev_id in self._removing:
            raise BuilderError(f"device {dev_id} is already marked for removal")
        dev["weight"] = 0.0
        self._removing.add(dev_id)
        self._changed()

    def set_dev_weight(self, dev_id, weight):
        """Change a device's weight (takes effect at the next rebalance)."""
        dev = self._dev(dev_id)
        if dev_id in self._removing:
            raise BuilderError(f"device {dev_id} is marked for removal; its weight stays 0")
        dev["weight"] = _number(weight, "weight", 0)
        self._changed()

    def search_devs(self, criteria):
        """Devices matching a search value (string) or a criteria dict from
        :func:`ring.devices.parse_search_value`. Raises DeviceSpecError for a bad string."""
        if isinstance(criteria, str):
            criteria = parse_search_value(criteria)
        elif not isinstance(criteria, dict):
            raise DeviceSpecError(f"bad search value {criteria!r}")
        return [d for d in self.devs if d is not None and match_device(d, criteria)]

    # -- rebalance -------------------------------------------------------------------------

    def rebalance(self, seed=None):
        """Reassign partitions; returns ``(parts_moved, balance, dispersion)``.

        ``parts_moved`` counts partition-replicas now on a different device than before
        (newly created replicas included). The same builder and seed give the same table.
        """
        live = [d for d in self.devs if d is not None and d["weight"] > 0]
        if not live:
            raise BuilderError("no devices with weight > 0: add devices before rebalancing")
        parts = self.parts
        whole, short = row_shape(self._replicas, parts)
        needed = whole + (1 if short else 0)
        if needed > len(live):
            raise BuilderError(
                f"{self._replicas:g} replicas need at least {needed} devices with weight > 0; "
                f"there are {len(live)}"
            )
        rng = random.Random(seed)
        topo = Topology(self.devs, self._replicas, self._overload)
        # Several interleaved orders: placement varies them so partners vary (see
        # ring.placement.build_sequence); few enough to stay cheap with many devices.
        orders = [
            topo.interleaved_devices(rng)
            for _ in range(max(1, min(ORDERS, ORDER_BUDGET // len(self.devs))))
        ]
        wanted = topo.device_counts(whole * parts + short, parts, orders[0])
        old = self._table or []
        rows = []
        for r in range(needed):
            length = parts if r < whole else short
            row = array("i", old[r][:length]) if r < len(old) else array("i")
            if len(row) < length:
                row.extend(array("i", [UNASSIGNED]) * (length - len(row)))
            rows.append(row)
        now = current_hour()
        placement = Placement(
            rows,
            parts,
            topo,
            wanted,
            self._locked_parts(now),
            self._min_part_hours > 0,
            rng,
            orders,
        )
        # Replicas on empty device slots (a hand-edited file) drain like removed ones.
        draining = set(self._removing)
        for row in old:
            draining.update(d for d in set(row) if d != UNASSIGNED and self.devs[d] is None)
        placement.run(draining)
        moved = self._record_moves(old, rows, now)
        for dev_id in self._removing:
            self.devs[dev_id] = None
        self._removing.clear()
        self._table = rows
        self._changed()
        return moved, self.get_balance(), self.get_dispersion()

    def _locked_parts(self, now):
        """1 for each partition moved within min_part_hours, else 0."""
        hours = self._min_part_hours
        if not hours:
            return bytearray(self.parts)
        return bytearray(1 if now - last < hours else 0 for last in self._last_moved)

    def _record_moves(self, old, rows, now):
        """Count changed slots and stamp the partitions they belong to."""
        moved = 0
        last_moved = self._last_moved
        for r, row in enumerate(rows):
            before = old[r] if r < len(old) else array("i")
            if row == before:
                continue
            common = min(len(before), len(row))
            for part, (a, b) in enumerate(zip(before[:common], row[:common], strict=True)):
                if a != b:
                    moved += 1
                    last_moved[part] = now
            if len(row) > common:
                moved += len(row) - common
                last_moved[common : len(row)] = array("I", [now]) * (len(row) - common)
        return moved

    def pretend_min_part_hours_passed(self):
        """Forget when partitions last moved, so the next rebalance may move any of them."""
        self._last_moved = array("I", bytes(4 * self.parts))
        self._changed()

    def min_part_hours_remaining(self):
        """Hours until every partition may move again (0 if they all may now)."""
        if not self._min_part_hours or not self._table:
            return 0
        return max(0, self._min_part_hours - (current_hour() - max(self._last_moved)))

    # -- reports ---------------------------------------------------------------------------

    def _topology(self):
        return Topology(self.devs, self._replicas, self._overload)

    def _slot_total(self):
        if self._table is not None:
            return sum(len(row) for row in self._table)
        whole, short = row_shape(self._replicas, self.parts)
        return whole * self.parts + short

    def dev_parts(self):
        """``{dev id: partition-replicas held}`` for every device in the builder."""
        counts = dev_counts(self._table or [], len(self.devs))
        return {d["id"]: counts[d["id"]] for d in self.devs if d is not None}

    def dev_balance(self):
        """``{dev id: % above (+) or below (-) its weight share}`` for devices with weight."""
        ideal = self._topology().ideal_counts(self._slot_total())
        counts = self.dev_parts()
        return {d: 100.0 * counts[d] / want - 100.0 for d, want in ideal.items() if want > 0}

    def get_balance(self):
        """The worst |% off its weight share| over devices with weight > 0."""
        return max((abs(b) for b in self.dev_balance().values()), default=0.0)

    def get_dispersion(self):
        """% of partitions whose replicas are less dispersed than the topology allows."""
        if self._table is None:
            return 0.0
        if self._dispersion is None or self._dispersion[0] != self._version:
            at_risk = count_at_risk(self._table, self.parts, self._topology())
            self._dispersion = (self._version, 100.0 * at_risk / self.parts)
        return self._dispersion[1]

    def dispersion_report(self):
        """Dispersion per tier, for the CLI ``dispersion`` command. The shape::

        {"dispersion": float,          # as get_dispersion()
         "parts": int, "replicas": float,
         "parts_at_risk": int,         # partitions less dispersed than allowed
         "tiers": {name: {             # names: r1, r1z2, r1z2-10.0.0.1,
                                       #        r1z2-10.0.0.1:6200/sdb
             "level": "region" | "zone" | "server" | "device",
             "max_replicas": int,      # most replicas of one partition allowed there
             "placed_replicas": int,   # partition-replicas held in the tier
             "parts_at_risk": int,     # partitions with more than max_replicas there
             "replicas": [int, ...],   # [i] = partitions with i replicas there
         }}}
        """
        report = {
            "dispersion": self.get_dispersion(),
            "parts": self.parts,
            "replicas": self._replicas,
            "parts_at_risk": 0,
            "tiers": {},
        }
        if self._table is None:
            return report
        topo = self._topology()
        report["parts_at_risk"] = count_at_risk(self._table, self.parts, topo)
        report["tiers"] = dispersion_detail(self._table, self.parts, topo)
        return report

    def list_parts(self, dev_ids):
        """``[(part, replicas of it on those devices)]`` for partitions with any, most first."""
        ids = set()
        for dev_id in dev_ids:
            ids.add(self._dev(dev_id)["id"])
        found = Counter()
        for row in self._table or []:
            for part, dev in enumerate(row):
                if dev in ids:
                    found[part] += 1
        return sorted(found.items(), key=lambda item: (-item[1], item[0]))

    def validate(self):
        """Raise BuilderError naming the first inconsistency found in the builder."""
        for i, dev in enumerate(self.devs):
            if dev is None:
                continue
            if set(dev) != set(FIELDS):
                raise BuilderError(f"device {i} has fields {sorted(dev)}, not {list(FIELDS)}")
            if dev["id"] != i:
                raise BuilderError(f"device in slot {i} has id {dev['id']}")
            if not isinstance(dev["weight"], int | float) or not dev["weight"] >= 0:
                raise BuilderError(f"device {i} has a bad weight {dev['weight']!r}")
        if self._table is None:
            raise BuilderError("the builder has never been rebalanced: there is no table")
        parts = self.parts
        if len(self._last_moved) != parts:
            raise BuilderError(f"{len(self._last_moved)} move stamps for {parts} partitions")
        for r, row in enumerate(self._table):
            last = r == len(self._table) - 1
            if len(row) > parts or (not last and len(row) != parts) or not row:
                raise BuilderError(f"replica row {r} has {len(row)} entries for {parts} parts")
            for dev_id in set(row):
                if dev_id == UNASSIGNED:
                    part = row.index(UNASSIGNED)
                    raise BuilderError(f"replica {r} of partition {part} is unassigned")
                if not 0 <= dev_id < len(self.devs) or self.devs[dev_id] is None:
                    part = row.index(dev_id)
                    raise BuilderError(
                        f"replica {r} of partition {part} is on device {dev_id}, "
                        "which does not exist"
                    )
        for first, _, columns in part_columns(self._table, parts):
            for part, devs in enumerate(columns, first):
                if len(set(devs)) != len(devs):
                    dup = next(d for d in devs if devs.count(d) > 1)
                    raise BuilderError(f"partition {part} has two replicas on device {dup}")

    # -- output ------------------------------------------------------------------------------

    def get_ring(self):
        """The ring as of the last rebalance, ready to save as a ring file."""
        if self._table is None:
            raise BuilderError("the builder has never been rebalanced: no ring to write")
        devs = [None if d is None else dict(d) for d in self.devs]
        max_id = max((d["id"] for d in self.devs if d is not None), default=0)
        typecode = "H" if max_id < 0xFFFF else "I"
        rows = []
        for r, row in enumerate(self._table):
            if UNASSIGNED in row:
                raise BuilderError(f"replica row {r} has unassigned partitions; rebalance")
            rows.append(array(typecode, row))
        return RingData(self._part_power, devs, rows)

    def save(self, path):
        """Write the builder file (msgpack, see :mod:`ring.builder_file`) atomically:
        temp file, fsync, rename."""
        record = {
            "part_power": self._part_power,
            "replicas": self._replicas,
            "min_part_hours": self._min_part_hours,
            "overload": self._overload,
            "version": self._version,
            "devs": self.devs,
            "removing": sorted(self._removing),
            "table": self._table,
            "last_moved": self._last_moved,
        }
        atomic_write_bytes(path, builder_file.encode(record))

    @classmethod
    def load(cls, path):
        """Read a builder file; BuilderFileError (one line) if it is missing, corrupt or
        not a Haneul builder file."""
        try:
            record = builder_file.read(path)
        except builder_file.BuilderFormatError as err:
            raise BuilderFileError(str(err)) from None
        try:
            return cls._from_record(record)
        except (BuilderError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise BuilderFileError(f"{path} is corrupt: {err}") from None

    @classmethod
    def _from_record(cls, record):
        builder = cls(record["part_power"], record["replicas"], record["min_part_hours"])
        builder.set_overload(record["overload"])
        devs = record["devs"]
        if not isinstance(devs, list):
            raise BuilderError("devs is not a list")
        builder.devs = [None] * len(devs)
        for i, dev in enumerate(devs):
            if dev is None:
                continue
            if not isinstance(dev, dict) or dev.get("id") != i or set(dev) != set(FIELDS):
                raise BuilderError(f"device slot {i} does not hold a device {i}")
            builder.devs[i] = {"id": i, **cls._checked_fields(dev)}
        for dev_id in record["removing"]:
            builder._dev(dev_id)
            builder._removing.add(dev_id)
        parts = builder.parts
        if len(record["last_moved"]) != parts:
            raise BuilderError(f"{len(record['last_moved'])} move stamps for {parts} parts")
        builder._last_moved = record["last_moved"]
        rows = record["table"]
        for r, row in enumerate(rows or []):
            # Every row is full but the last, and that one too if it is the only one.
            if not row or len(row) > parts or (r < max(1, len(rows) - 1) and len(row) != parts):
                raise BuilderError(f"replica row {r} has {len(row)} entries for {parts} parts")
            if min(row) < UNASSIGNED or max(row) >= len(builder.devs):
                raise BuilderError(f"replica row {r} names a device out of range")
        builder._table = rows
        builder._version = _number(record["version"], "version", 0, integer=True)
        return builder
