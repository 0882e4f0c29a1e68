"""The expiring-objects queue: where an object with ``X-Delete-At`` waits for the expirer.

The queue is kept in the hidden account ``.expiring_objects`` (created on first use: it
starts with the auto-create prefix ``.``), one container per day and one row per object:

- container: the day the object expires, ``f"{delete_at // 86400 * 86400:010d}"``;
- row name: ``f"{delete_at:010d}-{account}/{container}/{object}"`` (fixed-width times,
  so rows list in expiry order);
- row content type: ``text/plain;haneul_policy_index=N``, the object's storage policy,
  so the expirer finds the object ring without asking the container.

Who writes what:

- The proxy, on an object PUT or POST carrying ``X-Delete-At``, adds to each object
  node's request the ``X-Delete-At-Container``, ``-Host``, ``-Partition`` and ``-Device``
  headers of ``delete_at_headers`` (one queue container replica a node, round robin,
  as it does for ``X-Container-*``).
- The object server, once the write is stored, PUTs the queue row to that container
  node (an async pending when the node fails, like any container update), and DELETEs
  the row of the object's previous ``X-Delete-At`` when the request names that row's
  container. A previous row it cannot reach (another day, or an object DELETE) stays
  behind; the expirer drops it when its time comes, since the object no longer carries
  that ``X-Delete-At`` (its ``X-If-Delete-At`` DELETE then answers 412 or 404).
- The expirer (``object_server.expirer``) deletes each due object with
  ``X-If-Delete-At`` and removes the row.
"""

from common.http import HTTPError
from common.timestamp import Timestamp

EXPIRING_ACCOUNT = ".expiring_objects"
DAY = 86400  # seconds of queue a container holds; the same everywhere, hence no option
EMPTY_ETAG = "d41d8cd98f00b204e9800998ecf8427e"
ROW_CONTENT_TYPE = "text/plain"
POLICY_PARAM = "haneul_policy_index"
HEADER_PREFIX = "X-Delete-At-"


def bucket_for(delete_at):
    """The queue container of an expiry time (seconds, int or digit string)."""
    return f"{int(delete_at) // DAY * DAY:010d}"


def bucket_end(bucket):
    """The first second after the day a queue container holds."""
    return int(bucket) + DAY


def entry_name(delete_at, account, container, obj):
    """The queue row name of ``/account/container/obj`` expiring at ``delete_at``."""
    return f"{int(delete_at):010d}-{account}/{container}/{obj}"


def parse_entry(name):
    """``(delete_at, account, container, obj)`` of a row name; ValueError if malformed."""
    stamp, sep, path = name.partition("-")
    if not sep or not (stamp.isascii() and stamp.isdigit()):
        raise ValueError(f"not an expiring-object row: {name!r}")
    account, _, rest = path.partition("/")
    container, _, obj = rest.partition("/")
    if not (account and container and obj):
        raise ValueError(f"not an expiring-object row: {name!r}")
    return int(stamp), account, container, obj


def row_content_type(policy_index):
    return f"{ROW_CONTENT_TYPE};{POLICY_PARAM}={int(policy_index)}"


def policy_of(content_type):
    """The object's policy index recorded in a row's content type (0 if absent)."""
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key == POLICY_PARAM and value.isascii() and value.isdigit():
            return int(value)
    return 0


def _host(ip):
    return f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip


def delete_at_headers(container_ring, delete_at, slot_count):
    """What the proxy adds to each of ``slot_count`` object-node writes with X-Delete-At.

    Slot ``i`` names queue container replica ``i % replicas``, so every replica hears of
    the row from some object node.
    """
    bucket = bucket_for(delete_at)
    part, nodes = container_ring.get_nodes(EXPIRING_ACCOUNT, bucket)
    headers = []
    for slot in range(slot_count):
        node = nodes[slot % len(nodes)] if nodes else None
        if node is None:
            headers.append({})
            continue
        headers.append(
            {
                "X-Delete-At-Container": bucket,
                "X-Delete-At-Host": f"{_host(node['ip'])}:{node['port']}",
                "X-Delete-At-Partition": str(part),
                "X-Delete-At-Device": node["device"],
            }
        )
    return headers


class QueueTarget:
    """The queue container replicas an object server updates: from X-Delete-At-* headers."""

    __slots__ = ("container", "hosts", "devices", "partition")

    def __init__(self, container, hosts, devices, partition):
        self.container = container
        self.hosts = hosts
        self.devices = devices
        self.partition = partition


def queue_target(headers):
    """The QueueTarget a request names, None without the headers, HTTPError(400) if bad."""
    host_value = headers.get("X-Delete-At-Host")
    if not host_value:
        return None
    container = headers.get("X-Delete-At-Container", "").strip()
    partition = headers.get("X-Delete-At-Partition", "").strip()
    hosts = [h.strip() for h in host_value.split(",")]
    devices = [d.strip() for d in headers.get("X-Delete-At-Device", "").split(",")]
    if not (container.isascii() and container.isdigit()) or len(container) > 20:
        raise HTTPError(400, "X-Delete-At-Container must be a queue container (digits)")
    if not (partition.isascii() and partition.isdigit()) or len(partition) > 10:
        raise HTTPError(400, "X-Delete-At-Partition must be a partition number")
    if len(hosts) != len(devices) or not all(hosts) or not all(devices):
        raise HTTPError(400, "X-Delete-At-Host and X-Delete-At-Device do not pair up")
    for host in hosts:
        ip, sep, port = host.rpartition(":")
        if not sep or not ip or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            raise HTTPError(400, f"bad X-Delete-At-Host {host[:60]!r}")
    for device in devices:
        if device in (".", "..") or "/" in device:
            raise HTTPError(400, f"bad X-Delete-At-Device {device!r}")
    return QueueTarget(container, hosts, devices, partition)


def row_headers(op, timestamp, policy_index, trans_id=""):
    """The container-update headers of a queue row PUT (or DELETE) at ``timestamp``."""
    headers = {
        "X-Timestamp": Timestamp(timestamp).internal,
        "X-Backend-Storage-Policy-Index": "0",  # the queue's own containers are policy 0
        "X-Backend-Server-Type": "container",  # a row DELETE looks like an object DELETE
    }
    if trans_id:
        headers["X-Trans-Id"] = trans_id
    if op == "PUT":
        headers["X-Size"] = "0"
        headers["X-Content-Type"] = row_content_type(policy_index)
        headers["X-Etag"] = EMPTY_ETAG
    return headers
