"""AWS Signature Version 4 for S3: the Authorization header and presigned URLs.

``check(environ, query_string, credentials, conf, now)`` verifies a request signed
either way and returns an ``AuthResult`` (who signed, the declared payload hash, and
for streaming uploads the ``ChunkSigner`` that checks each chunk). Everything the
check rejects is an S3Error.

The canonical request follows AWS's rules for S3:

- the path is URI-encoded once, segment by segment (``/`` kept), from its decoded
  form: S3 neither normalises nor double-encodes it;
- query names and values are decoded then re-encoded (everything but ``A-Za-z0-9-._~``),
  and sorted by name then value; a presigned URL's ``X-Amz-Signature`` is left out;
- each signed header is ``name:value`` with the value trimmed and inner runs of
  spaces collapsed, repeated headers joined with ``,``;
- the payload line is ``x-amz-content-sha256`` (header auth; required) or
  ``UNSIGNED-PAYLOAD`` (presigned, unless ``X-Amz-Content-Sha256`` is in the query).
"""

import calendar
import functools
import hashlib
import hmac
import re
import time
from urllib.parse import quote, unquote

from proxy.s3api.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"
MAX_EXPIRES = 7 * 24 * 3600
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_UNRESERVED = "-._~"
_SPACES = re.compile(r"\s+")
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")


class AuthResult:
    """What a verified signature tells: ``credential``, ``payload_hash`` (the
    ``x-amz-content-sha256`` value signed, or UNSIGNED-PAYLOAD), ``chunk_signer``
    (streaming uploads) and ``version`` ("v4" / "v2")."""

    __slots__ = ("credential", "payload_hash", "chunk_signer", "version")

    def __init__(self, credential, payload_hash=None, chunk_signer=None, version="v4"):
        self.credential = credential
        self.payload_hash = payload_hash
        self.chunk_signer = chunk_signer
        self.version = version


class ChunkSigner:
    """Signatures of the chunks (and trailer) of a streaming SigV4 upload."""

    def __init__(self, signing_key, amz_date, scope, seed_signature):
        self.signing_key = signing_key
        self.amz_date = amz_date
        self.scope = scope
        self.seed_signature = seed_signature

    def chunk_signature(self, previous, data_sha256_hex):
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.amz_date,
                self.scope,
                previous,
                hashlib.sha256(b"").hexdigest(),
                data_sha256_hex,
            )
        )
        return _hmac(self.signing_key, string_to_sign).hex()

    def trailer_signature(self, previous, trailer_bytes):
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-TRAILER",
                self.amz_date,
                self.scope,
                previous,
                hashlib.sha256(trailer_bytes).hexdigest(),
            )
        )
        return _hmac(self.signing_key, string_to_sign).hex()


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


@functools.lru_cache(maxsize=1024)
def signing_key(secret, date, region, service=SERVICE):
    """The derived key: HMAC chain over date, region, service and ``aws4_request``
    (the same all day for a key pair, so kept)."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


def uri_encode(text, keep_slash=False):
    """AWS's URI encoding of a decoded string (UTF-8, upper-case hex)."""
    return quote(
        text,
        safe=_UNRESERVED + ("/" if keep_slash else ""),
        encoding="utf-8",
        errors="surrogateescape",
    )


def canonical_query(query_string, skip=()):
    """The canonical query string of a raw (still encoded) query string."""
    pairs = []
    for part in query_string.split("&") if query_string else ():
        if not part:
            continue
        name, _, value = part.partition("=")
        name = unquote(name, errors="surrogateescape")
        if name in skip:
            continue
        value = unquote(value, errors="surrogateescape")
        pairs.append((uri_encode(name), uri_encode(value)))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def header_value(environ, name):
    """A header's value as signed: ``None`` if absent (``host`` and the two content
    headers live outside ``HTTP_*`` in a WSGI environ)."""
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        value = environ.get(key)
        if value is None:
            value = environ.get("HTTP_" + key)
    else:
        value = environ.get("HTTP_" + key)
    if value is None:
        return None
    try:
        value = value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return _SPACES.sub(" ", value.strip())


