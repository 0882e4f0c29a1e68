"""The object reconstructor: keeps every fragment of every erasure-coded object in place.

One pass (``run_once``) walks, for every erasure-coded policy whose ring is in
``ring_dir``, every partition directory of every local device. A device's position
among the partition's primaries (``ring.get_part_nodes(part)``) is the fragment index
it holds; a device that is not a primary holds a handoff partition.

- *Primary* (fragment i): compare suffix hashes (REPLICATE; object_server.ec_hashes)
  with the partner on the right, primary (i + 1) % (k + m), and with ``sync_partners =
  2`` the one on the left too. For the suffixes that differ, an SSYNC check tells which
  objects the partner lacks or holds older. For each, its fragment is rebuilt: k
  archives of the same write (this device's own and the other primaries', by backend
  GET) are read segment by segment through ``driver.reconstruct``, and the result is
  streamed to the partner with the proxy's two-phase PUT + commit, original timestamp
  and metadata kept. Tombstones and newer POST metadata go over SSYNC. A partner whose
  device is unmounted (507) is replaced by the partition's first handoff, which will
  hand the fragment back once the primary returns.
- *Misplaced fragments* (on a handoff, or a primary holding another index than its
  own): each durable fragment archive goes, as it is, to the primary of its index
  (PUT + commit, plus its POST metadata), and is deleted here once that primary has it
  (or something newer). A handoff's tombstones go to every primary and are deleted
  once all have them; an emptied handoff partition is removed.

Nothing holds a whole object in memory: rebuilding keeps one segment's fragments,
moving an archive streams it. Partitions and objects are handled one at a time.
The object replicator leaves erasure-coded policies alone.

Options (``[object-reconstructor]`` over ``[object]`` of storage.conf): ``devices``,
``mount_check``, ``conn_timeout`` (0.5 s), ``node_timeout`` (10 s), ``reclaim_age``
(one week), ``disk_chunk_size`` (65536), ``sync_partners`` (2: right and left; 1:
right only), plus ``ring_dir``, ``haneul_conf``, ``bind_ip``/``ring_ip`` and ``port``
as every daemon.
"""

import logging
import time
from itertools import islice

from common import daemon as agent_helpers
from common.backend import BackendError
from common.config import ConfigError, config_int, config_true
from common.policies import load_policies
from object_server import ssync
from object_server.diskfile import DEFAULT_RECLAIM_AGE, DiskFileError, DiskFileNotExist
from object_server.ec_diskfile import ECDiskFileManager, ec_driver, is_ec_policy
from object_server.ec_hashes import differing_suffixes
from object_server.filenames import META, TOMBSTONE, parse_filename
from object_server.hashes import LockTimeout
from object_server.partition_walk import (
    RemoteUnmounted,
    ReplicationError,
    local_devices,
    local_partitions,
    mounted_device_path,
    where,
)
from object_server.reconstructor_fragments import (
    RebuildError,
    archive_chunks,
    local_source,
    object_names,
    push_fragment,
    rebuilt_segments,
    remote_hashes,
    remote_source,
)
from object_server.ssync_sender import Sender, SyncError, SyncResult

TRANSFER_ERRORS = (RebuildError, BackendError, DiskFileError)
PEER_ERRORS = (ReplicationError, RemoteUnmounted, SyncError, BackendError)


def new_counters():
    return {
        "partitions": 0,
        "primary_partitions": 0,
        "handoff_partitions": 0,
        "suffixes_checked": 0,
        "fragments_rebuilt": 0,
        "fragments_reverted": 0,
        "files_synced": 0,
        "handoffs_removed": 0,
        "errors": 0,
        "duration": 0.0,
    }


def _batches(items, size):
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class PartitionJob:
    """One partition of one local device, and what the ring says about it."""

    __slots__ = ("ring", "policy", "dev", "dev_path", "part", "primaries", "index")

    def __init__(self, ring, policy, dev, dev_path, part):
        self.ring = ring
        self.policy = policy
        self.dev = dev
        self.dev_path = dev_path
        self.part = part
        self.primaries = ring.get_part_nodes(part)
        # This device's fragment index, or None on a handoff.
        self.index = next((n["index"] for n in self.primaries if n["id"] == dev["id"]), None)

    @property
    def policy_index(self):
        return self.policy.index


