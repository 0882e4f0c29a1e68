"""One S3 request, authenticated, and the door from it into the Swift API.

The middleware builds an ``S3Request`` once it knows the bucket, key and caller;
handlers (buckets, objects, multipart) read it and talk to Swift only through
``subrequest``, which runs the rest of the proxy pipeline for
``/v1/<account>[/<container>[/<object>]]`` as the authenticated user::

    resp = s3req.subrequest("PUT", s3req.bucket, s3req.key,
                            headers={"Content-Type": ...}, body=s3req.body_stream())

``body_stream()`` is the client's payload as a file-like (``read(n)``, ``length``):
de-framed when it is aws-chunked, and verified against what the client signed or
declared (``x-amz-content-sha256``, chunk signatures, ``x-amz-checksum-*`` headers or
trailers, ``Content-MD5``). A mismatch is found as the last bytes are read, *before*
they are handed on, so an upload that fails verification is never completed
downstream; ``subrequest`` then raises the S3 error the stream recorded.
"""

import base64
import binascii
import io
from urllib.parse import parse_qsl, quote

from webob import Response

from common.http import SUBREQUEST_ENVIRON_KEYS, new_trans_id
from proxy.s3api import chunked
from proxy.s3api.errors import (
    InvalidArgument,
    InvalidDigest,
    MalformedXML,
    MissingContentLength,
)

# environ keys a subrequest inherits from the client's request.
INHERITED = SUBREQUEST_ENVIRON_KEYS
# Where the S3 layer names the user a subrequest runs as (read by the auth filter).
IDENTITY_KEY = "haneul.identity"
SUBREQUEST_KEY = "haneul.s3.subrequest"


class Headers(dict):
    """A request's headers: read-only, case-insensitive, values decoded to text.

    Built once from the environ (a plain dict is far cheaper to ask than webob's
    EnvironHeaders, and handlers ask often). Keys are lower-case; values are what the
    client sent, read as UTF-8 (latin-1 when they are not UTF-8).
    """

    def __init__(self, environ):
        super().__init__()
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:]
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                name = key
            else:
                continue
            if not value.isascii():
                try:
                    value = value.encode("latin-1").decode("utf-8")
                except (UnicodeEncodeError, UnicodeDecodeError):
                    pass
            dict.__setitem__(self, name.replace("_", "-").lower(), value)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def _readonly(self, *args, **kwargs):
        raise TypeError("request headers are read-only")

    __setitem__ = __delitem__ = update = pop = setdefault = clear = _readonly


def parse_query(query_string):
    """``{name: value}`` of a query string, decoded (the last of repeated names wins)."""
    return dict(
        parse_qsl(query_string, keep_blank_values=True, encoding="utf-8", errors="surrogateescape")
    )


