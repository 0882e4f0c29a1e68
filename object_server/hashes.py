"""Suffix hashes of a partition: how replicators tell cheaply what differs.

Every write appends its suffix to ``<part>/hashes.invalid``. ``get_hashes`` folds those
into ``<part>/hashes.msgpack`` (``{"gen": n, "hashes": {suffix: md5-hex or None}}``),
recomputes the suffixes that are unknown, and saves the result. A suffix's hash is the
MD5 of the sorted ``<hash>/<file name>`` lines of every hash dir in it, after cleaning
obsolete files away, so two nodes holding the same objects at the same timestamps agree.

Both files are only touched under an flock on ``<part>/.lock``. Hashing itself runs
without the lock; the ``gen`` counter tells a slow hasher that someone saved in the
meantime, and it starts again rather than overwrite newer knowledge.

For replication, ``yield_object_states`` lists what the hash dirs of some suffixes hold
(one ObjectState each, read-only), and a handoff partition whose objects have reached
their primaries is taken apart with ``purge_files`` and ``remove_empty_partition``.
"""

import errno
import fcntl
import hashlib
import logging
import os
import time
from contextlib import contextmanager
from typing import NamedTuple

import msgpack

from common.fileops import atomic_write_bytes
from common.timestamp import Timestamp
from object_server import layout
from object_server.filenames import gather

PARTITION_HOUSEKEEPING = frozenset({layout.HASHES_FILE, layout.INVALID_FILE, layout.LOCK_FILE})

LOCK_TIMEOUT = 10.0
MAX_ATTEMPTS = 5
logger = logging.getLogger("haneul.object.hashes")


class LockTimeout(Exception):
    """A partition lock could not be taken in time."""


@contextmanager
def partition_lock(part_dir, timeout=LOCK_TIMEOUT):
    """Hold the partition's flock. Polls rather than blocks, so green threads cooperate."""
    fd = os.open(os.path.join(part_dir, layout.LOCK_FILE), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"could not lock {part_dir} in {timeout}s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def cleanup_hash_dir(path, reclaim_before=None):
    """Delete the obsolete files of a hash dir (and the dir if empty); return its OnDisk.

    Files vanishing underneath us (another cleaner) are fine. A missing dir yields an
    empty OnDisk.
    """
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        names = []
    ondisk = gather(names, reclaim_before)
    for name in ondisk.obsolete:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    if names and len(ondisk.obsolete) == len(names):
        try:
            os.rmdir(path)
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                raise
    return ondisk


def invalidate_hash(suffix_dir):
    """Note that ``<part>/<suffix>`` changed, so the next get_hashes rehashes it."""
    part_dir, suffix = os.path.split(suffix_dir.rstrip("/"))
    with partition_lock(part_dir):
        with open(os.path.join(part_dir, layout.INVALID_FILE), "a", encoding="ascii") as fp:
            fp.write(suffix + "\n")


def cleaned_hash_dirs(suffix_dir, reclaim_before=None):
    """``(hash, OnDisk)`` of each hash dir of a suffix, in hash order, obsolete files
    cleaned away first. A missing suffix dir has none."""
    try:
        hash_names = sorted(os.listdir(suffix_dir))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        logger.warning("suffix %s is not a directory; ignoring it", suffix_dir)
        return
    for obj_hash in hash_names:
        path = os.path.join(suffix_dir, obj_hash)
        if os.path.isdir(path):
            yield obj_hash, cleanup_hash_dir(path, reclaim_before)


def remove_suffix_dir(suffix_dir):
    """rmdir a suffix that holds nothing any more (one that still does stays)."""
    try:
        os.rmdir(suffix_dir)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.ENOTDIR):
            raise


def hash_suffix(suffix_dir, reclaim_before=None):
    """The MD5 hex of a suffix dir's contents, or None if it holds nothing (then removed)."""
    md5 = hashlib.md5(usedforsecurity=False)
    found = False
    for obj_hash, ondisk in cleaned_hash_dirs(suffix_dir, reclaim_before):
        for info in sorted(ondisk.kept(), key=lambda i: i.filename):
            md5.update(f"{obj_hash}/{info.filename}\n".encode())
            found = True
    if not found:
        remove_suffix_dir(suffix_dir)
        return None
    return md5.hexdigest()


def _load(part_dir):
    """(gen, hashes) from hashes.msgpack; (0, None) if missing or unreadable."""
    path = os.path.join(part_dir, layout.HASHES_FILE)
    try:
        with open(path, "rb") as fp:
            state = msgpack.unpackb(fp.read(), raw=False)
    except FileNotFoundError:
        return 0, None
    except (ValueError, TypeError, msgpack.UnpackException):
        logger.warning("unreadable %s; rehashing the partition", path)
        return 0, None
    if not isinstance(state, dict) or not isinstance(state.get("hashes"), dict):
        logger.warning("malformed %s; rehashing the partition", path)
        return 0, None
    return int(state.get("gen", 0)), state["hashes"]


def _save(part_dir, gen, hashes):
    data = msgpack.packb({"gen": gen, "hashes": hashes, "updated": time.time()})
    # A cache: after a crash that loses it, suffixes are simply hashed again.
    atomic_write_bytes(os.path.join(part_dir, layout.HASHES_FILE), data, durable=False)


