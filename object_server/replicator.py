"""The object replicator: keeps every partition's objects on all of its primary devices.

One pass (``run_once``) walks, for every replication policy whose ring is in
``ring_dir``, every partition directory of every local device (the ring's devices on
this node's address and object port, see ``common.daemon.local_devices``):

- On a *primary* device for the partition, it asks each other primary for its suffix
  hashes (``REPLICATE /<dev>/<part>``), rehashes the local suffixes that differ, and
  for those still differing pushes what the remote lacks or holds older with SSYNC
  (object_server.ssync), then has the remote rehash them (``REPLICATE
  /<dev>/<part>/<suf>-<suf>``). A primary whose device is unmounted (507) is replaced
  by the partition's first handoff, so the copies are still made somewhere.
- On a *handoff* device (not a primary: the partition was moved away, or a write
  landed here while a primary was down) it pushes everything to every primary. Once
  every primary has confirmed every object, the objects that were listed are deleted
  here (a newer write that arrived meanwhile stays for the next pass), then the
  partition directory if it is empty. Any primary failing keeps the partition.

Tombstones travel like data. Tombstones older than ``reclaim_age`` are removed while a
suffix is hashed (object_server.hashes); the auditor marks the suffixes of such stale
tombstones for rehashing, so that they go even where nothing else changes.

Partitions are handled one at a time and remotes one after another: simple, gentle on
the disks, and a pass over a node is still quick because unchanged suffixes cost one
hash comparison.
"""

import logging
import time

from common import daemon as agent_helpers
from common.concurrency import Pile
from common.config import config_float, config_int, config_true
from common.policies import load_policies
from object_server import layout
from object_server.diskfile import DEFAULT_RECLAIM_AGE, DiskFileManager
from object_server.hashes import LockTimeout
from object_server.partition_walk import (
    RemoteUnmounted,
    ReplicationError,
    local_devices,
    local_partitions,
    mounted_device_path,
    replicate,
    where,
)
from object_server.ssync_sender import Sender, SyncError

REPLICATE_SUFFIXES_PER_REQUEST = 512  # keeps the request line far below 8 KiB
MAX_HASHES_ANSWER = 1024 * 1024


def new_counters():
    return {
        "partitions_checked": 0,
        "primary_partitions": 0,
        "handoff_partitions": 0,
        "suffixes_synced": 0,
        "objects_pushed": 0,
        "handoffs_removed": 0,
        "errors": 0,
        "duration": 0.0,
    }


