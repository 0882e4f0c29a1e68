"""Telling the container servers about an object write, or leaving a note for later.

After a PUT or DELETE the object server sends the same row change to every container
replica named in the request (``X-Container-Host``, ``-Device``, ``-Partition``). A
replica that cannot be reached in time, or answers other than 2xx, is written down as
an async pending (object_server.async_pending) for the updater to retry.

Row changes are group-committed (``UpdateBatcher``): per container replica, one
``UPDATE`` request (container_server.server has the msgpack body) is in flight at a
time. The first row goes out at once, on no timer (rows handed over in the same turn of
the hub go with it); rows that come while a request is in flight wait and go together
in the next one, up to ``MAX_BATCH_ROWS`` a request. Every caller waits for the
answer to the request its row went in, so a PUT still answers only once the listing
shows it; a failed request fails every row in it, and each caller keeps its own async
pending. Under a busy container the HTTP exchange and the SQLite transaction are paid
once per batch instead of once per row. Replicas are sent to side by side.

A process not made green (tools, tests calling the app directly) has no hub to wait
in: there each row is sent alone, at once, through the same ``UPDATE`` request.

``send_update`` sends one row as a single-row PUT/DELETE (the updater's retries).
"""

import logging
from urllib.parse import quote

import msgpack

from common import backend, concurrency
from common.http import HTTPError
from object_server.async_pending import write_async_pending

logger = logging.getLogger("haneul.object.update")

MAX_BATCH_ROWS = 500  # the container server takes up to 1000 rows a request
BATCH_CONTENT_TYPE = "application/x-msgpack"
# Headers of a single update that belong to its request, not to its row: a batch
# request carries its own.
REQUEST_HEADERS = frozenset(("x-trans-id", "x-backend-server-type"))
MAX_ANSWER = 65536  # an UPDATE's answer is empty, or a short error text


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
    """One row as a single-row PUT/DELETE to one container server (the updater's
    retries); True if it answered 2xx in time."""
    # Header values are text; on the wire (and in common.backend) they are UTF-8 bytes
    # carried as latin-1 strings.
    wire = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
    what = f"container update {op} {host}/{device}{path}"
    return _exchange(
        host, device, op, quote(f"/{partition}{path}"), wire, b"", conn_timeout, timeout, what
    )


def _exchange(host, device, method, path, headers, body, conn_timeout, node_timeout, what):
    """One request to a container server; True if it answered 2xx. A failure is logged
    as ``what`` failed or answered."""
    ip, port = _split_host(host)
    try:
        result = backend.request(
            {"ip": ip, "port": port, "device": device},
            method,
            path,
            headers,
            body=body,
            conn_timeout=conn_timeout,
            node_timeout=node_timeout,
            max_body=MAX_ANSWER,
        )
    except backend.BackendError as err:
        logger.warning("%s failed: %s", what, err)
        return False
    if 200 <= result.status < 300:
        return True
    logger.warning(
        "%s answered %d: %s", what, result.status, result.body[:200].decode("utf-8", "replace")
    )
    return False


class UpdateTicket:
    """One row handed to an ``UpdateBatcher``; ``wait()`` says whether it got there."""

    __slots__ = ("row", "trans_id", "ok", "_done")

    def __init__(self, row, trans_id, green):
        self.row = row
        self.trans_id = trans_id
        self.ok = None
        self._done = concurrency.Event() if green else None

    def resolve(self, ok):
        """Record the answer to the request the row went in (once)."""
        if self.ok is None:
            self.ok = ok
            if self._done is not None:
                self._done.send(ok)

    def wait(self):
        """True if the container server took the row, False if it failed."""
        if self.ok is None:
            self._done.wait()
        return self.ok


class UpdateBatcher:
    """Group commit of row changes, per container replica (see the module doc).

    A replica is ``(host, device, partition, account, container)``; while rows for it
    are in flight a sender green thread owns it, and it leaves when nothing is waiting.
    """

    def __init__(self, max_rows=MAX_BATCH_ROWS):
        self.max_rows = max_rows
        self._waiting = {}  # replica and timeouts -> tickets for the next request

    def submit(self, host, device, partition, account, container, row, trans_id, timeouts):
        """Queue ``row`` (``batch_row``) for one replica; returns its UpdateTicket.

        ``timeouts`` is ``(conn_timeout, node_timeout)``; rows asking for other
        timeouts (only tests mix them) do not share a request. Without a green hub the
        row is sent now, alone.
        """
        key = (host, device, partition, account, container, timeouts)
        green = concurrency.is_patched()
        ticket = UpdateTicket(row, trans_id, green)
        if not green:
            ticket.resolve(self._send(key, [ticket]))
            return ticket
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(ticket)
        else:
            self._waiting[key] = [ticket]
            concurrency.spawn(self._sender, key)
        return ticket

    def _sender(self, key):
        """Send the replica's waiting rows, a batch at a time, until none are left."""
        waiting = self._waiting[key]
        try:
            while waiting:
                batch = waiting[: self.max_rows]
                del waiting[: self.max_rows]
                ok = False
                try:
                    ok = self._send(key, batch)
                except Exception:
                    logger.exception("container update to %s failed", _describe(key))
                finally:
                    for ticket in batch:
                        ticket.resolve(ok)
        finally:
            # Nothing yields between the emptiness check and here: no row is left out.
            del self._waiting[key]
            for ticket in waiting:
                ticket.resolve(False)

    @staticmethod
    def _send(key, batch):
        """One UPDATE request with the rows of ``batch``; True if it answered 2xx."""
        host, device, partition, account, container, (conn_timeout, node_timeout) = key
        headers = {
            "Content-Type": BATCH_CONTENT_TYPE,
            # On a single-port node the path alone would route an UPDATE right, but
            # every update between servers names its app (common.router).
            "X-Backend-Server-Type": "container",
            "X-Trans-Id": batch[0].trans_id or None,  # None: the server makes one
        }
        return _exchange(
            host,
            device,
            "UPDATE",
            backend.backend_path(partition, account, container),
            headers,
            msgpack.packb([ticket.row for ticket in batch]),
            conn_timeout,
            node_timeout,
            f"container update of {len(batch)} rows to {_describe(key)}",
        )


BATCHER = UpdateBatcher()


def _describe(key):
    host, device, partition, account, container, _timeouts = key
    return f"{host}/{device}/{partition}/{account}/{container}"


def batch_row(op, obj, headers):
    """The row of an UPDATE body: ``op``, object name, and the update's row headers."""
    return {
        "op": op,
        "name": obj,
        "headers": {k: v for k, v in headers.items() if k.lower() not in REQUEST_HEADERS},
    }


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

    The row goes through ``BATCHER``, and this returns once every replica answered the
    request it went in. Returns the async pending path, or None if every replica took
    the update.
    """
    row = batch_row(op, obj, headers)
    trans_id = headers.get("X-Trans-Id", "")
    tickets = [
        (
            host,
            device,
            BATCHER.submit(
                host,
                device,
                target.partition,
                account,
                container,
                row,
                trans_id,
                (conn_timeout, timeout),
            ),
        )
        for host, device in zip(target.hosts, target.devices, strict=True)
    ]
    failed = [(host, device) for host, device, ticket in tickets if not ticket.wait()]
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
