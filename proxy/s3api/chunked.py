"""Request payloads: plain or aws-chunked, verified while they stream.

``body_reader(s3req)`` picks the reader for a request:

- a plain body (``PayloadReader``): checked against a hex ``x-amz-content-sha256``,
  a ``Content-MD5`` and an ``x-amz-checksum-<algorithm>`` header, whichever are given;
- an aws-chunked body (``x-amz-content-sha256: STREAMING-...``, ``AwsChunkedReader``)::

      <hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n ... 0[;chunk-signature=<sig>]\\r\\n
      [x-amz-checksum-crc32:<b64>\\r\\n [x-amz-trailer-signature:<sig>\\r\\n]]\\r\\n

  de-framed to ``x-amz-decoded-content-length`` bytes. Signed variants
  (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``) chain each chunk's signature to
  the previous one from the request's seed signature; a chunk is handed on only
  once its signature checks out. Trailers (``x-amz-trailer``) carry a checksum
  verified at the end.

Every check that can only be made at the end is made when the last byte has been
read and *before* it is returned: a reader that finds a mismatch records the S3Error
in ``error`` and raises ``BodyError`` (a ValueError, which the proxy treats as a
broken client upload), so the downstream write is abandoned, never completed.
"""

import hashlib
import hmac

from proxy.s3api import checksums
from proxy.s3api.errors import (
    BadChecksum,
    BadDigest,
    IncompleteBody,
    InvalidArgument,
    InvalidRequest,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)

READ_SIZE = 65536
MAX_LINE = 4096
MAX_SIGNED_CHUNK = 16 * 1024 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)


class BodyError(ValueError):
    """Raised from ``read``: the payload failed a check (``s3error`` says which)."""

    def __init__(self, s3error):
        super().__init__(str(s3error))
        self.s3error = s3error


def is_streaming(headers):
    return (headers.get("x-amz-content-sha256") or "").startswith("STREAMING-")


class _Check:
    """One digest computed over the payload and the value it must come out as."""

    __slots__ = ("hasher", "expected", "fail", "hexdigest", "algorithm")

    def __init__(self, hasher, expected, fail, hexdigest=False, algorithm=None):
        self.hasher = hasher
        self.expected = expected
        self.fail = fail
        self.hexdigest = hexdigest
        self.algorithm = algorithm  # an x-amz-checksum-* algorithm, reported once verified

    def error(self):
        """None if the digest matches, else the S3Error to raise."""
        if self.hexdigest:
            got = self.hasher.hexdigest()
            ok = hmac.compare_digest(got, self.expected.lower())
        else:
            got = checksums.encode(self.hasher.digest())
            ok = self.expected is not None and hmac.compare_digest(got, self.expected)
        return None if ok else self.fail(got)


def checksum_check(algorithm, expected):
    hasher = checksums.new(algorithm)
    label = algorithm.upper()
    return _Check(
        hasher,
        expected,
        lambda _got: BadChecksum(
            f"The {label} you specified did not match the calculated checksum."
        ),
        algorithm=algorithm,
    )


def _checksum_header(headers):
    """``(algorithm, value)`` of an ``x-amz-checksum-<alg>`` header, or None."""
    for algorithm in checksums.ALGORITHMS:
        value = headers.get(checksums.HEADER_PREFIX + algorithm)
        if value:
            return algorithm, value.strip()
    return None


class _Verifying:
    """What both readers share: the checks, the recorded error, ``length``."""

    length = None
    error = None
    checksums = None  # {algorithm: value} of the x-amz-checksum-* verified, at the end

    def _fail(self, s3error):
        self.error = s3error
        raise BodyError(s3error)

    def _finish(self):
        for check in self.checks:
            found = check.error()
            if found is not None:
                self._fail(found)
            if check.algorithm is not None:
                self.checksums[check.algorithm] = check.expected
        self.finished = True

    def _update(self, data):
        for check in self.checks:
            check.hasher.update(data)


class PayloadReader(_Verifying):
    """A plain body of ``length`` bytes (None: read to EOF), checked as it goes."""

    def __init__(self, raw, length, checks):
        self.raw = raw
        self.length = length
        self.remaining = length
        self.checks = checks
        self.checksums = {}
        self.finished = False

    def read(self, size=-1):
        if self.error is not None:
            raise BodyError(self.error)
        if self.finished:
            return b""
        want = READ_SIZE if size is None or size < 0 else size
        if self.remaining is not None:
            want = min(want, self.remaining)
            if want == 0:
                self._finish()
                return b""
        data = self.raw.read(want) if want else b""
        if not data:
            if self.remaining:
                self._fail(IncompleteBody())
            self._finish()
            return b""
        self._update(data)
        if self.remaining is not None:
            self.remaining -= len(data)
            if self.remaining == 0:
                self._finish()
        return data