def canonical_request(
    method, path, query_string, environ, signed_headers, payload_hash, skip_query=()
):
    """The canonical request (str) for a decoded ``path`` and a raw query string."""
    lines = [method, uri_encode(path, keep_slash=True), canonical_query(query_string, skip_query)]
    for name in signed_headers:
        value = header_value(environ, name)
        lines.append(f"{name}:{'' if value is None else value}")
    lines.append("")
    lines.append(";".join(signed_headers))
    lines.append(payload_hash)
    return "\n".join(lines)


def string_to_sign(amz_date, scope, canonical):
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def parse_amz_date(text):
    """Unix seconds of an ISO 8601 basic timestamp (``20130524T000000Z``), or None."""
    if not text or not _AMZ_DATE.match(text):
        return None
    fields = (
        int(text[0:4]),
        int(text[4:6]),
        int(text[6:8]),
        int(text[9:11]),
        int(text[11:13]),
        int(text[13:15]),
    )
    if not (
        1 <= fields[1] <= 12
        and 1 <= fields[2] <= 31
        and fields[3] < 24
        and fields[4] < 60
        and fields[5] < 62
    ):
        return None
    return calendar.timegm(fields)


def parse_authorization(value):
    """``(access_key, date, region, service, signed_headers, signature)`` of a
    SigV4 Authorization header; AuthorizationHeaderMalformed if it isn't one."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthorizationHeaderMalformed(f"unsupported algorithm {algorithm!r}")
    fields = {}
    for part in rest.split(","):
        name, sep, field = part.strip().partition("=")
        if sep:
            fields[name.strip()] = field.strip()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in fields]
    if missing:
        raise AuthorizationHeaderMalformed(
            f"the authorization header is missing {', '.join(missing)}"
        )
    scope = _parse_credential(fields["Credential"], AuthorizationHeaderMalformed)
    signed = fields["SignedHeaders"].split(";")
    return (*scope, signed, fields["Signature"])


def _parse_credential(credential, error):
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != TERMINATOR or not parts[0]:
        raise error(
            f"malformed credential {credential!r}; expected "
            "<key>/<YYYYMMDD>/<region>/s3/aws4_request"
        )
    return parts[0], parts[1], parts[2], parts[3]


def _check_scope(date, region, service, amz_date, conf, error):
    if service != SERVICE:
        raise error(f"incorrect service {service!r}; this endpoint serves 's3'")
    if region != conf.location:
        raise error(
            f"the region {region!r} is wrong; expecting {conf.location!r}", region=conf.location
        )
    if amz_date[:8] != date:
        raise error(f"the credential date {date!r} does not match the request date")


def _lookup(credentials, access_key):
    credential = credentials.get(access_key)
    if credential is None:
        raise InvalidAccessKeyId(**{"AWSAccessKeyId": access_key})
    return credential


def _compare(credential, given, to_sign, canonical):
    """The signature of ``to_sign`` with the credential's key; SignatureDoesNotMatch if
    it isn't ``given``. Returns (signing key, signature)."""
    scope = to_sign.split("\n")[2]
    date, region, service, _ = scope.split("/")
    key = signing_key(credential.secret_key, date, region, service)
    expected = _hmac(key, to_sign).hex()
    if not hmac.compare_digest(expected, given.lower()):
        raise SignatureDoesNotMatch(
            **{
                "AWSAccessKeyId": credential.access_key,
                "StringToSign": to_sign,
                "SignatureProvided": given,
                "CanonicalRequest": canonical,
            }
        )
    return key, expected


