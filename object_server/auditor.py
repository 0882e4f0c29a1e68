"""The object auditor: reads every object on the node and quarantines the corrupt ones.

One pass (``run_once``) walks every object of every storage policy on every device
under ``devices`` (all of them: a device that left the ring still holds data worth
checking) at a bounded pace, at most ``files_per_second`` objects and
``bytes_per_second`` bytes, sleeping as needed with ``time.sleep`` (cooperative under
the agent). For each object it:

- opens it through DiskFile, which already quarantines unreadable metadata and a file
  whose size does not match its Content-Length;
- checks the metadata holds a name and a well-formed ETag;
- reads every byte and compares the MD5 with the ETag.

In an erasure-coded policy each durable fragment archive of a hash dir (a handoff may
hold several) is read the same way and checked against its own ETag, which is the
archive's CRC32 (common.crc32; the MD5 for archives written before CRC32s).

A bad object's hash dir goes to ``<dev>/quarantined/objects[-N]/<hash>`` and its suffix
is marked for rehashing, so the replicator's next pass brings a good copy back from
another node (for a fragment archive, the reconstructor rebuilds it from the others).
Tombstones are not read; one older than ``reclaim_age`` gets its suffix marked for
rehashing, which is what removes it (object_server.hashes).
"""

import hashlib
import logging
import os
import time

from common import daemon as agent_helpers
from common.config import config_float, config_int, config_true
from common.devices import list_devices
from common.hashing import is_hex
from common.policies import load_policies
from common.timestamp import Timestamp
from object_server import layout
from object_server.diskfile import (
    DEFAULT_RECLAIM_AGE,
    DiskFileError,
    DiskFileManager,
    DiskFileNotExist,
    DiskFileQuarantined,
)
from object_server.ec_diskfile import ECDiskFileManager, archive_checksum, is_ec_policy
from object_server.filenames import parse_filename
from object_server.hashes import LockTimeout, invalidate_hash


class RateLimiter:
    """Keeps a running total under ``rate`` units a second, sleeping when ahead.

    Up to ``burst`` seconds of unused allowance carry over (an idle stretch does not
    buy an unbounded rush afterwards). ``rate`` 0 means unlimited. ``time.sleep`` is
    looked up at each call, so the agent's cooperative one is used once patched.
    """

    def __init__(self, rate, burst=1.0, clock=time.monotonic, sleep=None):
        self.rate = float(rate)
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self.next_free = clock()

    def spend(self, amount):
        """Account for ``amount`` units, sleeping first if they are not yet allowed."""
        if self.rate <= 0 or amount <= 0:
            return
        now = self.clock()
        self.next_free = max(self.next_free, now - self.burst)
        delay = self.next_free - now
        if delay > 0:
            (self.sleep or time.sleep)(delay)
        self.next_free += amount / self.rate


def new_counters():
    return {
        "objects_checked": 0,
        "quarantined": 0,
        "errors": 0,
        "bytes": 0,
        "stale_tombstones": 0,
        "duration": 0.0,
    }