class ObjectReconstructor:
    """One pass (``run_once``) of EC reconstruction for this node; the agent loops it."""

    name = "object-reconstructor"

    def __init__(self, conf, logger=None, policies=None):
        conf = dict(conf or {})
        self.conf = conf
        self.logger = logger or logging.getLogger("haneul.object-reconstructor")
        self.devices = conf.get("devices", "/srv/node")
        self.mount_check = config_true(conf.get("mount_check", "false"))
        self.timeouts = agent_helpers.direct_timeouts(conf)
        self.reclaim_age = config_int(
            conf.get("reclaim_age", DEFAULT_RECLAIM_AGE), "reclaim_age", 0
        )
        self.sync_partners = config_int(conf.get("sync_partners", "2"), "sync_partners", 1)
        if self.sync_partners > 2:
            raise ConfigError("sync_partners must be 1 (right) or 2 (right and left)")
        self.chunk_size = config_int(conf.get("disk_chunk_size", 65536), "disk_chunk_size", 1)
        self.hash_secrets = agent_helpers.hash_secrets_of(conf)
        if policies is None:
            policies = load_policies(conf.get("haneul_conf", "").strip() or None)
        self.policies = policies
        self.diskfiles = ECDiskFileManager(
            self.hash_secrets,
            disk_chunk_size=self.chunk_size,
            reclaim_age=self.reclaim_age,
            logger=self.logger,
        )

    # -- the pass ------------------------------------------------------------------------

    def run_once(self, devices=None):
        """Reconstruct every local EC partition (of the named devices only, if given)."""
        stats = new_counters()
        started = time.monotonic()
        ec_policies = [policy for policy in self.policies if is_ec_policy(policy)]
        for policy, ring, dev in local_devices(
            self.conf, ec_policies, self.hash_secrets, devices, self.logger, "reconstructed"
        ):
            self._reconstruct_device(ring, policy, dev, stats)
        stats["duration"] = round(time.monotonic() - started, 3)
        self.logger.info(
            "object reconstruction pass: %d partitions (%d primary, %d handoff), "
            "%d fragments rebuilt, %d reverted, %d files synced, %d handoffs removed, "
            "%d errors in %.2fs",
            stats["partitions"],
            stats["primary_partitions"],
            stats["handoff_partitions"],
            stats["fragments_rebuilt"],
            stats["fragments_reverted"],
            stats["files_synced"],
            stats["handoffs_removed"],
            stats["errors"],
            stats["duration"],
        )
        return stats

    def _reconstruct_device(self, ring, policy, dev, stats):
        dev_path = mounted_device_path(self.devices, dev, self.mount_check, self.logger)
        if dev_path is None:
            return
        for part in local_partitions(self.diskfiles, ring, dev_path, policy.index, self.logger):
            stats["partitions"] += 1
            try:
                self.reconstruct_partition(PartitionJob(ring, policy, dev, dev_path, part), stats)
            except (LockTimeout, OSError) as err:
                stats["errors"] += 1
                self.logger.error("%s partition %d: %s", dev_path, part, err)

    def reconstruct_partition(self, job, stats):
        """Sync a primary's fragments with its partners, and move misplaced ones home."""
        if job.index is None:
            stats["handoff_partitions"] += 1
        else:
            stats["primary_partitions"] += 1
            self._sync_partners(job, stats)
        self._revert(job, stats)

    # -- a primary and its partners -----------------------------------------------------

    def _partners(self, job):
        count = len(job.primaries)
        positions = [(job.index + 1) % count]
        if self.sync_partners > 1:
            positions.append((job.index - 1) % count)
        return [job.primaries[p] for p in dict.fromkeys(positions) if p != job.index]

    def _sync_partners(self, job, stats):
        local = self.diskfiles.get_hashes(job.dev_path, job.part, job.policy_index)
        if not local:
            return
        for node in self._partners(job):
            target = node
            try:
                try:
                    remote = remote_hashes(node, job.part, job.policy_index, self.timeouts)
                except RemoteUnmounted:
                    target = next(iter(job.ring.get_more_nodes(job.part)), None)
                    if target is None:
                        raise
                    remote = remote_hashes(target, job.part, job.policy_index, self.timeouts)
                local = self._sync_partner(job, target, node["index"], local, remote, stats)
            except PEER_ERRORS as err:
                stats["errors"] += 1
                self.logger.warning("partition %d to %s: %s", job.part, where(target), err)

    def _sync_partner(self, job, target, frag_index, local, remote, stats):
        """Bring ``target`` (holding ``frag_index``) up to date; returns the local hashes."""
        differing = differing_suffixes(local, remote, job.index, frag_index)
        if not differing:
            return local
        # The cache may be stale: rehash before moving anything.
        local = self.diskfiles.get_hashes(job.dev_path, job.part, job.policy_index, differing)
        differing = differing_suffixes(
            {s: local[s] for s in differing if s in local}, remote, job.index, frag_index
        )
        if not differing:
            return local
        stats["suffixes_checked"] += len(differing)
        states = self.diskfiles.yield_hashes(job.dev_path, job.part, job.policy_index, differing)
        sender = self._sender(job, target)
        for batch in _batches(states, ssync.CHECK_BATCH):
            wants = sender.check(batch)
            files = []  # tombstones and .metas, sent over SSYNC
            for state in batch:
                want = wants.get(state.hash, "")
                if state.deleted and "d" in want:
                    files.append((state, "d"))
                    continue
                if "d" in want and not self._rebuild(job, state, target, frag_index, stats):
                    continue
                if "m" in want:
                    files.append((state, "m"))
            self._send_files(sender, files, stats)
        return local

    def _sender(self, job, node):
        return Sender(
            self.diskfiles,
            node,
            job.dev_path,
            job.part,
            job.policy_index,
            self.timeouts["conn_timeout"],
            self.timeouts["node_timeout"],
            self.logger,
        )

    def _send_files(self, sender, files, stats):
        """SSYNC ``[(state, wants)]``; the hashes the remote refused."""
        failed = {}
        for group in _batches(files, ssync.UPDATE_BATCH):
            result = SyncResult()
            sender.update(group, result)
            stats["files_synced"] += result.files_sent
            stats["errors"] += len(result.failed)
            failed.update(result.failed)
        return failed

    def _rebuild(self, job, state, target, frag_index, stats):
        """Give ``target`` fragment ``frag_index`` of one object; True if it has it now.

        A local archive of that index is sent as it is (a revert); otherwise the
        fragment is rebuilt from k others.
        """
        df = self.diskfiles.get_fragment(
            job.dev_path, job.part, state.hash, job.policy_index, frag_index
        )
        try:
            df.open(check_expiry=False)
        except DiskFileNotExist:
            return False  # gone since it was listed
        sources = []
        try:
            with df:
                metadata = df.get_datafile_metadata()
                timestamp = df.data_timestamp
                if df.frag_index == frag_index:  # we hold the very fragment: send it
                    source = local_source(df)
                    sources.append(source)
                    chunks = archive_chunks(source, df.content_length, self.chunk_size)
                else:
                    sources = self._sources(job, df, metadata, frag_index)
                    driver = ec_driver(job.policy)
                    chunks = rebuilt_segments(driver, sources, frag_index, df.content_length)
                etag = push_fragment(
                    target,
                    job.part,
                    job.policy_index,
                    frag_index,
                    metadata,
                    timestamp,
                    chunks,
                    self.timeouts,
                )
        except TRANSFER_ERRORS as err:
            stats["errors"] += 1
            self.logger.warning(
                "cannot rebuild fragment %d of %s/%s in partition %d for %s: %s",
                frag_index,
                job.dev_path,
                state.hash,
                job.part,
                where(target),
                err,
            )
            return False
        finally:
            for source in sources:
                source.close()
        if etag is not None:
            moved = df.frag_index == frag_index
            stats["fragments_reverted" if moved else "fragments_rebuilt"] += 1
        return True

    def _sources(self, job, df, metadata, frag_index):
        """k FragmentSources of ``df``'s write, none of them ``frag_index``."""
        needed = int(job.policy.ec_ndata)
        sources = [local_source(df)]
        held = {df.frag_index, frag_index}
        names = object_names(metadata)
        ec_etag = metadata.get("X-Object-Sysmeta-Ec-Etag")
        try:
            for node in job.primaries:
                if len(sources) >= needed:
                    break
                if node["index"] in held or node["id"] == job.dev["id"]:
                    continue
                try:
                    source = remote_source(
                        node,
                        job.part,
                        names,
                        job.policy_index,
                        df.data_timestamp,
                        df.content_length,
                        ec_etag,
                        self.timeouts,
                    )
                except (RebuildError, BackendError) as err:
                    self.logger.info("no fragment from %s: %s", where(node), err)
                    continue
                if source.frag_index in held:
                    source.close()
                    continue
                held.add(source.frag_index)
                sources.append(source)
            if len(sources) < needed:
                raise RebuildError(f"found {len(sources)} of the {needed} fragments needed")
        except BaseException:
            for source in sources:
                source.close()
            raise
        return sources

    # -- misplaced fragments and a handoff's tombstones -----------------------------------

    def _revert(self, job, stats):
        """Send fragments that are not this device's index (all, on a handoff) home."""
        states = list(self.diskfiles.yield_hashes(job.dev_path, job.part, job.policy_index))
        by_index = {}
        tombstones = []
        for state in states:
            if state.deleted:
                if job.index is None:
                    tombstones.append(state)
                continue
            for name in state.filenames:
                info = parse_filename(name)
                if (
                    info is not None
                    and info.is_durable_data
                    and info.frag_index is not None
                    and info.frag_index != job.index
                    and info.timestamp == state.timestamp
                ):
                    by_index.setdefault(info.frag_index, []).append((state, name))
        reverted = set()
        for frag_index, items in sorted(by_index.items()):
            if frag_index >= len(job.primaries):
                stats["errors"] += 1
                self.logger.error(
                    "%s partition %d: fragment index %d beyond the ring",
                    job.dev_path,
                    job.part,
                    frag_index,
                )
                continue
            node = job.primaries[frag_index]
            try:
                reverted.update(self._revert_to(job, node, frag_index, items, stats))
            except PEER_ERRORS as err:
                stats["errors"] += 1
                self.logger.warning("partition %d to %s: %s", job.part, where(node), err)
        if tombstones:
            reverted.update(self._revert_tombstones(job, tombstones, stats))
        self._purge(job, states, reverted, stats)

    def _revert_to(self, job, node, frag_index, items, stats):
        """Move ``[(state, file name)]`` of fragment ``frag_index`` to its primary;
        the ``(hash, file name)`` pairs it now has (or has something newer of)."""
        sender = self._sender(job, node)
        done = []
        for batch in _batches(items, ssync.CHECK_BATCH):
            wants = sender.check([state for state, _ in batch])
            metas = []
            for state, name in batch:
                want = wants.get(state.hash, "")
                if "d" in want and not self._rebuild(job, state, node, frag_index, stats):
                    continue
                if "m" in want:
                    metas.append((state, "m"))
                done.append((state.hash, name))
            failed = self._send_files(sender, metas, stats)
            done = [(h, n) for h, n in done if h not in failed]
        return done

    def _revert_tombstones(self, job, tombstones, stats):
        """Push a handoff's tombstones to every primary; the files every one has."""
        everywhere = True
        for node in job.primaries:
            try:
                sender = self._sender(job, node)
                result = sender.sync(tombstones)
                stats["files_synced"] += result.files_sent
                if result.failed:
                    everywhere = False
                    stats["errors"] += len(result.failed)
            except SyncError as err:
                everywhere = False
                stats["errors"] += 1
                self.logger.warning("partition %d to %s: %s", job.part, where(node), err)
        if not everywhere:
            return set()
        return {
            (state.hash, name)
            for state in tombstones
            for name in state.filenames
            if name.endswith(TOMBSTONE)
        }

    def _purge(self, job, states, reverted, stats):
        """Delete what reached its primaries; on a handoff, an object's .meta goes with
        its last fragment, and an emptied partition goes too."""
        for state in states:
            names = [name for name in state.filenames if (state.hash, name) in reverted]
            if not names:
                continue
            if job.index is None:
                data_left = [
                    n
                    for n in state.filenames
                    if n not in names and (info := parse_filename(n)) and info.is_durable_data
                ]
                if not data_left:
                    names += [n for n in state.filenames if n.endswith(META)]
            self.diskfiles.purge(job.dev_path, job.part, job.policy_index, state.hash, names)
        if job.index is None and self.diskfiles.remove_partition_if_empty(
            job.dev_path, job.part, job.policy_index
        ):
            stats["handoffs_removed"] += 1
            self.logger.info("removed handoff partition %d of %s", job.part, job.dev_path)
