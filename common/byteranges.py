"""HTTP byte ranges: parsing ``Range: bytes=...`` and framing multipart/byteranges bodies.

Follows what Swift clients expect: a syntactically bad header is ignored (the whole
object, 200); a good header whose ranges all fall outside the object is 416; egregious
requests (RFC 7233 section 6.1: too many ranges, many overlaps, many out-of-order small
ranges) are refused as unsatisfiable. Ranges handed out are ``(start, stop)`` with
``stop`` exclusive, ready for slicing.
"""

MAX_RANGES = 50
MAX_RANGE_OVERLAPS = 2
MAX_NONASCENDING_RANGES = 8


def parse_range_header(value):
    """``bytes=0-9,-5,100-`` -> ``[(0, 9), (None, 5), (100, None)]`` (ends inclusive).

    Returns None when the header is absent or not syntactically valid, which means
    "ignore it and serve the whole object".
    """
    if not value:
        return None
    text = value.strip()
    if not text[:6].lower() == "bytes=":
        return None
    specs = []
    for spec in text[6:].split(","):
        spec = spec.strip()
        if not spec:
            continue
        first, dash, last = spec.partition("-")
        first, last = first.strip(), last.strip()
        if not dash or (first and not _digits(first)) or (last and not _digits(last)):
            return None
        start = int(first) if first else None
        end = int(last) if last else None
        if start is None and end is None:
            return None
        if start is not None and end is not None and end < start:
            return None
        specs.append((start, end))
    return specs or None


def _digits(text):
    return text.isascii() and text.isdigit()


def ranges_for_length(specs, length):
    """The satisfiable ``(start, stop)`` ranges of ``specs`` for an object of ``length``.

    An empty list means "416 Requested Range Not Satisfiable".
    """
    ranges = []
    for start, end in specs:
        if start is None:
            if end == 0 or length == 0:
                continue  # bytes=-0 asks for nothing; an empty object has no last bytes
            ranges.append((max(length - end, 0), length))
        elif start < length:
            stop = length if end is None else min(end + 1, length)
            ranges.append((start, stop))
    if len(ranges) > MAX_RANGES:
        return []
    overlaps = 0
    for i, (start1, stop1) in enumerate(ranges):
        for start2, stop2 in ranges[i + 1 :]:
            if start1 < stop2 and start2 < stop1:
                overlaps += 1
                if overlaps > MAX_RANGE_OVERLAPS:
                    return []
    ascending = all(a[0] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    if not ascending and len(ranges) >= MAX_NONASCENDING_RANGES:
        return []
    return ranges


def content_range(start, stop, length):
    """The ``Content-Range`` value of one served range."""
    return f"bytes {start}-{stop - 1}/{length}"


def unsatisfiable_content_range(length):
    """The ``Content-Range`` value of a 416 answer."""
    return f"bytes */{length}"


def multipart_part_header(boundary, content_type, start, stop, length):
    """The bytes that open one part of a multipart/byteranges body."""
    return (
        f"--{boundary}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Range: {content_range(start, stop, length)}\r\n\r\n"
    ).encode("latin-1")


PART_SEPARATOR = b"\r\n"


def multipart_trailer(boundary):
    """The bytes that close a multipart/byteranges body."""
    return f"--{boundary}--".encode("latin-1")


def multipart_length(ranges, boundary, content_type, length):
    """The exact size of the multipart/byteranges body for ``ranges``."""
    total = len(multipart_trailer(boundary))
    for start, stop in ranges:
        total += len(multipart_part_header(boundary, content_type, start, stop, length))
        total += (stop - start) + len(PART_SEPARATOR)
    return total


def multipart_body(ranges, boundary, content_type, length, read_range):
    """Yield a multipart/byteranges body; ``read_range(start, stop)`` yields the bytes."""
    for start, stop in ranges:
        yield multipart_part_header(boundary, content_type, start, stop, length)
        yield from read_range(start, stop)
        yield PART_SEPARATOR
    yield multipart_trailer(boundary)