class ObjectAuditor:
    """One pass (``run_once``) over every object of this node; the agent loops it."""

    name = "object-auditor"

    def __init__(self, conf, logger=None):
        conf = dict(conf or {})
        self.logger = logger or logging.getLogger("haneul.object-auditor")
        self.devices = conf.get("devices", "/srv/node")
        self.mount_check = config_true(conf.get("mount_check", "false"))
        self.files_per_second = config_float(
            conf.get("files_per_second", "20"), "files_per_second", 0
        )
        self.bytes_per_second = config_float(
            conf.get("bytes_per_second", str(10 * 1024 * 1024)), "bytes_per_second", 0
        )
        self.reclaim_age = config_int(
            conf.get("reclaim_age", DEFAULT_RECLAIM_AGE), "reclaim_age", 0
        )
        self.policies = load_policies(conf.get("haneul_conf", "").strip() or None)
        manager_kw = dict(
            disk_chunk_size=config_int(conf.get("disk_chunk_size", 65536), "disk_chunk_size", 1),
            reclaim_age=self.reclaim_age,
            logger=self.logger,
        )
        secrets = agent_helpers.hash_secrets_of(conf)
        self.diskfiles = DiskFileManager(secrets, **manager_kw)
        self.ec_diskfiles = ECDiskFileManager(secrets, **manager_kw)

    def _audited_policies(self, dev_path):
        """(policy index, its manager) of each policy with objects on a device; a policy
        haneul.conf does not know is audited as a replicated one."""
        for index in layout.policy_indexes(dev_path):
            policy = self.policies.get_by_index(index)
            if is_ec_policy(policy):
                yield index, self.ec_diskfiles
            elif policy is None or policy.policy_type == "replication":
                yield index, self.diskfiles

    def run_once(self, devices=None):
        """Audit every object (of the named devices only, if given); counters."""
        stats = new_counters()
        started = time.monotonic()
        files = RateLimiter(self.files_per_second)
        volume = RateLimiter(self.bytes_per_second)
        reclaim_before = Timestamp(max(time.time() - self.reclaim_age, 0))
        for device in devices if devices is not None else list_devices(self.devices):
            dev_path = os.path.join(self.devices, device)
            if self.mount_check and not os.path.ismount(dev_path):
                self.logger.warning("skipping %s: not mounted", dev_path)
                continue
            for index, manager in self._audited_policies(dev_path):
                ec = manager is self.ec_diskfiles
                for part in manager.partitions(dev_path, index):
                    stale = set()
                    for state in manager.yield_hashes(dev_path, part, index):
                        if state.deleted:
                            if state.timestamp < reclaim_before:
                                stale.add(layout.suffix_of(state.hash))
                            continue
                        files.spend(1)
                        for frag_index in _durable_fragments(state) if ec else (None,):
                            self.audit_object(
                                dev_path, part, index, state.hash, stats, volume, frag_index
                            )
                    self._mark_stale(dev_path, part, index, stale, stats)
        stats["duration"] = round(time.monotonic() - started, 3)
        self.logger.info(
            "object audit pass: %d objects checked (%d bytes), %d quarantined, %d errors, "
            "%d stale tombstones in %.2fs",
            stats["objects_checked"],
            stats["bytes"],
            stats["quarantined"],
            stats["errors"],
            stats["stale_tombstones"],
            stats["duration"],
        )
        return stats

    def _mark_stale(self, dev_path, part, policy_index, suffixes, stats):
        part_dir = layout.partition_dir(dev_path, part, policy_index)
        for suffix in sorted(suffixes):
            try:
                invalidate_hash(os.path.join(part_dir, suffix))
                stats["stale_tombstones"] += 1
            except (LockTimeout, OSError) as err:
                stats["errors"] += 1
                self.logger.error("cannot mark %s/%s for rehashing: %s", part_dir, suffix, err)

    def audit_object(
        self, dev_path, part, policy_index, obj_hash, stats, volume=None, frag_index=None
    ):
        """Check one object, or with ``frag_index`` that fragment archive of an
        erasure-coded one; quarantine it if it is corrupt. Tallies into ``stats``."""
        if frag_index is None:
            df = self.diskfiles.get_diskfile_from_hash(dev_path, part, obj_hash, policy_index)
        else:
            df = self.ec_diskfiles.get_fragment(dev_path, part, obj_hash, policy_index, frag_index)
        try:
            df.open(check_expiry=False)
        except DiskFileQuarantined:
            stats["quarantined"] += 1
            return
        except DiskFileNotExist:
            return  # deleted or gone since it was listed
        except (DiskFileError, OSError) as err:
            stats["errors"] += 1
            self.logger.error("cannot audit %s: %s", df.datadir, err)
            return
        with df:
            if df.frag_index != frag_index:
                return  # that archive went (reverted, or replaced) since it was listed
            metadata = df.get_datafile_metadata()
            problem = _metadata_problem(metadata, frag_index is not None)
            if problem is None:
                problem = self._check_bytes(df, metadata, stats, volume)
        stats["objects_checked"] += 1
        if problem is not None:
            if problem != "truncated":  # a short read already quarantined it
                df.quarantine(problem)
            stats["quarantined"] += 1

    @staticmethod
    def _check_bytes(df, metadata, stats, volume):
        """Read the whole object; None if its bytes match its ETag, else what is wrong.

        The ETag is an MD5, or for a fragment archive its CRC32 (``archive_checksum``).
        """
        length = df.content_length
        if df.frag_index is None:
            checksum = hashlib.md5(usedforsecurity=False)
        else:
            checksum = archive_checksum(metadata["ETag"].lower())
        reader = df.reader()
        try:
            for chunk in reader:
                checksum.update(chunk)
                stats["bytes"] += len(chunk)
                if volume is not None:
                    volume.spend(len(chunk))
        finally:
            reader.close()
        if reader.bytes_read != length:
            return "truncated"
        if checksum.hexdigest() != metadata["ETag"].lower():
            return f"bytes hash to {checksum.hexdigest()}, ETag is {metadata['ETag']}"
        return None


def _durable_fragments(state):
    """The fragment indexes of the durable archives an EC object's state names."""
    indexes = set()
    for name in state.filenames:
        info = parse_filename(name)
        if info is not None and info.is_durable_data and info.frag_index is not None:
            indexes.add(info.frag_index)
    return sorted(indexes)


def _metadata_problem(metadata, archive=False):
    """What is wrong with a data file's metadata (beyond what DiskFile checks), or None.

    A fragment ``archive``'s ETag may be a CRC32 as well as an MD5.
    """
    etag = metadata.get("ETag", "")
    if archive:
        if archive_checksum(etag.lower()) is None:
            return f"bad ETag {etag[:40]!r}"
    elif not is_hex(etag.lower(), 32):
        return f"bad ETag {etag[:40]!r}"
    name = metadata.get("name", "")
    if not name.startswith("/") or name.count("/") < 3:
        return f"bad name {name[:80]!r}"
    return None
