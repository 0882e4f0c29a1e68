"""Telling the container servers about an object write, or leaving a note for later.

After a PUT or DELETE the object server sends the same row change to every container
replica named in the request (``X-Container-Host``, ``-Device``, ``-Partition``). A
replica that cannot be reached in time, or answers other than 2xx, is written down as
an async pending (object_server.async_pending) for the updater to retry.

Sends are sequential http.client calls: under the eventlet runner sockets are green,
so they do not block the server; running them side by side is a job for a
common/ concurrency helper once there is one (this function is the place to do it).
"""

import http.client
import logging
from urllib.parse import quote

from common.http import HTTPError
from object_server.async_pending import write_async_pending

logger = logging.getLogger("haneul.object.update")


class ContainerTarget:
    """Where the container row of an object lives: host/device pairs and a partition."""

    __slots__ = ("hosts", "devices", "partition")

    def __init__(self, hosts, devices, partition):
        self.hosts = hosts
        self.devices = devices
        self.partition = partition


def container_target(headers):
    """The ContainerTarget of a request's headers, None without them, 400 if they are bad."""
    host_value = headers.get("X-Container-Host")
    if not host_value:
        return None
    hosts = [h.strip() for h in host_value.split(",")]
    devices = [d.strip() for d in headers.get("X-Container-Device", "").split(",")]
    partition = headers.get("X-Container-Partition", "").strip()
    if len(hosts) != len(devices) or not all(hosts) or not all(devices):
        raise HTTPError(400, "X-Container-Host and X-Container-Device do not pair up")
    if not partition.isascii() or not partition.isdigit() or len(partition) > 10:
        raise HTTPError(400, "X-Container-Partition must be a partition number")
    for host in hosts:
        _split_host(host)
    for device in devices:
        if device in (".", "..") or "/" in device:
            raise HTTPError(400, f"bad X-Container-Device {device!r}")
    return ContainerTarget(hosts, devices, partition)


def _split_host(host):
    """``ip:port`` (or ``[v6]:port``) -> (ip, port); 400 if malformed."""
    ip, sep, port = host.rpartition(":")
    if not sep or not ip or not port.isascii() or not port.isdigit() or len(port) > 5:
        raise HTTPError(400, f"bad X-Container-Host {host[:60]!r}")
    if int(port) > 65535:
        raise HTTPError(400, f"bad X-Container-Host {host!r}")
    return ip.strip("[]"), int(port)


def send_update(host, device, partition, op, path, headers, conn_timeout, timeout):
    """One update to one container server; True if it answered 2xx in time."""
    ip, port = _split_host(host)
    url = quote(f"/{device}/{partition}{path}")
    conn = http.client.HTTPConnection(ip, port, timeout=conn_timeout)
    try:
        conn.connect()
        conn.sock.settimeout(timeout)
        conn.request(op, url, headers={k: v.encode("utf-8") for k, v in headers.items()})
        resp = conn.getresponse()
        resp.read()
        if 200 <= resp.status < 300:
            return True
        logger.warning(
            "container update %s %s/%s%s answered %d", op, host, device, path, resp.status
        )
    except (OSError, http.client.HTTPException) as err:
        logger.warning("container update %s %s/%s%s failed: %s", op, host, device, path, err)
    finally:
        conn.close()
    return False


def update_container(
    target,
    op,
    account,
    container,
    obj,
    headers,
    dev_path,
    obj_hash,
    timestamp,
    policy_index,
    conn_timeout=0.5,
    timeout=1.0,
):
    """Send the update to every replica in ``target``; keep failures as an async pending.

    Returns the async pending path, or None if every replica took the update.
    """
    path = f"/{account}/{container}/{obj}"
    failed = [
        (host, device)
        for host, device in zip(target.hosts, target.devices, strict=True)
        if not send_update(host, device, target.partition, op, path, headers, conn_timeout, timeout)
    ]
    if not failed:
        return None
    record = {
        "op": op,
        "account": account,
        "container": container,
        "obj": obj,
        "headers": dict(headers),
        "container_host": ",".join(host for host, _ in failed),
        "container_device": ",".join(device for _, device in failed),
        "container_partition": target.partition,
        "policy_index": policy_index,
    }
    return write_async_pending(dev_path, obj_hash, timestamp, record)
