"""AWS Signature Version 2 (the older HMAC-SHA1 scheme), kept for old clients.

Header form ``Authorization: AWS <access key>:<base64 signature>`` and query form
``?AWSAccessKeyId=...&Expires=<unix seconds>&Signature=...``. The string to sign::

    METHOD \\n Content-MD5 \\n Content-Type \\n Date (or Expires) \\n
    x-amz-* headers (lower-cased, sorted, "name:value" lines) /bucket/key[?subresources]

where the resource is the path as the client sent it (still percent-encoded), with
the bucket in front for a virtual-hosted request, and the sub-resources and
``response-*`` overrides of the query, sorted, with their decoded values.
"""

import base64
import email.utils
import hashlib
import hmac
import time
from urllib.parse import unquote

from proxy.s3api.errors import (
    AccessDenied,
    InvalidAccessKeyId,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from proxy.s3api.sigv4 import AuthResult

SUBRESOURCES = frozenset(
    (
        "accelerate",
        "acl",
        "cors",
        "delete",
        "lifecycle",
        "location",
        "logging",
        "notification",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "restore",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "object-lock",
        "select",
        "select-type",
    )
)


def _header(environ, key):
    value = environ.get(key)
    return "" if value is None else value.strip()


def canonical_resource(raw_path, query_string, bucket_from_host=None):
    """``/bucket/key?sub=v`` as SigV2 signs it."""
    resource = raw_path
    if bucket_from_host is not None:
        resource = f"/{bucket_from_host}{raw_path}"
    subs = []
    for part in query_string.split("&") if query_string else ():
        name, sep, value = part.partition("=")
        if name in SUBRESOURCES:
            subs.append((name, unquote(value) if sep else None))
    if subs:
        subs.sort(key=lambda pair: pair[0])
        resource += "?" + "&".join(name if v is None else f"{name}={v}" for name, v in subs)
    return resource


def amz_headers(environ):
    found = {}
    for key, value in environ.items():
        if key.startswith("HTTP_X_AMZ_"):
            name = key[5:].lower().replace("_", "-")
            found[name] = ",".join(v.strip() for v in value.split(","))
    return "".join(f"{name}:{found[name]}\n" for name in sorted(found))


def string_to_sign(environ, raw_path, query_string, date_value, bucket_from_host=None):
    return "\n".join(
        (
            environ["REQUEST_METHOD"],
            _header(environ, "HTTP_CONTENT_MD5"),
            _header(environ, "CONTENT_TYPE"),
            date_value,
            amz_headers(environ) + canonical_resource(raw_path, query_string, bucket_from_host),
        )
    )


def sign(secret, text):
    digest = hmac.new(
        secret.encode("utf-8"), text.encode("utf-8", "surrogateescape"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def _verify(credential, given, environ, raw_path, query_string, date_value, bucket_from_host):
    """Check ``given`` against the string to sign; SignatureDoesNotMatch if it differs.

    A bucket's resource is ``/bucket/`` to some clients and ``/bucket`` to others (S3
    documents the first for virtual-hosted requests, SDKs sign the path they send), so
    a path naming just a bucket is tried both ways.
    """
    text = string_to_sign(environ, raw_path, query_string, date_value, bucket_from_host)
    candidates = [text]
    resource_path = raw_path if bucket_from_host is None else f"/{bucket_from_host}{raw_path}"
    if resource_path.count("/") == 1 and len(resource_path) > 1:
        candidates.append(
            string_to_sign(environ, raw_path + "/", query_string, date_value, bucket_from_host)
        )
    elif resource_path.count("/") == 2 and resource_path.endswith("/"):
        candidates.append(
            string_to_sign(environ, raw_path[:-1], query_string, date_value, bucket_from_host)
        )
    for candidate in candidates:
        if hmac.compare_digest(sign(credential.secret_key, candidate), given):
            return
    raise SignatureDoesNotMatch(
        **{
            "AWSAccessKeyId": credential.access_key,
            "StringToSign": text,
            "SignatureProvided": given,
        }
    )


def _lookup(credentials, access_key):
    credential = credentials.get(access_key)
    if credential is None:
        raise InvalidAccessKeyId(**{"AWSAccessKeyId": access_key})
    return credential


def check_header(
    environ, raw_path, query_string, credentials, conf, bucket_from_host=None, now=None
):
    """Verify ``Authorization: AWS key:signature``."""
    now = time.time() if now is None else now
    value = environ["HTTP_AUTHORIZATION"].strip()[len("AWS ") :]
    access_key, sep, signature = value.rpartition(":")
    if not sep or not access_key:
        raise AccessDenied("AWS authorization header is invalid; expected AWS KeyId:Signature")
    credential = _lookup(credentials, access_key.strip())
    amz_date = environ.get("HTTP_X_AMZ_DATE")
    date_text = amz_date or environ.get("HTTP_DATE")
    if not date_text:
        raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    try:
        when = email.utils.parsedate_to_datetime(date_text).timestamp()
    except (TypeError, ValueError, IndexError):
        raise AccessDenied(
            "AWS authentication requires a valid Date or x-amz-date header"
        ) from None
    if abs(now - when) > conf.max_clock_skew:
        raise RequestTimeTooSkewed(request_time=date_text)
    # With x-amz-date the Date line is signed empty-or-as-sent; clients sign what they sent.
    date_line = _header(environ, "HTTP_DATE")
    _verify(
        credential, signature.strip(), environ, raw_path, query_string, date_line, bucket_from_host
    )
    return AuthResult(credential, version="v2")


def check_query(
    environ, raw_path, query, query_string, credentials, conf, bucket_from_host=None, now=None
):
    """Verify ``?AWSAccessKeyId=...&Expires=...&Signature=...``."""
    now = time.time() if now is None else now
    credential = _lookup(credentials, query.get("AWSAccessKeyId", ""))
    try:
        expires = int(query.get("Expires", ""))
    except ValueError:
        raise AccessDenied("Expires must be a number of seconds since the epoch") from None
    if now > expires:
        raise AccessDenied("Request has expired", expires=str(expires))
    kept = "&".join(
        part
        for part in query_string.split("&")
        if part.partition("=")[0] not in ("AWSAccessKeyId", "Expires", "Signature")
    )
    _verify(
        credential,
        query.get("Signature", ""),
        environ,
        raw_path,
        kept,
        str(expires),
        bucket_from_host,
    )
    return AuthResult(credential, version="v2")