class ObjectReplicator:
    """One pass (``run_once``) of object replication for this node; the agent loops it."""

    name = "object-replicator"

    def __init__(self, conf, logger=None):
        conf = dict(conf or {})
        self.conf = conf
        self.logger = logger or logging.getLogger("haneul.object-replicator")
        self.devices = conf.get("devices", "/srv/node")
        self.mount_check = config_true(conf.get("mount_check", "false"))
        self.conn_timeout = config_float(conf.get("conn_timeout", "0.5"), "conn_timeout", 0)
        self.node_timeout = config_float(conf.get("node_timeout", "10"), "node_timeout", 0)
        self.reclaim_age = config_int(
            conf.get("reclaim_age", DEFAULT_RECLAIM_AGE), "reclaim_age", 0
        )
        # Partitions replicated side by side: a pass is mostly waiting on peers' answers.
        self.concurrency = config_int(conf.get("concurrency", "4"), "concurrency", 1)
        haneul_conf = conf.get("haneul_conf", "").strip() or None
        self.hash_secrets = agent_helpers.hash_secrets_of(conf)
        self.policies = load_policies(haneul_conf)
        self.diskfiles = DiskFileManager(
            self.hash_secrets,
            disk_chunk_size=config_int(conf.get("disk_chunk_size", 65536), "disk_chunk_size", 1),
            reclaim_age=self.reclaim_age,
            logger=self.logger,
        )

    # -- the pass ------------------------------------------------------------------------

    def run_once(self, devices=None):
        """Replicate every local partition (of the named devices only, if given)."""
        stats = new_counters()
        started = time.monotonic()
        # Erasure-coded policies are the reconstructor's.
        replicated = [policy for policy in self.policies if policy.policy_type == "replication"]
        for policy, ring, dev in local_devices(
            self.conf, replicated, self.hash_secrets, devices, self.logger, "replicated"
        ):
            self._replicate_device(ring, dev, policy.index, stats)
        stats["duration"] = round(time.monotonic() - started, 3)
        self.logger.info(
            "object replication pass: %d partitions (%d primary, %d handoff), "
            "%d suffixes synced, %d objects pushed, %d handoffs removed, %d errors in %.2fs",
            stats["partitions_checked"],
            stats["primary_partitions"],
            stats["handoff_partitions"],
            stats["suffixes_synced"],
            stats["objects_pushed"],
            stats["handoffs_removed"],
            stats["errors"],
            stats["duration"],
        )
        return stats

    def _replicate_device(self, ring, dev, policy_index, stats):
        dev_path = mounted_device_path(self.devices, dev, self.mount_check, self.logger)
        if dev_path is None:
            return
        self.diskfiles.cleanup_tmp(dev_path, self.reclaim_age)
        pile = Pile(self.concurrency)
        for part in local_partitions(self.diskfiles, ring, dev_path, policy_index, self.logger):
            stats["partitions_checked"] += 1
            pile.spawn(self._replicate_one, ring, dev, dev_path, part, policy_index, stats)
        for error in pile:
            if error is not None:  # an unexpected exception, handed back by the pile
                stats["errors"] += 1
                self.logger.error("%s: %r", dev_path, error)

    def _replicate_one(self, ring, dev, dev_path, part, policy_index, stats):
        try:
            self.replicate_partition(ring, dev, dev_path, part, policy_index, stats)
        except (LockTimeout, OSError) as err:
            stats["errors"] += 1
            self.logger.error("%s partition %d: %s", dev_path, part, err)

    def replicate_partition(self, ring, dev, dev_path, part, policy_index, stats):
        """Replicate one partition of a local device (a primary's or a handoff's)."""
        primaries = ring.get_part_nodes(part)
        if any(node["id"] == dev["id"] for node in primaries):
            stats["primary_partitions"] += 1
            peers = [node for node in primaries if node["id"] != dev["id"]]
            self._update_primary(ring, dev, dev_path, part, policy_index, peers, stats)
        else:
            stats["handoff_partitions"] += 1
            self._update_handoff(dev_path, part, policy_index, primaries, stats)

    # -- a primary's partition -------------------------------------------------------------

    def _update_primary(self, ring, dev, dev_path, part, policy_index, peers, stats):
        local_hashes = self.diskfiles.get_hashes(dev_path, part, policy_index)
        substitutes = None
        for node in peers:
            try:
                try:
                    remote_hashes = self.remote_hashes(node, part, policy_index)
                except RemoteUnmounted:
                    if substitutes is None:
                        used = {dev["id"], *(n["id"] for n in peers)}
                        substitutes = (n for n in ring.get_more_nodes(part) if n["id"] not in used)
                    node = next(substitutes, None)
                    if node is None:
                        continue
                    remote_hashes = self.remote_hashes(node, part, policy_index)
                local_hashes, _ = self._sync_suffixes(
                    node, dev_path, part, policy_index, local_hashes, remote_hashes, stats
                )
            except (ReplicationError, RemoteUnmounted, SyncError) as err:
                stats["errors"] += 1
                self.logger.warning("partition %d to %s: %s", part, where(node), err)

    def _sync_suffixes(self, node, dev_path, part, policy_index, local, remote, stats, states=None):
        """Push the suffixes where ``local`` and ``remote`` hashes differ to ``node``.

        Returns (the local hashes, refreshed where they differed; the SyncResult or None).
        ``states`` (a partition listing) is used instead of reading the suffixes afresh.
        """
        differing = [s for s, h in local.items() if remote.get(s) != h]
        if not differing:
            return local, None
        # The cache may be stale: rehash before moving anything.
        local = self.diskfiles.get_hashes(dev_path, part, policy_index, differing)
        differing = sorted(s for s in differing if s in local and remote.get(s) != local[s])
        if not differing:
            return local, None
        if states is None:
            states = self.diskfiles.yield_hashes(dev_path, part, policy_index, differing)
        else:
            wanted = set(differing)
            states = [s for s in states if layout.suffix_of(s.hash) in wanted]
        sender = Sender(
            self.diskfiles,
            node,
            dev_path,
            part,
            policy_index,
            self.conn_timeout,
            self.node_timeout,
            self.logger,
        )
        result = sender.sync(states)
        stats["suffixes_synced"] += len(differing)
        stats["objects_pushed"] += result.objects_sent
        if result.failed:
            stats["errors"] += len(result.failed)
            self.logger.warning(
                "partition %d to %s: %d objects refused, e.g. %s",
                part,
                where(node),
                len(result.failed),
                next(iter(result.failed.items())),
            )
        self.remote_hashes(node, part, policy_index, differing)
        return local, result

    # -- a handoff's partition ---------------------------------------------------------------

    def _update_handoff(self, dev_path, part, policy_index, primaries, stats):
        local_hashes = self.diskfiles.get_hashes(dev_path, part, policy_index)
        states = list(self.diskfiles.yield_hashes(dev_path, part, policy_index))
        everywhere = True
        for node in primaries if states else ():
            try:
                remote_hashes = self.remote_hashes(node, part, policy_index)
                local_hashes, result = self._sync_suffixes(
                    node, dev_path, part, policy_index, local_hashes, remote_hashes, stats, states
                )
                if result is not None and result.failed:
                    everywhere = False
            except (ReplicationError, RemoteUnmounted, SyncError) as err:
                everywhere = False
                stats["errors"] += 1
                self.logger.warning("handoff partition %d to %s: %s", part, where(node), err)
        if not everywhere:
            return
        for state in states:
            self.diskfiles.purge(dev_path, part, policy_index, state.hash, state.filenames)
        if self.diskfiles.remove_partition_if_empty(dev_path, part, policy_index):
            stats["handoffs_removed"] += 1
            self.logger.info("removed handoff partition %d of %s", part, dev_path)

    # -- talking to remotes ------------------------------------------------------------------

    def remote_hashes(self, node, part, policy_index, recalculate=()):
        """The remote's ``{suffix: hash}`` (rehashing ``recalculate`` first).

        Raises RemoteUnmounted on 507, ReplicationError on anything else but 200.
        """
        recalculate = list(recalculate)
        groups = [
            recalculate[i : i + REPLICATE_SUFFIXES_PER_REQUEST]
            for i in range(0, len(recalculate), REPLICATE_SUFFIXES_PER_REQUEST)
        ] or [[]]
        hashes = {}
        for group in groups:
            hashes.update(
                replicate(
                    node,
                    part,
                    policy_index,
                    group,
                    MAX_HASHES_ANSWER,
                    conn_timeout=self.conn_timeout,
                    node_timeout=self.node_timeout,
                )
            )
        return hashes