def to_wsgi(text):
    """A ``str`` path as WSGI carries it (UTF-8 bytes mapped through latin-1)."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


class S3Request:
    """An authenticated S3 request (see the module docstring).

    Attributes: ``method``, ``bucket`` and ``key`` (str or None), ``query`` (dict),
    ``headers`` (the client's: a read-only, case-insensitive ``Headers`` mapping of
    decoded text), ``environ``, ``request_id``,
    ``credential`` (who signed: ``credentials.Credential`` or None for anonymous),
    ``account`` (``AUTH_test``), ``user`` (``test:tester``), ``owner_id``,
    ``display_name``, ``conf`` (the middleware's settings) and ``auth`` (what the
    signature check learnt: ``payload_hash``, ``chunk_signer``).
    """

    def __init__(
        self,
        environ,
        app,
        conf,
        *,
        bucket,
        key,
        query,
        credential=None,
        auth=None,
        account=None,
        request_id=None,
    ):
        self.environ = environ
        self.app = app
        self.conf = conf
        self.method = environ["REQUEST_METHOD"]
        self.bucket = bucket
        self.key = key
        self.query = query
        self.headers = Headers(environ)
        self.credential = credential
        self.auth = auth
        self.request_id = request_id or environ.get("haneul.trans_id") or new_trans_id()
        if account is None and credential is not None:
            account = conf.reseller_prefix + credential.account
        self.account = account
        self._stream = None

    # -- who ---------------------------------------------------------------------------

    @property
    def user(self):
        return self.credential.name if self.credential else None

    @property
    def owner_id(self):
        return self.credential.owner_id if self.credential else "anonymous"

    @property
    def display_name(self):
        return self.credential.display_name if self.credential else "anonymous"

    @property
    def resource(self):
        """``/bucket/key`` as error bodies name it."""
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}" + (f"/{self.key}" if self.key is not None else "")

    # -- the payload -------------------------------------------------------------------

    def content_md5(self):
        """The Content-MD5 as hex, None if absent; InvalidDigest if it isn't 16 bytes."""
        value = self.headers.get("Content-MD5")
        if value is None:
            return None
        try:
            digest = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidDigest(content_md5=value) from None
        if len(digest) != 16:
            raise InvalidDigest(content_md5=value)
        return digest.hex()

    def declared_length(self):
        """The payload's length as the client declared it (decoded length for
        aws-chunked), None for a chunked transfer with no declared length."""
        if chunked.is_streaming(self.headers):
            raw = self.headers.get("x-amz-decoded-content-length")
            if raw is None:
                raise MissingContentLength()
        else:
            raw = self.environ.get("CONTENT_LENGTH")
            if raw in (None, ""):
                return None
        try:
            length = int(raw)
        except ValueError:
            raise InvalidArgument(
                "bad Content-Length", argument_name="Content-Length", argument_value=raw
            ) from None
        if length < 0:
            raise InvalidArgument(
                "bad Content-Length", argument_name="Content-Length", argument_value=raw
            )
        return length

    def body_stream(self, check_md5=True):
        """The verified payload as a file-like: ``read(n)``, ``length`` (or None), and
        ``error`` (the S3Error found, once found). Built once per request.

        With ``check_md5=False`` a Content-MD5 is left for the caller (an object PUT
        hands it to the object servers as the ETag, so the bytes are hashed once).
        """
        if self._stream is None:
            self._stream = chunked.body_reader(self, check_md5=check_md5)
        return self._stream

    def read_body(self, limit, too_big=MalformedXML):
        """The whole (small) payload as bytes; ``too_big`` is raised past ``limit``."""
        stream = self.body_stream()
        parts, size = [], 0
        try:
            while True:
                chunk = stream.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise too_big()
                parts.append(chunk)
        except chunked.BodyError as err:
            raise err.s3error from None
        return b"".join(parts)

    # -- talking to Swift --------------------------------------------------------------

    def swift_path(self, container=None, obj=None):
        """``/v1/<account>[/<container>[/<obj>]]`` (a str, not percent-encoded)."""
        path = f"/v1/{self.account}"
        if container is not None:
            path += f"/{container}"
            if obj is not None:
                path += f"/{obj}"
        return path

    def subrequest(self, method, container=None, obj=None, headers=None, body=None, query=None):
        """Run ``method`` on the Swift path as this request's user; a webob Response.

        ``body``: bytes, or a file-like read to its end (``Content-Length`` from
        ``headers``, else its ``length`` attribute, else a chunked transfer).
        ``query``: a dict made into the query string. If ``body`` is a verified stream
        that found a mismatch, its S3Error is raised instead of the downstream answer.
        """
        environ = {key: self.environ[key] for key in INHERITED if key in self.environ}
        environ.update(
            {
                "REQUEST_METHOD": method,
                "SCRIPT_NAME": "",
                "PATH_INFO": to_wsgi(self.swift_path(container, obj)),
                "QUERY_STRING": "&".join(
                    f"{quote(str(k), safe='')}={quote(str(v), safe='')}"
                    for k, v in (query or {}).items()
                ),
                SUBREQUEST_KEY: True,
            }
        )
        if self.credential is not None:
            environ[IDENTITY_KEY] = self.credential.name
        for name, value in (headers or {}).items():
            if value is None:
                continue
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = to_wsgi(str(value))
        if body is None:
            body = b""
        if isinstance(body, (bytes, bytearray)):
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        else:
            environ["wsgi.input"] = body
            if "CONTENT_LENGTH" not in environ:
                length = getattr(body, "length", None)
                if length is None:
                    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
                else:
                    environ["CONTENT_LENGTH"] = str(length)
        captured = []

        def start_response(status, headerlist, exc_info=None):
            captured[:] = [status, headerlist]

        app_iter = self.app(environ, start_response)
        error = getattr(body, "error", None)
        if error is not None:
            _close(app_iter)
            raise error
        if not captured:  # an app that answers only once iterated
            app_iter = list(app_iter)
        status, headerlist = captured
        resp = Response(status=status, headerlist=list(headerlist), app_iter=app_iter)
        resp.request_environ = environ
        return resp


def _close(app_iter):
    close = getattr(app_iter, "close", None)
    if close is not None:
        close()
