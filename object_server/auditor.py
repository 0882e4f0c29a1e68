"""The object auditor: reads every object on the node and quarantines the corrupt ones.

One pass (``run_once``) walks every object of every replication policy on every device
under ``devices`` (all of them: a device that left the ring still holds data worth
checking) at a bounded pace, at most ``files_per_second`` objects and
``bytes_per_second`` bytes, sleeping as needed with ``time.sleep`` (cooperative under
the agent). For each object it:

- opens it through DiskFile, which already quarantines unreadable metadata and a file
  whose size does not match its Content-Length;
- checks the metadata holds a name and a well-formed ETag;
- reads every byte and compares the MD5 with the ETag.

A bad object's hash dir goes to ``<dev>/quarantined/objects[-N]/<hash>`` and its suffix
is marked for rehashing, so the replicator's next pass brings a good copy back from
another node. Tombstones are not read; one older than ``reclaim_age`` gets its suffix
marked for rehashing, which is what removes it (object_server.hashes).

Erasure-coded policies are skipped: a fragment archive's bytes are not what the
object's ETag describes.
"""

import hashlib
import logging
import os
import time

from common import daemon as agent_helpers
from common.config import config_float, config_int, config_true
from common.devices import list_devices
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
from object_server.hashes import LockTimeout, invalidate_hash

_HEX = frozenset("0123456789abcdef")


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
        self.diskfiles = DiskFileManager(
            agent_helpers.hash_secrets_of(conf),
            disk_chunk_size=config_int(conf.get("disk_chunk_size", 65536), "disk_chunk_size", 1),
            reclaim_age=self.reclaim_age,
            logger=self.logger,
        )

    def _audited_policies(self, dev_path):
        for index in layout.policy_indexes(dev_path):
            policy = self.policies.get_by_index(index)
            if policy is not None and policy.policy_type != "replication":
                continue
            yield index

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
            for index in self._audited_policies(dev_path):
                for part in self.diskfiles.partitions(dev_path, index):
                    stale = set()
                    for state in self.diskfiles.yield_hashes(dev_path, part, index):
                        if state.deleted:
                            if state.timestamp < reclaim_before:
                                stale.add(layout.suffix_of(state.hash))
                            continue
                        files.spend(1)
                        self.audit_object(dev_path, part, index, state.hash, stats, volume)
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

    def audit_object(self, dev_path, part, policy_index, obj_hash, stats, volume=None):
        """Check one object; quarantine it if it is corrupt. Tallies into ``stats``."""
        df = self.diskfiles.get_diskfile_from_hash(dev_path, part, obj_hash, policy_index)
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
            metadata = df.get_datafile_metadata()
            problem = _metadata_problem(metadata)
            if problem is None:
                problem = self._check_bytes(df, metadata, stats, volume)
        stats["objects_checked"] += 1
        if problem is not None:
            if problem != "truncated":  # a short read already quarantined it
                df.quarantine(problem)
            stats["quarantined"] += 1

    @staticmethod
    def _check_bytes(df, metadata, stats, volume):
        """Read the whole object; None if its MD5 matches its ETag, else what is wrong."""
        length = df.content_length
        reader = df.reader()
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            for chunk in reader:
                md5.update(chunk)
                stats["bytes"] += len(chunk)
                if volume is not None:
                    volume.spend(len(chunk))
        finally:
            reader.close()
        if reader.bytes_read != length:
            return "truncated"
        if md5.hexdigest() != metadata["ETag"].lower():
            return f"bytes hash to {md5.hexdigest()}, ETag is {metadata['ETag']}"
        return None


def _metadata_problem(metadata):
    """What is wrong with a data file's metadata (beyond what DiskFile checks), or None."""
    etag = metadata.get("ETag", "")
    if len(etag) != 32 or not set(etag.lower()) <= _HEX:
        return f"bad ETag {etag[:40]!r}"
    name = metadata.get("name", "")
    if not name.startswith("/") or name.count("/") < 3:
        return f"bad name {name[:80]!r}"
    return None
