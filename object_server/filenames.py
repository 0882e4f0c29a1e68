"""The names of an object's files in its hash dir, and which of them still matter.

A hash dir holds files named for the timestamp of the write that made them:

- ``<ts>.data``               a replicated object's bytes
- ``<ts>#<frag>.data``        an erasure-coded fragment archive, not yet committed
- ``<ts>#<frag>#d.data``      the same, committed ("durable")
- ``<ts>.ts``                 a tombstone (the object was deleted at ``ts``)
- ``<ts>.meta``               metadata from a POST newer than the data

``gather`` decides, for a listing of a hash dir, which file is the object's current
state and which files are obsolete. The rules, newest wins:

1. The *base* is the newest tombstone or durable ``.data`` (a tombstone wins a tie).
2. Kept: the base (every fragment at the base's timestamp, for EC); any non-durable
   ``.data`` newer than the base (an EC write in flight); the newest ``.meta`` if it
   is newer than the base.
3. Everything else with a name we understand is obsolete. Names we don't understand
   are left alone (they are not ours to delete).
4. With a reclaim horizon, a tombstone older than it is obsolete too, as is anything
   kept only because of a tombstone or an uncommitted write older than it.
"""

from typing import NamedTuple

from common.timestamp import InvalidTimestamp, Timestamp

DATA = ".data"
TOMBSTONE = ".ts"
META = ".meta"
EXTENSIONS = (DATA, TOMBSTONE, META)
MAX_FRAG_INDEX = 1 << 16


class FileInfo(NamedTuple):
    """One parsed file name of a hash dir."""

    filename: str
    timestamp: Timestamp
    ext: str
    frag_index: int | None = None
    durable: bool = True

    @property
    def is_durable_data(self):
        return self.ext == DATA and self.durable


def make_filename(timestamp, ext, frag_index=None, durable=False):
    """The file name for a write at ``timestamp`` (a Timestamp) of kind ``ext``."""
    if ext not in EXTENSIONS:
        raise ValueError(f"unknown extension {ext!r}")
    name = Timestamp(timestamp).internal
    if frag_index is not None:
        if ext != DATA:
            raise ValueError("only .data files carry a fragment index")
        name += f"#{int(frag_index)}"
        if durable:
            name += "#d"
    return name + ext


def parse_filename(filename):
    """A FileInfo for a name we write, or None for anything else."""
    base, dot, ext = filename.rpartition(".")
    if not dot or "." + ext not in EXTENSIONS:
        return None
    ext = "." + ext
    stamp, _, rest = base.partition("#")
    try:
        timestamp = Timestamp(stamp)
    except InvalidTimestamp:
        return None
    if timestamp.internal != stamp:
        return None  # only the canonical spelling is ours
    if not rest and "#" not in base:
        return FileInfo(filename, timestamp, ext)
    if ext != DATA:
        return None
    frag, _, marker = rest.partition("#")
    if not frag.isascii() or not frag.isdigit() or int(frag) >= MAX_FRAG_INDEX:
        return None
    if marker not in ("", "d") or (marker == "" and rest.endswith("#")):
        return None
    return FileInfo(filename, timestamp, ext, int(frag), marker == "d")


class OnDisk(NamedTuple):
    """What a hash dir holds, once its file names are understood."""

    base: FileInfo | None  # the newest tombstone or durable .data
    data: list  # the .data FileInfos at the base's timestamp (one, if replicated)
    pending: list  # non-durable .data FileInfos newer than the base
    meta: FileInfo | None  # the newest .meta newer than the base
    obsolete: list  # file names that may be deleted
    unknown: list  # file names we don't understand

    @property
    def deleted(self):
        return self.base is not None and self.base.ext == TOMBSTONE

    def kept(self):
        """The FileInfos that describe the object's state, newest first."""
        infos = list(self.pending)
        if self.meta:
            infos.append(self.meta)
        if self.base is not None:
            infos.extend(self.data if self.data else [self.base])
        return sorted(infos, key=_order, reverse=True)


def _order(info):
    # Newest first; at one instant a tombstone beats data, and data beats meta.
    rank = {TOMBSTONE: 2, DATA: 1, META: 0}[info.ext]
    return (info.timestamp, rank, info.frag_index or 0)


def gather(filenames, reclaim_before=None):
    """Sort the names of a hash dir into an OnDisk (see the module doc for the rules).

    ``reclaim_before`` is a Timestamp: tombstones and uncommitted writes older than it
    are obsolete.
    """
    infos = []
    unknown = []
    for name in filenames:
        info = parse_filename(name)
        if info is None:
            unknown.append(name)
        else:
            infos.append(info)
    infos.sort(key=_order, reverse=True)

    base = next((i for i in infos if i.ext == TOMBSTONE or i.is_durable_data), None)
    data, pending, metas = [], [], []
    obsolete = []
    for info in infos:
        if base is not None and info.timestamp < base.timestamp:
            obsolete.append(info)
        elif info.ext == META:
            if base is not None and info.timestamp <= base.timestamp:
                obsolete.append(info)
            else:
                metas.append(info)
        elif info.ext == TOMBSTONE:
            if info is not base:
                obsolete.append(info)
        elif base is not None and info.timestamp == base.timestamp:
            # .data at the base's instant: a fragment of the same write, unless a
            # tombstone of that instant won.
            if base.ext == DATA:
                data.append(info)
            else:
                obsolete.append(info)
        elif info.is_durable_data:
            obsolete.append(info)  # cannot happen: it would be the base
        else:
            pending.append(info)
    meta = metas[0] if metas else None
    obsolete.extend(metas[1:])

    if reclaim_before is not None:
        keeps_data = base is not None and base.ext == DATA
        if base is not None and base.ext == TOMBSTONE and base.timestamp < reclaim_before:
            obsolete.append(base)
            base = None
        old_pending = [i for i in pending if i.timestamp < reclaim_before]
        obsolete.extend(old_pending)
        pending = [i for i in pending if i.timestamp >= reclaim_before]
        if meta is not None and not keeps_data and meta.timestamp < reclaim_before:
            obsolete.append(meta)
            meta = None

    return OnDisk(
        base=base,
        data=data,
        pending=pending,
        meta=meta,
        obsolete=[i.filename for i in obsolete],
        unknown=unknown,
    )
