"""HTTP header blocks read and written without the email package.

The standard library parses every header block (a request at each server, an answer at
each backend client) through ``email.parser``, and formats every backend request one
validated ``putheader`` at a time; both cost more CPU than the rest of a small request's
handling. A header block is simple enough to split and join here:

- ``parse_request_line(line)`` splits a request line;
- ``read_header_fields(rfile)`` reads ``(name, value)`` pairs up to the blank line;
- ``HeaderFields`` holds them with the part of ``email.message.Message``'s interface
  that http.client, eventlet and our callers use (``get``, ``get_all``, ``items``...);
- ``request_head(...)`` formats a request line and its headers as bytes.
"""

import re

MAX_FIELDS = 100  # as http.client and http.server allow
MAX_LINE = 65536
# What may not appear in a field name (RFC 9110 token characters only) or value.
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")


class MalformedHeaders(ValueError):
    """A request line or header block that is not HTTP/1.x; ``status`` is the answer a
    server gives (400, 431 for too many or too long fields, 505 for another version)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class HeaderFields:
    """The fields of one header block, in order; names match in any case.

    ``get``/``[]`` give the first value of a name (None if absent), ``get_all`` every
    value, as ``email.message.Message`` does.
    """

    __slots__ = ("_headers", "_first")

    def __init__(self, fields):
        self._headers = fields  # eventlet's protocol reads this list by name
        self._first = {}
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    def get(self, name, default=None):
        return self._first.get(name.lower(), default)

    def __getitem__(self, name):
        return self._first.get(name.lower())

    def __contains__(self, name):
        return name.lower() in self._first

    def get_all(self, name, failobj=None):
        lower = name.lower()
        values = [value for key, value in self._headers if key.lower() == lower]
        return values or failobj

    def items(self):
        return list(self._headers)

    def keys(self):
        return [name for name, _ in self._headers]

    def values(self):
        return [value for _, value in self._headers]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self._headers)

    def get_content_type(self):
        return self._first.get("content-type", "text/plain")

    def __repr__(self):
        return f"HeaderFields({self._headers!r})"


def parse_request_line(line):
    """``(method, target, version)`` of an HTTP/1.x request line; MalformedHeaders if not one."""
    words = line.decode("latin-1").rstrip("\r\n").split()
    if len(words) != 3:
        raise MalformedHeaders(400, "bad request line")
    method, target, version = words
    major, dot, minor = version[5:].partition(".")
    if (
        not version.startswith("HTTP/")
        or not dot
        or not (major.isdigit() and minor.isdigit())
        or len(major) > 10
        or len(minor) > 10
    ):
        raise MalformedHeaders(400, f"bad HTTP version {version[:20]!r}")
    if int(major) != 1:
        raise MalformedHeaders(505, f"HTTP version {version[:20]} is not supported")
    return method, target, (1, int(minor))


def read_header_fields(rfile, max_line=MAX_LINE):
    """The ``(name, value)`` fields of a header block, read up to its blank line.

    Values are latin-1 strings without surrounding blanks; an obsolete folded line
    continues the previous value. Raises MalformedHeaders (400 for a bad line, 431 for
    too many fields or too long a line).
    """
    fields = []
    while True:
        line = rfile.readline(max_line + 1)
        if len(line) > max_line:
            raise MalformedHeaders(431, f"a header line longer than {max_line} bytes")
        if line in (b"\r\n", b"\n", b""):
            return fields
        text = line.decode("latin-1")
        if text[0] in " \t":
            if not fields:
                raise MalformedHeaders(400, "header block starts with a continuation line")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or _BAD_NAME.search(name):
            raise MalformedHeaders(400, f"bad header line {text[:60]!r}")
        if len(fields) >= MAX_FIELDS:
            raise MalformedHeaders(431, f"more than {MAX_FIELDS} header fields")
        fields.append((name, value.strip(" \t\r\n")))


def request_head(method, target, host, headers):
    """The bytes of an HTTP/1.1 request line, ``Host`` and ``headers`` (None values
    skipped), up to and with the blank line. ValueError for what cannot be sent (a
    name that is not a token, a line break in a value, a blank in the target)."""
    if _BAD_TARGET.search(target) or _BAD_NAME.search(method):
        raise ValueError(f"cannot send {method!r} {target[:60]!r}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if value is None:
            continue
        value = str(value)
        if _BAD_NAME.search(name) or _BAD_VALUE.search(value):
            raise ValueError(f"cannot send header {name!r}: {value[:60]!r}")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")