class _Framed:
    """Buffered reading of the raw (framed) input: lines and exact byte counts."""

    def __init__(self, raw, length):
        self.raw = raw
        self.remaining = length
        self.buf = bytearray()

    def _more(self):
        want = READ_SIZE if self.remaining is None else min(READ_SIZE, self.remaining)
        if want <= 0:
            return False
        data = self.raw.read(want)
        if not data:
            return False
        if self.remaining is not None:
            self.remaining -= len(data)
        self.buf += data
        return True

    def readline(self):
        """One CRLF-terminated line without its CRLF; None at a clean EOF."""
        start = 0
        while True:
            end = self.buf.find(b"\r\n", start)
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 2]
                return line
            if len(self.buf) > MAX_LINE:
                raise ValueError("line too long")
            start = max(0, len(self.buf) - 1)
            if not self._more():
                if self.buf:
                    raise ValueError("truncated line")
                return None

    def read(self, size, exact=True):
        """``size`` bytes (``exact``) or between 1 and ``size`` bytes."""
        while len(self.buf) < (size if exact else 1):
            if not self._more():
                raise ValueError("truncated chunk")
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data


class AwsChunkedReader(_Verifying):
    """De-frames and verifies an aws-chunked payload (see the module docstring)."""

    def __init__(self, raw, raw_length, decoded_length, checks, signer=None, trailer=None):
        self.framed = _Framed(raw, raw_length)
        self.length = decoded_length
        self.remaining = decoded_length
        self.checks = checks
        self.checksums = {}
        self.signer = signer
        self.previous = signer.seed_signature if signer else None
        self.trailer = trailer  # the trailer header name announced in x-amz-trailer
        self.chunk_left = 0  # data bytes of the current (unsigned) chunk not yet read
        self.pending = b""  # a verified signed chunk's data not yet handed on
        self.terminal_seen = False
        self.sig = None
        self.finished = False

    def read(self, size=-1):
        if self.error is not None:
            raise BodyError(self.error)
        if self.finished:
            return b""
        want = READ_SIZE if size is None or size < 0 else size
        try:
            data = self._next(want)
        except ValueError as err:
            if isinstance(err, BodyError):
                raise
            self._fail(IncompleteBody(f"malformed or truncated aws-chunked body: {err}"))
        if data:
            self._update(data)
            self.remaining -= len(data)
            if self.remaining < 0:
                self._fail(IncompleteBody("the body is longer than x-amz-decoded-content-length"))
        if self.remaining == 0:
            self._end()
        elif not data:
            self._fail(IncompleteBody())
        return data

    def _next(self, want):
        if self.signer is not None:
            if not self.pending:
                self.pending = self._signed_chunk()
            data, self.pending = self.pending[:want], self.pending[want:]
            return data
        if self.chunk_left == 0:
            size = self._chunk_header()
            if size == 0:
                self._trailers()  # the terminal chunk came before the declared length
                return b""
            self.chunk_left = size
        data = self.framed.read(min(want, self.chunk_left), exact=False)
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            self._crlf()
        return data

    def _chunk_header(self):
        """The size of the next chunk (its signature, if any, is kept in ``self.sig``)."""
        line = self.framed.readline()
        if line is None:
            raise ValueError("missing chunk header")
        size_text, _, ext = line.decode("latin-1").partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise ValueError(f"bad chunk size {size_text[:20]!r}") from None
        if size < 0:
            raise ValueError("negative chunk size")
        self.sig = None
        name, _, value = ext.partition("=")
        if name.strip() == "chunk-signature":
            self.sig = value.strip()
        return size

    def _crlf(self):
        if self.framed.read(2) != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")

    def _check_chunk_signature(self, data):
        expected = self.signer.chunk_signature(self.previous, hashlib.sha256(data).hexdigest())
        if self.sig is None or not hmac.compare_digest(expected, self.sig):
            self._fail(SignatureDoesNotMatch("a chunk signature does not match"))
        self.previous = expected

    def _signed_chunk(self):
        size = self._chunk_header()
        if size > MAX_SIGNED_CHUNK:
            self._fail(
                InvalidArgument(
                    "chunk too large", argument_name="chunk-size", argument_value=str(size)
                )
            )
        data = self.framed.read(size) if size else b""
        self._check_chunk_signature(data)
        if size == 0:
            self._trailers()
            return b""
        self._crlf()
        return data

    def _end(self):
        """After the last data byte: the terminal chunk, trailers, then every check."""
        if self.signer is not None:
            if self.pending:
                self._fail(IncompleteBody("the body is longer than x-amz-decoded-content-length"))
            if not self.terminal_seen:
                size = self._chunk_header()
                if size != 0:
                    self._fail(IncompleteBody("body longer than x-amz-decoded-content-length"))
                self._check_chunk_signature(b"")
                self._trailers()
        elif not self.terminal_seen:
            if self.chunk_left:
                self._fail(IncompleteBody())
            size = self._chunk_header()
            if size != 0:
                self._fail(IncompleteBody("body longer than x-amz-decoded-content-length"))
            self._trailers()
        self._finish()

    def _trailers(self):
        """Read the trailer lines up to the blank line; check the trailer signature."""
        self.terminal_seen = True
        lines = []
        while True:
            line = self.framed.readline()
            if line is None or line == b"":
                break
            lines.append(line)
        values, signature = {}, None
        signed_text = b""
        for line in lines:
            name, sep, value = line.partition(b":")
            if not sep:
                self._fail(IncompleteBody("malformed trailer"))
            key = name.strip().decode("latin-1").lower()
            if key == "x-amz-trailer-signature":
                signature = value.strip().decode("latin-1")
                continue
            values[key] = value.strip().decode("latin-1")
            signed_text += name.strip() + b":" + value.strip() + b"\n"
        if self.trailer:
            if self.trailer not in values:
                self._fail(InvalidRequest(f"the {self.trailer} trailer is missing"))
            for check in self.checks:
                if isinstance(check, _TrailerCheck):
                    check.expected = values[self.trailer]
        if self.signer is not None and self.trailer:
            if signature is None:
                self._fail(SignatureDoesNotMatch("the trailer signature is missing"))
            expected = self.signer.trailer_signature(self.previous, signed_text)
            if not hmac.compare_digest(expected, signature):
                self._fail(SignatureDoesNotMatch("the trailer signature does not match"))