def check_header(environ, path, query_string, credentials, conf, now=None):
    """Verify an ``Authorization: AWS4-HMAC-SHA256 ...`` request."""
    now = time.time() if now is None else now
    access_key, date, region, service, signed, signature = parse_authorization(
        environ["HTTP_AUTHORIZATION"]
    )
    credential = _lookup(credentials, access_key)
    amz_date = environ.get("HTTP_X_AMZ_DATE") or ""
    when = parse_amz_date(amz_date)
    if when is None:
        raise AccessDenied("AWS authentication requires a valid X-Amz-Date header")
    _check_scope(date, region, service, amz_date, conf, AuthorizationHeaderMalformed)
    if abs(now - when) > conf.max_clock_skew:
        raise RequestTimeTooSkewed(
            request_time=amz_date,
            server_time=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)),
            max_allowed_skew_milliseconds=str(int(conf.max_clock_skew * 1000)),
        )
    if "host" not in signed:
        raise AuthorizationHeaderMalformed("the host header must be signed")
    payload = environ.get("HTTP_X_AMZ_CONTENT_SHA256")
    if payload is None:
        raise AuthorizationHeaderMalformed("missing required header x-amz-content-sha256")
    payload = payload.strip()
    canonical = canonical_request(
        environ["REQUEST_METHOD"], path, query_string, environ, signed, payload
    )
    scope = f"{date}/{region}/{service}/{TERMINATOR}"
    to_sign = string_to_sign(amz_date, scope, canonical)
    key, seed = _compare(credential, signature, to_sign, canonical)
    signer = None
    if payload.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
        signer = ChunkSigner(key, amz_date, scope, seed)
    return AuthResult(credential, payload, signer)


def check_presigned(environ, path, query, query_string, credentials, conf, now=None):
    """Verify a presigned URL (``X-Amz-Algorithm`` ... ``X-Amz-Signature`` in ``query``)."""
    now = time.time() if now is None else now
    error = AuthorizationQueryParametersError
    if query.get("X-Amz-Algorithm") != ALGORITHM:
        raise error(f"X-Amz-Algorithm only supports {ALGORITHM!r}")
    for name in (
        "X-Amz-Credential",
        "X-Amz-Signature",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
        "X-Amz-Expires",
    ):
        if not query.get(name):
            raise error(f"the query is missing {name}")
    access_key, date, region, service = _parse_credential(query["X-Amz-Credential"], error)
    credential = _lookup(credentials, access_key)
    amz_date = query["X-Amz-Date"]
    when = parse_amz_date(amz_date)
    if when is None:
        raise error("X-Amz-Date must be in the ISO8601 basic format (YYYYMMDD'T'HHMMSS'Z')")
    try:
        expires = int(query["X-Amz-Expires"])
    except ValueError:
        raise error("X-Amz-Expires should be a number") from None
    if expires < 0:
        raise error("X-Amz-Expires must be non-negative")
    if expires > MAX_EXPIRES:
        raise error(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given "
            "X-Amz-Expires must be less than 604800 seconds"
        )
    _check_scope(date, region, service, amz_date, conf, error)
    if when - now > conf.max_clock_skew:
        raise AccessDenied("Request is not valid yet")
    if now > when + expires:
        raise AccessDenied(
            "Request has expired",
            **{
                "X-Amz-Expires": str(expires),
                "Expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when + expires)),
                "ServerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            },
        )
    signed = query["X-Amz-SignedHeaders"].split(";")
    if "host" not in signed:
        raise error("the host header must be signed")
    payload = query.get("X-Amz-Content-Sha256") or UNSIGNED_PAYLOAD
    canonical = canonical_request(
        environ["REQUEST_METHOD"],
        path,
        query_string,
        environ,
        signed,
        payload,
        skip_query=("X-Amz-Signature",),
    )
    scope = f"{date}/{region}/{service}/{TERMINATOR}"
    to_sign = string_to_sign(amz_date, scope, canonical)
    _compare(credential, query["X-Amz-Signature"], to_sign, canonical)
    return AuthResult(credential, payload)
