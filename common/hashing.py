"""Hashing names onto the ring: the cluster's secret prefix and suffix around an MD5.

Every account, container and object name maps to a 32-hex-digit hash; its first four
bytes pick the partition. The prefix/suffix are set once per cluster in
``haneul.conf [hash]`` and never changed, or every name would move.
"""

import hashlib
from functools import lru_cache

from common.config import ConfigError, haneul_conf_path, read_conf


class HashSecrets:
    """The cluster's hash path prefix and suffix."""

    __slots__ = ("prefix", "suffix")

    def __init__(self, prefix, suffix):
        if not prefix and not suffix:
            raise ConfigError("[hash] needs a prefix or a suffix (or both)")
        self.prefix = prefix.encode("utf-8")
        self.suffix = suffix.encode("utf-8")


_HEX_DIGITS = frozenset("0123456789abcdef")


def is_hex(text, length):
    """True if ``text`` is exactly ``length`` lowercase hex digits (an MD5 is 32)."""
    return len(text) == length and set(text) <= _HEX_DIGITS


@lru_cache(maxsize=8)
def load_hash_secrets(path=None):
    """Read ``[hash] prefix/suffix`` from haneul.conf; missing secrets are a ConfigError."""
    path = path or haneul_conf_path()
    conf = read_conf(path)
    if not conf.has_section("hash"):
        raise ConfigError(f"{path}: missing [hash] section with prefix and suffix")
    prefix = conf.get("hash", "prefix", fallback="").strip()
    suffix = conf.get("hash", "suffix", fallback="").strip()
    if not prefix and not suffix:
        raise ConfigError(f"{path}: [hash] prefix and suffix are both empty")
    return HashSecrets(prefix, suffix)


def hash_path(account, container=None, obj=None, secrets=None, raw_digest=False):
    """The hash of ``/account[/container[/object]]`` under the cluster's secrets."""
    if obj is not None and container is None:
        raise ValueError("an object name needs a container name")
    if secrets is None:
        secrets = load_hash_secrets()
    parts = [account]
    if container is not None:
        parts.append(container)
        if obj is not None:
            parts.append(obj)
    path = ("/" + "/".join(parts)).encode("utf-8")
    digest = hashlib.md5(secrets.prefix + path + secrets.suffix, usedforsecurity=False)
    return digest.digest() if raw_digest else digest.hexdigest()


def part_of_hash(digest, part_power):
    """The partition that a raw 16-byte digest falls in."""
    return int.from_bytes(digest[:4], "big") >> (32 - part_power)
