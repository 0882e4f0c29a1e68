"""s3api: the S3 front door, a proxy filter placed before the auth filter.

A request is an S3 one when it carries S3 credentials (``Authorization: AWS4-HMAC-SHA256
...`` or ``AWS key:sig``, or a presigned query) or is addressed to a virtual-hosted
bucket (``<bucket>.<storage_domain>``); anything else passes through to the Swift API
untouched. An S3 request is authenticated here (``sigv4`` / ``sigv2`` against the key
pairs in ``credentials``), becomes an ``S3Request`` and is dispatched by ``router``;
handlers translate it into Swift subrequests that run the rest of the pipeline as the
key pair's tempauth user (``environ["haneul.identity"]``). Every answer carries
``x-amz-request-id`` (the transaction id) and ``x-amz-id-2``; every error is S3 XML.

Options (``[filter:s3api]``): see ``OPTIONS`` and ``etc/proxy.conf``.
"""

import logging
from urllib.parse import quote

from common.config import ConfigError, config_float, config_int
from common.http import new_trans_id
from proxy import register_capability
from proxy.middleware import check_options, filter_conf
from proxy.s3api import credentials as creds
from proxy.s3api import sigv2, sigv4
from proxy.s3api.errors import (
    AccessDenied,
    InternalError,
    InvalidURI,
    S3Error,
    host_id,
)
from proxy.s3api.request import S3Request, parse_query

OPTIONS = {
    "storage_domain",
    "location",
    "max_clock_skew",
    "reseller_prefix",
    "max_object_size",
    "max_bucket_listing",
    "max_multi_delete_objects",
    "min_segment_size",
    "max_upload_part_num",
    "allow_sigv2",
}
MAX_OBJECT_SIZE = 5 * 1024**3


class S3Settings:
    """The filter's settings, shared by every request (``s3req.conf``)."""

    def __init__(self, conf):
        self.storage_domains = [
            d.strip().lower().lstrip(".")
            for d in conf.get("storage_domain", "").split(",")
            if d.strip()
        ]
        self.location = conf.get("location", "us-east-1").strip() or "us-east-1"
        self.max_clock_skew = config_float(conf.get("max_clock_skew", 900), "max_clock_skew", 0)
        prefix = conf.get("reseller_prefix", "AUTH").strip()
        if not prefix:
            raise ConfigError("reseller_prefix may not be empty")
        self.reseller_prefix = prefix if prefix.endswith("_") else prefix + "_"
        self.max_object_size = config_int(
            conf.get("max_object_size", MAX_OBJECT_SIZE), "max_object_size", 1
        )
        self.max_bucket_listing = config_int(
            conf.get("max_bucket_listing", 1000), "max_bucket_listing", 1
        )
        self.max_multi_delete_objects = config_int(
            conf.get("max_multi_delete_objects", 1000), "max_multi_delete_objects", 1
        )
        self.min_segment_size = config_int(
            conf.get("min_segment_size", 5 * 1024 * 1024), "min_segment_size", 0
        )
        self.max_upload_part_num = config_int(
            conf.get("max_upload_part_num", 10000), "max_upload_part_num", 1
        )
        self.allow_sigv2 = str(conf.get("allow_sigv2", "true")).strip().lower() in (
            "1",
            "true",
            "yes",
            "on",
        )
        self.credentials = creds.parse_credentials(conf)


