"""Timestamps: the one clock every write in the cluster is ordered by.

A timestamp is seconds since the epoch with five decimals (``%016.05f``), plus an
optional offset written as ``_<16 hex digits>`` that orders several events stamped
in the same instant (for example a POST that lands right after a PUT). Newer wins
everywhere, so comparisons must be exact: we keep integer ticks of 10 µs, never floats.
"""

import time

PRECISION = 5
TICKS_PER_SECOND = 10**PRECISION
MAX_OFFSET = (1 << 64) - 1
# Ten digits of whole seconds: anything wider would not fit the fixed-width format.
MAX_TICKS = 10**10 * TICKS_PER_SECOND - 1


class InvalidTimestamp(ValueError):
    """A value that cannot be read as a timestamp."""


class Timestamp:
    """An exact, totally ordered point in time with an optional same-instant offset."""

    __slots__ = ("ticks", "offset")

    def __init__(self, value, offset=0):
        if isinstance(value, Timestamp):
            ticks, base_offset = value.ticks, value.offset
        elif isinstance(value, str):
            ticks, base_offset = _parse(value)
        elif isinstance(value, bool):
            raise InvalidTimestamp(f"not a timestamp: {value!r}")
        elif isinstance(value, int | float):
            if value != value or value in (float("inf"), float("-inf")):
                raise InvalidTimestamp(f"not a timestamp: {value!r}")
            ticks, base_offset = round(value * TICKS_PER_SECOND), 0
        else:
            raise InvalidTimestamp(f"not a timestamp: {value!r}")
        if not isinstance(offset, int) or offset < 0:
            raise InvalidTimestamp(f"offset must be a non-negative integer: {offset!r}")
        total_offset = base_offset + offset
        if ticks < 0 or ticks > MAX_TICKS:
            raise InvalidTimestamp(f"timestamp out of range: {value!r}")
        if total_offset > MAX_OFFSET:
            raise InvalidTimestamp(f"timestamp offset out of range: {total_offset}")
        self.ticks = ticks
        self.offset = total_offset

    @classmethod
    def now(cls, offset=0):
        """The current time."""
        return cls(time.time(), offset=offset)

    @property
    def timestamp(self):
        """Seconds since the epoch as a float (for arithmetic, not for comparing)."""
        return self.ticks / TICKS_PER_SECOND

    @property
    def normal(self):
        """The fixed-width form without the offset: ``0001234567.12345``."""
        seconds, frac = divmod(self.ticks, TICKS_PER_SECOND)
        return f"{seconds:010d}.{frac:05d}"

    @property
    def internal(self):
        """The form written to headers and file names: ``normal`` plus ``_offset`` if any."""
        if self.offset:
            return f"{self.normal}_{self.offset:016x}"
        return self.normal

    def __str__(self):
        return self.internal

    def __repr__(self):
        return f"Timestamp({self.internal!r})"

    def _key(self):
        return (self.ticks, self.offset)

    def __eq__(self, other):
        if other is None:
            return False
        if not isinstance(other, Timestamp):
            try:
                other = Timestamp(other)
            except InvalidTimestamp:
                return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other):
        if not isinstance(other, Timestamp):
            other = Timestamp(other)
        return self._key() < other._key()

    def __le__(self, other):
        return self == other or self < other

    def __gt__(self, other):
        if not isinstance(other, Timestamp):
            other = Timestamp(other)
        return self._key() > other._key()

    def __ge__(self, other):
        return self == other or self > other

    def __hash__(self):
        return hash(self._key())


def _parse(text):
    """Read ``seconds[.fraction][_hexoffset]`` into (ticks, offset)."""
    raw = text.strip()
    if not raw:
        raise InvalidTimestamp("empty timestamp")
    if len(raw) > 64:
        # Longer than any valid form; also keeps int() away from huge digit strings.
        raise InvalidTimestamp(f"not a timestamp: {text[:40]!r}...")
    base, sep, hex_offset = raw.partition("_")
    offset = 0
    if sep:
        if not hex_offset or len(hex_offset) > 16:
            raise InvalidTimestamp(f"bad timestamp offset in {text!r}")
        try:
            offset = int(hex_offset, 16)
        except ValueError:
            raise InvalidTimestamp(f"bad timestamp offset in {text!r}") from None
    whole, dot, frac = base.partition(".")
    if not whole.isdigit() or (dot and frac and not frac.isdigit()) or not whole.isascii():
        # Allow exponent and other float spellings only through float() below.
        try:
            value = float(base)
        except ValueError:
            raise InvalidTimestamp(f"not a timestamp: {text!r}") from None
        if value != value or value < 0 or value == float("inf"):
            raise InvalidTimestamp(f"not a timestamp: {text!r}")
        return round(value * TICKS_PER_SECOND), offset
    frac = (frac or "").ljust(PRECISION, "0")
    ticks = int(whole) * TICKS_PER_SECOND + int(frac[:PRECISION])
    if len(frac) > PRECISION and frac[PRECISION] >= "5":
        ticks += 1  # round half up, as float formatting would
    return ticks, offset


def normalize_timestamp(value):
    """The ``normal`` form of anything Timestamp accepts."""
    return Timestamp(value).normal
