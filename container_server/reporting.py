"""Telling the account server about a container: the report request and where it goes.

A container PUT/DELETE from the proxy names the account replicas to tell in
``X-Account-Host`` (``ip:port``, comma-separated when several), ``X-Account-Device``
(as many) and ``X-Account-Partition``. The report is ``PUT /<dev>/<part>/<account>/<cont>``
with the container's timestamps and totals. Sends are sequential ``http.client`` calls;
under the eventlet runner the sockets are green, so a slow account server only holds up
the request that is waiting on it.
"""

import http.client
from urllib.parse import quote

from common.http import HTTPError
from common.timestamp import Timestamp


def parse_host(host):
    """``("10.0.0.1", 6202)`` from ``10.0.0.1:6202`` (``[::1]:6202`` for IPv6)."""
    ip, sep, port = host.strip().rpartition(":")
    if not sep or not ip or not is_number(port):
        raise ValueError(f"bad host {host!r}; expected ip:port")
    return ip.strip("[]"), int(port)


def is_number(text):
    """A non-negative decimal integer in ASCII digits."""
    return text.isascii() and text.isdigit()


def target_from_headers(headers):
    """``{"partition", "nodes": [{ip, port, device}]}`` from X-Account-* headers, or None.

    Mismatched host and device lists, or bad hosts, are a 400.
    """
    hosts = headers.get("X-Account-Host", "")
    devices = headers.get("X-Account-Device", "")
    partition = headers.get("X-Account-Partition", "")
    if not hosts and not devices:
        return None
    hosts = [h.strip() for h in hosts.split(",") if h.strip()]
    devices = [d.strip() for d in devices.split(",") if d.strip()]
    if len(hosts) != len(devices) or not is_number(partition.strip()):
        raise HTTPError(
            400, "X-Account-Host and X-Account-Device must pair up, with an X-Account-Partition"
        )
    nodes = []
    for host, device in zip(hosts, devices, strict=True):
        try:
            ip, port = parse_host(host)
        except ValueError as err:
            raise HTTPError(400, str(err)) from None
        nodes.append({"ip": ip, "port": port, "device": device})
    return {"partition": partition.strip(), "nodes": nodes}


def report_headers(info, trans_id=None):
    """The headers of a report carrying the stat row ``info``."""
    headers = {
        "X-Put-Timestamp": Timestamp(info["put_timestamp"]).internal,
        "X-Delete-Timestamp": Timestamp(info["delete_timestamp"]).internal,
        "X-Object-Count": str(info["object_count"]),
        "X-Bytes-Used": str(info["bytes_used"]),
        "X-Backend-Storage-Policy-Index": str(info["storage_policy_index"]),
        "User-Agent": "haneul-container-server",
        "Content-Length": "0",
    }
    if trans_id:
        headers["X-Trans-Id"] = trans_id
    return headers


def send_report(node, partition, account, container, headers, conn_timeout, node_timeout):
    """PUT the report to one account node; its status, or None if it could not be reached."""
    path = quote(f"/{node['device']}/{partition}/{account}/{container}")
    conn = http.client.HTTPConnection(node["ip"], int(node["port"]), timeout=conn_timeout)
    try:
        conn.connect()
        conn.sock.settimeout(node_timeout)
        conn.request("PUT", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def report(nodes, partition, account, container, info, conn_timeout, node_timeout, trans_id=None):
    """Send the report to every node; the list of their statuses (None: unreachable)."""
    headers = report_headers(info, trans_id)
    return [
        send_report(node, partition, account, container, headers, conn_timeout, node_timeout)
        for node in nodes
    ]


def succeeded(statuses):
    """A majority of the nodes accepted the report."""
    good = sum(1 for s in statuses if s is not None and 200 <= s < 300)
    return bool(statuses) and good >= len(statuses) // 2 + 1
