"""What the replicator and the reconstructor share as they walk a node's partitions.

- ``local_devices`` yields the local devices of some policies, each with its ring;
- ``local_partitions`` yields the partitions of a local device that its ring knows
  (``None`` for a device that is not mounted, after a log line);
- ``replicate`` asks a remote for its suffix hashes with ``REPLICATE /<dev>/<part>``;
- ``where`` names a node in log lines and errors.
"""

import msgpack

from common import daemon as agent_helpers
from common.backend import BackendError, request
from common.config import ConfigError
from common.devices import device_path
from common.http import HTTPError


class RemoteUnmounted(Exception):
    """The remote device answered 507: not mounted or not there."""


class ReplicationError(Exception):
    """A remote could not be asked for its hashes or synced."""


def where(node):
    return f"{node['ip']}:{node['port']}/{node['device']}"


def local_devices(conf, policies, hash_secrets, devices, logger, doing):
    """``(policy, ring, ring device)`` of this node's devices (only the named ones, unless
    ``devices`` is None) in each policy's ring, by device name; a policy whose ring is
    missing is logged as not ``doing`` (``replicated``...) and passed over."""
    only = set(devices) if devices is not None else None
    for policy in policies:
        try:
            ring = agent_helpers.load_ring(conf, policy.ring_name, hash_secrets)
        except ConfigError as err:
            logger.info("policy %d not %s: %s", policy.index, doing, err)
            continue
        for _name, dev in sorted(agent_helpers.local_devices(ring, conf, only).items()):
            yield policy, ring, dev


def mounted_device_path(devices, dev, mount_check, logger):
    """The path of a local ring device, or None (logged) if it is not mounted."""
    try:
        return device_path(devices, dev["device"], mount_check)
    except HTTPError:
        logger.warning("skipping %s: not mounted", dev["device"])
        return None


def local_partitions(diskfiles, ring, dev_path, policy_index, logger):
    """The partitions of a policy on a device, but those outside the ring (logged)."""
    for part in diskfiles.partitions(dev_path, policy_index):
        if part >= ring.partition_count:
            logger.warning(
                "%s: partition %d is outside the ring (%d partitions); left alone",
                dev_path,
                part,
                ring.partition_count,
            )
            continue
        yield part


def replicate(node, part, policy_index, suffixes, max_body, **timeouts):
    """One ``REPLICATE /<part>[/<suf>-<suf>...]``: the node's answer, a msgpack map.

    The named suffixes are rehashed first. Raises RemoteUnmounted on 507,
    ReplicationError on anything else but 200 or an answer that is not a map.
    """
    path = f"/{part}" + ("/" + "-".join(suffixes) if suffixes else "")
    headers = {
        "X-Backend-Storage-Policy-Index": str(policy_index),
        "X-Backend-Server-Type": "object",
    }
    try:
        resp = request(node, "REPLICATE", path, headers, max_body=max_body, **timeouts)
    except BackendError as err:
        raise ReplicationError(str(err)) from None
    if resp.status == 507:
        raise RemoteUnmounted(f"{where(node)} is not mounted")
    if resp.status != 200:
        raise ReplicationError(f"REPLICATE answered {resp.status}: {resp.body[:200]!r}")
    try:
        answer = msgpack.unpackb(resp.body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise ReplicationError(f"REPLICATE answer is not msgpack: {err}") from None
    if not isinstance(answer, dict):
        raise ReplicationError("REPLICATE answer is not a map")
    return answer
