"""What the proxy knows about accounts and containers, cached briefly per process.

An object request needs its container's storage policy and ACLs; asking the container
servers each time would double the work of a small GET or PUT. The proxy keeps the
answer of a container (or account) HEAD for ``ttl`` seconds in process memory and
drops it when it changes the container itself (PUT/POST/DELETE through this proxy):
the drop reaches the proxy's other worker processes through a table of change counters
they share (made here, at import, in the parent before the workers fork). Other
proxies' changes are seen after at most ``ttl`` seconds.
"""

import time

from common.shared_generations import SharedGenerations

# Shared by every worker forked after this module was imported.
WORKER_GENERATIONS = SharedGenerations()

META_PREFIX = {"account": "x-account-meta-", "container": "x-container-meta-"}
SYSMETA_PREFIX = {"account": "x-account-sysmeta-", "container": "x-container-sysmeta-"}


def _int_header(headers, name):
    try:
        return int(headers.get(name) or 0)
    except ValueError:
        return 0


def headers_to_info(kind, status, headers):
    """The info dict of an account or container from a backend answer's headers.

    ``headers`` is a mapping with case-insensitive ``get`` (an HTTPMessage) or a dict
    with lower-case keys. Keys: status, object_count, bytes, meta, sysmeta, headers;
    for containers also storage_policy, read_acl, write_acl; for accounts
    container_count.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    meta_prefix, sys_prefix = META_PREFIX[kind], SYSMETA_PREFIX[kind]
    info = {
        "status": status,
        "headers": lowered,
        "meta": {k[len(meta_prefix) :]: v for k, v in lowered.items() if k.startswith(meta_prefix)},
        "sysmeta": {
            k[len(sys_prefix) :]: v for k, v in lowered.items() if k.startswith(sys_prefix)
        },
    }
    if kind == "container":
        info["object_count"] = _int_header(lowered, "x-container-object-count")
        info["bytes"] = _int_header(lowered, "x-container-bytes-used")
        policy = lowered.get("x-backend-storage-policy-index") or lowered.get(
            "x-storage-policy-index"
        )
        info["storage_policy"] = int(policy) if policy and policy.isdigit() else None
        info["read_acl"] = lowered.get("x-container-read")
        info["write_acl"] = lowered.get("x-container-write")
    else:
        info["container_count"] = _int_header(lowered, "x-account-container-count")
        info["object_count"] = _int_header(lowered, "x-account-object-count")
        info["bytes"] = _int_header(lowered, "x-account-bytes-used")
    return info


def missing_info(kind, status=404):
    """The info of an account or container that does not exist (or could not be read)."""
    return headers_to_info(kind, status, {})


def cacheable(status):
    """Only "it exists" (2xx) is cached.

    A proxy runs several worker processes, each with its own cache: a 404 cached in one
    would hide, for ``ttl`` seconds, a container another worker has just created.
    """
    return 200 <= status < 300


class InfoCache:
    """A small TTL cache of info dicts, keyed by ("account", a) or ("container", a, c)."""

    def __init__(self, ttl=10.0, max_entries=10000, clock=time.monotonic, generations=None):
        self.ttl = float(ttl)
        self.max_entries = int(max_entries)
        self.clock = clock
        self.generations = generations if generations is not None else WORKER_GENERATIONS
        self._entries = {}

    def get(self, key):
        """The cached info for ``key``, or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, generation, info = entry
        if self.clock() >= expires or generation != self.generations.current(key):
            self._entries.pop(key, None)
            return None
        return info

    def put(self, key, info):
        """Remember ``info`` for ``ttl`` seconds (a ttl of 0 disables the cache)."""
        if self.ttl <= 0 or not cacheable(info["status"]):
            return
        if len(self._entries) >= self.max_entries:
            self._prune()
        self._entries[key] = (self.clock() + self.ttl, self.generations.current(key), info)

    def invalidate(self, key):
        """Forget ``key`` here and in the sibling workers (this proxy changed it)."""
        self._entries.pop(key, None)
        self.generations.bump(key)

    def _prune(self):
        now = self.clock()
        for key in [k for k, (expires, _gen, _info) in self._entries.items() if expires <= now]:
            self._entries.pop(key, None)
        if len(self._entries) >= self.max_entries:
            # Still full of live entries: drop the oldest half rather than grow forever.
            ordered = sorted(self._entries.items(), key=lambda item: item[1][0])
            for key, _entry in ordered[: len(ordered) // 2 + 1]:
                self._entries.pop(key, None)


def container_key(account, container):
    return ("container", account, container)


def account_key(account):
    return ("account", account)