class _TrailerCheck(_Check):
    """A checksum whose expected value arrives in a trailer, after the data."""

    __slots__ = ()


def _trailer_check(name):
    """The check a trailer will complete: its hasher runs from the first byte."""
    algorithm = name[len(checksums.HEADER_PREFIX) :]
    if not name.startswith(checksums.HEADER_PREFIX) or algorithm not in checksums.ALGORITHMS:
        raise InvalidRequest(f"unsupported trailer {name!r}")
    label = algorithm.upper()
    return _TrailerCheck(
        checksums.new(algorithm),
        None,
        lambda _got: BadChecksum(
            f"The {label} you specified did not match the calculated checksum."
        ),
        algorithm=algorithm,
    )


def body_reader(s3req, check_md5=True):
    """The reader for ``s3req``'s payload, with every check the request asks for."""
    headers = s3req.headers
    environ = s3req.environ
    payload = getattr(s3req.auth, "payload_hash", None) or headers.get("x-amz-content-sha256")
    payload = (payload or "").strip()
    checks = []
    md5 = s3req.content_md5() if check_md5 else None
    if md5 is not None:
        checks.append(_Check(hashlib.md5(), md5, lambda got: BadDigest(), hexdigest=True))
    declared = _checksum_header(headers)
    if declared is not None:
        checks.append(checksum_check(*declared))
    raw = environ["wsgi.input"]
    if payload in STREAMING_MODES:
        trailer = (headers.get("x-amz-trailer") or "").strip().lower() or None
        if trailer is not None:
            checks.append(_trailer_check(trailer))
        elif payload != STREAMING_SIGNED:
            raise InvalidRequest("a trailer payload without x-amz-trailer")
        signer = None
        if payload != STREAMING_UNSIGNED_TRAILER:
            signer = getattr(s3req.auth, "chunk_signer", None)
            if signer is None:
                raise InvalidRequest(
                    "signed aws-chunked payloads need a SigV4 Authorization header"
                )
        raw_length = environ.get("CONTENT_LENGTH")
        raw_length = int(raw_length) if raw_length not in (None, "") else None
        return AwsChunkedReader(raw, raw_length, s3req.declared_length(), checks, signer, trailer)
    if payload.startswith("STREAMING-"):
        raise InvalidArgument(
            f"unsupported x-amz-content-sha256 {payload!r}",
            argument_name="x-amz-content-sha256",
            argument_value=payload,
        )
    if payload and payload != UNSIGNED:
        checks.append(
            _Check(
                hashlib.sha256(),
                payload,
                lambda got: XAmzContentSHA256Mismatch(
                    **{"ClientComputedContentSHA256": payload, "S3ComputedContentSHA256": got}
                ),
                hexdigest=True,
            )
        )
    return PayloadReader(raw, s3req.declared_length(), checks)
