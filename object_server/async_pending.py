"""Container updates that could not be sent yet, kept on disk for the object updater.

One file per object write whose container update failed, at
``<dev>/async_pending[-N]/<last 3 hex of the object hash>/<object hash>-<timestamp>``,
holding a msgpack map::

    {"op": "PUT" | "DELETE", "account": str, "container": str, "obj": str,
     "headers": {str: str},          # exactly what the container server should get
     "container_host": "ip:port[,ip:port...]",   # the container servers that failed
     "container_device": "dev[,dev...]",          # paired with the hosts, in order
     "container_partition": str, "policy_index": int}

Several failed container replicas of one write share one record (comma-separated, the
same form as the X-Container-Host/-Device request headers). Written atomically: a temp
file in ``<dev>/tmp``, fsynced, renamed into place.
"""

import os

import msgpack

from common.fileops import atomic_write_bytes, makedirs
from object_server import layout

FIELDS = (
    "op",
    "account",
    "container",
    "obj",
    "headers",
    "container_host",
    "container_device",
    "container_partition",
    "policy_index",
)


class AsyncPendingError(Exception):
    """An async pending file is unreadable or malformed."""


def async_pending_path(dev_path, policy_index, obj_hash, timestamp):
    """Where the update for the write of ``obj_hash`` at ``timestamp`` is kept."""
    return os.path.join(
        layout.async_pending_dir(dev_path, policy_index),
        layout.suffix_of(obj_hash),
        f"{obj_hash}-{timestamp.internal}",
    )


def write_async_pending(dev_path, obj_hash, timestamp, record):
    """Save ``record`` (a dict with FIELDS) for the updater; returns its path."""
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"async pending record lacks {missing}")
    path = async_pending_path(dev_path, record["policy_index"], obj_hash, timestamp)
    makedirs(os.path.dirname(path))
    tmp = layout.tmp_dir(dev_path)
    makedirs(tmp)
    atomic_write_bytes(path, msgpack.packb(record, use_bin_type=True), tmp_dir=tmp)
    return path


def read_async_pending(path):
    """The record of an async pending file (AsyncPendingError if it is damaged)."""
    with open(path, "rb") as fp:
        data = fp.read()
    try:
        record = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise AsyncPendingError(f"{path}: not msgpack: {err}") from None
    if not isinstance(record, dict) or any(f not in record for f in FIELDS):
        raise AsyncPendingError(f"{path}: not an async pending record")
    return record
