"""Where object files live on a device: one place that spells every directory name.

``<dev>/objects[-N]/<part>/<suffix>/<hash>/``   an object's files (policy N > 0 adds -N)
``<dev>/objects[-N]/<part>/hashes.msgpack``     cached suffix hashes of the partition
``<dev>/objects[-N]/<part>/hashes.invalid``     suffixes written since the cache
``<dev>/tmp/``                                  files being written
``<dev>/async_pending[-N]/<suffix>/<hash>-<ts>`` container updates still to send
``<dev>/quarantined/objects[-N]/<hash>/``       hash dirs found corrupt
"""

import os

from common.hashing import is_hex

TMP_DIR = "tmp"
HASHES_FILE = "hashes.msgpack"
INVALID_FILE = "hashes.invalid"
LOCK_FILE = ".lock"
SUFFIX_LENGTH = 3
HASH_LENGTH = 32


def policy_dir_name(base, policy_index):
    """``objects`` for policy 0, ``objects-3`` for policy 3 (same for async_pending)."""
    policy_index = int(policy_index)
    if policy_index < 0:
        raise ValueError(f"bad policy index {policy_index}")
    return base if policy_index == 0 else f"{base}-{policy_index}"


def policy_indexes(dev_path, base="objects"):
    """The policy indexes that have a ``base[-N]`` dir on a device (``async_pending`` too)."""
    try:
        names = os.listdir(dev_path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        if name == base:
            found.append(0)
        elif name.startswith(base + "-"):
            index = name[len(base) + 1 :]
            if index.isascii() and index.isdigit() and index == str(int(index)) != "0":
                found.append(int(index))
    return sorted(found)


def objects_dir(dev_path, policy_index):
    return os.path.join(dev_path, policy_dir_name("objects", policy_index))


def partition_dir(dev_path, partition, policy_index):
    return os.path.join(objects_dir(dev_path, policy_index), str(int(partition)))


def suffix_of(obj_hash):
    """The suffix dir of a hash: its last three hex digits."""
    return obj_hash[-SUFFIX_LENGTH:]


def hash_dir(dev_path, partition, policy_index, obj_hash):
    return os.path.join(
        partition_dir(dev_path, partition, policy_index), suffix_of(obj_hash), obj_hash
    )


def tmp_dir(dev_path):
    return os.path.join(dev_path, TMP_DIR)


def async_pending_dir(dev_path, policy_index):
    return os.path.join(dev_path, policy_dir_name("async_pending", policy_index))


def quarantine_dir(dev_path, policy_index):
    return os.path.join(dev_path, "quarantined", policy_dir_name("objects", policy_index))


def is_suffix(name):
    """A suffix dir name: three lowercase hex digits."""
    return is_hex(name, SUFFIX_LENGTH)


def is_hash(name):
    """A hash dir name: 32 lowercase hex digits."""
    return is_hex(name, HASH_LENGTH)