def _text(value):
    """A WSGI (latin-1) string as the UTF-8 text the client sent."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise InvalidURI() from None


class S3ApiMiddleware:
    """The WSGI filter (see the module docstring)."""

    def __init__(self, app, settings, logger=None):
        self.app = app
        self.conf = settings
        self.logger = logger or logging.getLogger("haneul.proxy.s3api")

    # -- recognising S3 requests -------------------------------------------------------

    def bucket_from_host(self, environ):
        """The bucket a virtual-hosted request names in its Host, else None."""
        if not self.conf.storage_domains:
            return None
        host = (environ.get("HTTP_HOST") or "").lower()
        if host.startswith("["):
            return None
        host = host.rpartition(":")[0] if ":" in host else host
        for domain in self.conf.storage_domains:
            if host.endswith("." + domain):
                bucket = host[: -len(domain) - 1]
                if bucket:
                    return bucket
        return None

    @staticmethod
    def auth_kind(environ, query):
        """ "v4", "v4-query", "v2", "v2-query", or None (no S3 credentials)."""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if auth.startswith("AWS4-HMAC-SHA256"):
            return "v4"
        if auth.startswith("AWS "):
            return "v2"
        if "X-Amz-Algorithm" in query or "X-Amz-Credential" in query:
            return "v4-query"
        if "AWSAccessKeyId" in query and "Signature" in query:
            return "v2-query"
        return None

    def __call__(self, environ, start_response):
        query_string = environ.get("QUERY_STRING", "")
        query = parse_query(query_string) if query_string else {}
        kind = self.auth_kind(environ, query)
        host_bucket = self.bucket_from_host(environ)
        if kind is None and host_bucket is None:
            return self.app(environ, start_response)
        request_id = environ.get("haneul.trans_id")
        if not request_id:
            request_id = new_trans_id()
            environ["haneul.trans_id"] = request_id
        environ["haneul.s3"] = True
        method = environ.get("REQUEST_METHOD", "GET")
        resource = "/"
        try:
            path = _text(environ.get("PATH_INFO", "/") or "/")
            bucket, key = self.split_path(path, host_bucket)
            resource = "/" + (bucket or "") + (f"/{key}" if key is not None else "")
            auth = self.authenticate(kind, environ, path, query, query_string, host_bucket)
            s3req = S3Request(
                environ,
                self.app,
                self.conf,
                bucket=bucket,
                key=key,
                query=query,
                credential=auth.credential,
                auth=auth,
                request_id=request_id,
            )
            from proxy.s3api import router  # handlers import the colleague's modules lazily

            resp = router.dispatch(s3req)
        except S3Error as err:
            resp = err.response(request_id, resource, head=method == "HEAD")
        except Exception:
            self.logger.exception(
                "s3api: unexpected error on %s %s (%s)",
                method,
                environ.get("PATH_INFO"),
                request_id,
            )
            resp = InternalError().response(request_id, resource, head=method == "HEAD")
        resp.headers["x-amz-request-id"] = request_id
        resp.headers["x-amz-id-2"] = host_id(request_id)
        return resp(environ, start_response)

    @staticmethod
    def split_path(path, host_bucket):
        """``(bucket, key)`` of a decoded path; either may be None."""
        if host_bucket is not None:
            key = path[1:] if path.startswith("/") else path
            return host_bucket, (key or None)
        if not path.startswith("/"):
            raise InvalidURI()
        bucket, sep, key = path[1:].partition("/")
        if not bucket:
            return None, None
        return bucket, (key if sep and key else None)

    def authenticate(self, kind, environ, path, query, query_string, host_bucket):
        """The AuthResult of a request's signature (raises S3Error when it fails)."""
        conf = self.conf
        credentials = conf.credentials
        if kind is None:
            raise AccessDenied("anonymous S3 requests are not supported; sign the request")
        if kind == "v4":
            return sigv4.check_header(environ, path, query_string, credentials, conf)
        if kind == "v4-query":
            return sigv4.check_presigned(environ, path, query, query_string, credentials, conf)
        if not conf.allow_sigv2:
            raise AccessDenied("Signature Version 2 is disabled; use Signature Version 4")
        raw_path = environ.get("RAW_PATH_INFO") or quote(path.encode("utf-8"), safe="/~")
        raw_path = raw_path.partition("?")[0]
        if kind == "v2":
            return sigv2.check_header(
                environ, raw_path, query_string, credentials, conf, host_bucket
            )
        return sigv2.check_query(
            environ, raw_path, query, query_string, credentials, conf, host_bucket
        )


def filter_factory(global_conf, local_conf):
    """``[filter:s3api]``: the options in OPTIONS and ``s3_user_*`` key pairs."""
    check_options(local_conf, OPTIONS, creds.PREFIXES)
    settings = S3Settings(filter_conf(global_conf, local_conf))
    register_capability(
        "s3api",
        location=settings.location,
        max_bucket_listing=settings.max_bucket_listing,
        max_multi_delete_objects=settings.max_multi_delete_objects,
        max_upload_part_num=settings.max_upload_part_num,
        signature_versions=["4", "2"] if settings.allow_sigv2 else ["4"],
    )

    def make_filter(app):
        return S3ApiMiddleware(app, settings)

    return make_filter
