"""Device specs in the swift-ring-builder grammar: parse, search, format.

An add value names one new device::

    [r<region>]z<zone>-<ip>:<port>/<device>[_<meta>]      e.g. r1z1-127.0.0.1:6200/d1_ssd

(a missing region means region 1; an IPv6 address goes in brackets, ``[::1]``). A search
value is the same grammar with every part optional, plus ``d<id>`` in front::

    d74   r1   r1z2   z1-10.0.0.1   -10.0.0.1:6200   10.0.0.1   :6200   /sdb   _meta

Ids, regions, zones, ports, addresses and device names match exactly; ``_meta`` matches
any device whose meta contains the text.
"""

import ipaddress
import re

FIELDS = ("id", "region", "zone", "ip", "port", "device", "weight", "meta")

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
_NUMBER = re.compile(r"\d+")
_IP_CHARS = re.compile(r"[^:/_]*")


class DeviceSpecError(ValueError):
    """A device spec or search value that does not follow the grammar."""


def _fail(text, why):
    raise DeviceSpecError(f"bad device spec {text!r}: {why}")


def normalize_ip(ip):
    """The canonical form of an address: IPv6 compressed and lower-case, without brackets.

    Host names are accepted as they are (lower-cased): Swift allows them in rings too.
    Raises ValueError if ``ip`` is neither an address nor a plausible host name.
    """
    if not isinstance(ip, str) or not ip:
        raise ValueError("the address is empty")
    bare = ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if bare is ip and _HOSTNAME.match(ip) and not ip.replace(".", "").isdigit():
        return ip.lower()
    raise ValueError(f"{ip!r} is not an IP address or host name")


def format_ip(ip):
    """An address as written in a device spec: IPv6 in brackets."""
    return f"[{ip}]" if ":" in ip else ip


class _Scanner:
    """A cursor over one spec string; every ``take_*`` consumes what it returns."""

    def __init__(self, text):
        self.text = text
        self.pos = 0

    def peek(self):
        return self.text[self.pos : self.pos + 1]

    def done(self):
        return self.pos >= len(self.text)

    def take_number(self, what):
        match = _NUMBER.match(self.text, self.pos)
        if not match:
            _fail(self.text, f"expected a number for the {what} at offset {self.pos}")
        self.pos = match.end()
        return int(match.group())

    def take_ip(self):
        """An address: ``[v6]``, or everything up to the next ``:``, ``/``, ``_`` or end."""
        text, start = self.text, self.pos
        if self.peek() == "[":
            end = text.find("]", start)
            if end < 0:
                _fail(text, "unclosed '[' in the IPv6 address")
            self.pos = end + 1
        else:
            match = _IP_CHARS.match(text, start)
            self.pos = match.end()
        raw = text[start : self.pos]
        try:
            return normalize_ip(raw)
        except ValueError as err:
            _fail(text, str(err))

    def take_rest_until(self, stop):
        end = self.text.find(stop, self.pos)
        end = len(self.text) if end < 0 else end
        value = self.text[self.pos : end]
        self.pos = end
        return value


def _take_tail(scan, result, required):
    """``:port``, ``/device`` and ``_meta``, in that order; ``required`` parts must appear."""
    text = scan.text
    if scan.peek() == ":":
        scan.pos += 1
        port = scan.take_number("port")
        if not 0 < port < 65536:
            _fail(text, f"port {port} is out of range 1-65535")
        result["port"] = port
    elif "port" in required:
        _fail(text, "missing ':<port>' after the address")
    if scan.peek() == "R":
        _fail(text, "separate replication addresses (R<ip>:<port>) are not supported")
    if scan.peek() == "/":
        scan.pos += 1
        device = scan.take_rest_until("_")
        if not device:
            _fail(text, "the device name after '/' is empty")
        result["device"] = device
    elif "device" in required:
        _fail(text, "missing '/<device>' after the port")
    if scan.peek() == "_":
        scan.pos += 1
        result["meta"] = text[scan.pos :]
        scan.pos = len(text)
    if not scan.done():
        _fail(text, f"unexpected {text[scan.pos :]!r}")
    return result


def parse_add_value(text):
    """Parse ``[r<region>]z<zone>-<ip>:<port>/<device>[_<meta>]`` into a device dict.

    Returns ``{region, zone, ip, port, device, meta}`` (no weight: the caller adds it).
    Raises DeviceSpecError naming what is wrong.
    """
    if not isinstance(text, str) or not text.strip():
        raise DeviceSpecError("bad device spec: it is empty")
    scan = _Scanner(text.strip())
    result = {"region": 1}
    if scan.peek() == "r":
        scan.pos += 1
        result["region"] = scan.take_number("region")
    if scan.peek() != "z":
        _fail(text, "expected 'z<zone>' (optionally after 'r<region>')")
    scan.pos += 1
    result["zone"] = scan.take_number("zone")
    if scan.peek() != "-":
        _fail(text, "expected '-<ip>' after the zone")
    scan.pos += 1
    result["ip"] = scan.take_ip()
    _take_tail(scan, result, ("port", "device"))
    result.setdefault("meta", "")
    return result


def parse_search_value(text):
    """Parse a search value into criteria for :func:`match_device`.

    The dict holds only the parts given, among id, region, zone, ip, port, device, meta.
    Raises DeviceSpecError for an empty or malformed value.
    """
    if not isinstance(text, str) or not text.strip():
        raise DeviceSpecError("bad search value: it is empty")
    scan = _Scanner(text.strip())
    result = {}
    for prefix, key in (("d", "id"), ("r", "region"), ("z", "zone")):
        if scan.peek() == prefix:
            scan.pos += 1
            result[key] = scan.take_number(key)
    if scan.peek() == "-":
        scan.pos += 1
        result["ip"] = scan.take_ip()
    elif not result and (scan.peek().isdigit() or scan.peek() == "["):
        # A bare address is allowed when nothing came before it (Swift's rule).
        result["ip"] = scan.take_ip()
    _take_tail(scan, result, ())
    if not result:
        _fail(text, "it names no device field")
    return result


def format_device(dev):
    """``d3r1z2-127.0.0.1:6200/d1_meta`` (the ``_meta`` part only when meta is set)."""
    text = (
        f"d{dev['id']}r{dev['region']}z{dev['zone']}-"
        f"{format_ip(dev['ip'])}:{dev['port']}/{dev['device']}"
    )
    return f"{text}_{dev['meta']}" if dev.get("meta") else text


def match_device(dev, criteria):
    """True if ``dev`` matches every criterion (meta by substring, the rest exactly)."""
    for key, want in criteria.items():
        if key == "meta":
            if want not in (dev.get("meta") or ""):
                return False
        elif key == "ip":
            try:
                if normalize_ip(want) != dev["ip"]:
                    return False
            except ValueError:
                return False
        elif dev.get(key) != want:
            return False
    return True
