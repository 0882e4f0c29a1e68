"""Suffix hashes of an erasure-coded partition: comparable between fragment indexes.

A replicated suffix hashes the names of its files, so two nodes agree when they hold
the same files. EC nodes never hold the same files: node 1 has ``<ts>#1#d.data`` where
node 2 has ``<ts>#2#d.data``. So an EC suffix's value is a map, one entry per fragment
index held durably in the suffix plus one for none::

    {suffix: {"<frag index>": md5-hex, ..., "none": md5-hex}}

Each entry hashes sorted lines, one per object of the suffix, that name the object's
hash and timestamps but never a fragment index:

- ``<hash> <ts> d``  a durable fragment archive of that index, at ``ts``;
- ``<hash> <ts> t``  a tombstone (in every entry);
- ``<hash> <ts> m``  a .meta newer than the data or tombstone (in every entry).

``"none"`` has only the tombstone and .meta lines: it is what a node holding no
fragment of some index looks like to a peer comparing that index. Non-durable
fragments (a write not committed yet) are in no entry, and an entry hashing no line
at all compares as if the suffix were absent.

So node i (holding frag i) and node j (holding frag j) compare ``view(mine, i)`` with
``view(theirs, j)``: equal when both hold the same objects durably at the same
timestamps, different when one lacks an object, holds it older, or misses a
tombstone or a POST. A handoff holding several indexes of an object has an entry for
each, all equal. Keys are strings so that the map packs and unpacks as msgpack with
strict map keys. Replicated policies keep their plain ``{suffix: md5-hex}``.
"""

import hashlib

from object_server.filenames import TOMBSTONE
from object_server.hashes import cleaned_hash_dirs, remove_suffix_dir

NO_FRAGMENT = "none"
EMPTY = hashlib.md5(b"", usedforsecurity=False).hexdigest()


def object_lines(obj_hash, ondisk):
    """``(common lines, {frag index: lines})`` of one hash dir's OnDisk."""
    common = []
    by_frag = {}
    base = ondisk.base
    if base is not None and base.ext == TOMBSTONE:
        common.append(f"{obj_hash} {base.timestamp.internal} t")
    elif base is not None:
        for info in ondisk.data:
            if info.durable and info.frag_index is not None:
                line = f"{obj_hash} {info.timestamp.internal} d"
                by_frag.setdefault(info.frag_index, []).append(line)
    if ondisk.meta is not None:
        common.append(f"{obj_hash} {ondisk.meta.timestamp.internal} m")
    return common, by_frag


def hash_ec_suffix(suffix_dir, reclaim_before=None):
    """The ``{frag index or "none": md5-hex}`` of a suffix dir; None if it holds nothing
    (then it is removed). Obsolete files are cleaned away first, as for replication."""
    common = []
    by_frag = {}
    found = False
    for obj_hash, ondisk in cleaned_hash_dirs(suffix_dir, reclaim_before):
        found = found or bool(ondisk.kept())
        obj_common, obj_frags = object_lines(obj_hash, ondisk)
        common.extend(obj_common)
        for frag_index, lines in obj_frags.items():
            by_frag.setdefault(frag_index, []).extend(lines)
    if not found:
        remove_suffix_dir(suffix_dir)
        return None
    value = {NO_FRAGMENT: _md5_lines(common)}
    for frag_index, lines in by_frag.items():
        value[_key(frag_index)] = _md5_lines(common + lines)
    return value


def _key(frag_index):
    return NO_FRAGMENT if frag_index is None else str(frag_index)


def _md5_lines(lines):
    md5 = hashlib.md5(usedforsecurity=False)
    for line in sorted(lines):
        md5.update(line.encode("ascii") + b"\n")
    return md5.hexdigest()


def suffix_view(value, frag_index):
    """What a suffix value says about fragment ``frag_index``: its entry, else "none";
    None for a suffix the node does not have, or holds nothing durable in (only
    uncommitted writes), or a value of the wrong shape."""
    if not isinstance(value, dict):
        return None
    view = value.get(_key(frag_index), value.get(NO_FRAGMENT))
    return None if view == EMPTY else view


def differing_suffixes(local, remote, local_index, remote_index):
    """The suffixes of ``local`` whose view for ``local_index`` differs from the view of
    ``remote`` for ``remote_index``, sorted (both are ``{suffix: value}``)."""
    return sorted(
        suffix
        for suffix, value in local.items()
        if suffix_view(value, local_index) != suffix_view(remote.get(suffix), remote_index)
    )