def _take_invalid(part_dir):
    """The suffixes listed in hashes.invalid, emptying it."""
    path = os.path.join(part_dir, layout.INVALID_FILE)
    try:
        with open(path, "r+", encoding="ascii", errors="replace") as fp:
            suffixes = {line.strip() for line in fp if layout.is_suffix(line.strip())}
            fp.seek(0)
            fp.truncate()
    except FileNotFoundError:
        return set()
    return suffixes


def _list_suffixes(part_dir):
    return [name for name in os.listdir(part_dir) if layout.is_suffix(name)]


def get_hashes(
    dev_path, partition, policy_index, recalculate=(), reclaim_age=None, hasher=hash_suffix
):
    """``{suffix: md5-hex}`` for a partition, recomputing invalidated and named suffixes.

    ``reclaim_age`` (seconds) lets hashing delete tombstones older than that. A
    partition that does not exist has no suffixes. ``hasher(suffix_dir,
    reclaim_before)`` computes one suffix's value (None: the suffix is empty); an
    erasure-coded policy passes its own (object_server.ec_hashes).
    """
    part_dir = layout.partition_dir(dev_path, partition, policy_index)
    if not os.path.isdir(part_dir):
        return {}
    recalculate = {s for s in recalculate if layout.is_suffix(s)}
    reclaim_before = None
    if reclaim_age is not None:
        reclaim_before = Timestamp(max(time.time() - reclaim_age, 0))

    hashes = {}
    for _attempt in range(MAX_ATTEMPTS):
        with partition_lock(part_dir):
            gen, hashes = _load(part_dir)
            # Every listed suffix was renamed into place before now, so either the
            # cache marks it for rehashing or the full listing below will see it.
            invalid = _take_invalid(part_dir)
            if hashes is not None and invalid:
                hashes.update(dict.fromkeys(invalid))
                gen += 1
                _save(part_dir, gen, hashes)
        if hashes is None:
            hashes = dict.fromkeys(_list_suffixes(part_dir))
        hashes.update(dict.fromkeys(recalculate))
        stale = [s for s, h in hashes.items() if h is None]
        if not stale and gen:
            return hashes  # the cache was whole and current: nothing to hash or save
        for suffix in stale:
            value = hasher(os.path.join(part_dir, suffix), reclaim_before)
            if value is None:
                del hashes[suffix]
            else:
                hashes[suffix] = value
        with partition_lock(part_dir):
            current_gen, _ = _load(part_dir)
            if current_gen == gen:
                _save(part_dir, gen + 1, hashes)
                return hashes
        # Someone saved between our two looks: start again from what they saved.
    logger.warning("%s kept changing while hashing; returning unsaved hashes", part_dir)
    return hashes


# -- replication: listing a partition's objects, removing a handoff partition ---------


class ObjectState(NamedTuple):
    """What one hash dir holds, as replication compares it with another node's."""

    hash: str
    timestamp: Timestamp  # of the .data, or of the tombstone when deleted
    deleted: bool
    meta_timestamp: Timestamp | None  # of a .meta newer than the data
    filenames: tuple  # the files that make this state


def _listdir(path):
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def list_partitions(objects_dir):
    """The partition numbers that have a directory under an objects dir, sorted."""
    return sorted(int(n) for n in _listdir(objects_dir) if n.isascii() and n.isdigit())


def yield_object_states(part_dir, suffixes=None):
    """An ObjectState for each object in a partition's suffixes (all of them by default).

    Read-only: obsolete files are not cleaned (hashing does that). Hash dirs without a
    data file or tombstone (an orphan .meta, an EC write in flight) are skipped.
    """
    if suffixes is None:
        suffixes = [s for s in _listdir(part_dir) if layout.is_suffix(s)]
    for suffix in sorted(suffixes):
        suffix_dir = os.path.join(part_dir, suffix)
        for obj_hash in sorted(_listdir(suffix_dir)):
            if not layout.is_hash(obj_hash):
                continue
            state = read_object_state(os.path.join(suffix_dir, obj_hash))
            if state is not None:
                yield state


def read_object_state(hash_dir):
    """The ObjectState of one hash dir; None if it holds no data file or tombstone."""
    ondisk = gather(_listdir(hash_dir))
    if ondisk.base is None:
        return None
    return ObjectState(
        os.path.basename(hash_dir),
        ondisk.base.timestamp,
        ondisk.deleted,
        ondisk.meta.timestamp if ondisk.meta else None,
        tuple(info.filename for info in ondisk.kept()),
    )


def purge_files(hash_dir, filenames):
    """Delete the named files of a hash dir, and the dir if that empties it.

    Files already gone are fine; files not named (a newer write) stay. The suffix is
    marked for rehashing.
    """
    for name in filenames:
        try:
            os.unlink(os.path.join(hash_dir, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(hash_dir)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTEMPTY):
            raise
    suffix_dir = os.path.dirname(hash_dir)
    if os.path.isdir(suffix_dir):
        invalidate_hash(suffix_dir)


def remove_empty_partition(part_dir):
    """Delete a partition dir that holds nothing but its hash files; True if it is gone.

    Runs under the partition lock and only ever rmdirs, so a write that lands meanwhile
    (it creates its suffix dir first) keeps the partition.
    """
    try:
        with partition_lock(part_dir):
            names = set(os.listdir(part_dir))
            if names - PARTITION_HOUSEKEEPING:
                return False
            for name in names:
                os.unlink(os.path.join(part_dir, name))
            os.rmdir(part_dir)
    except FileNotFoundError:
        return True
    except OSError as err:
        if err.errno == errno.ENOTEMPTY:
            return False
        raise
    return True
