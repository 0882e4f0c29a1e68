"""Which handler answers an S3 request: by method, bucket/key and query sub-resource.

``route(method, bucket, key, query, headers)`` names the handler as
``"module.function"`` (pure, so tests can check the table without a cluster);
``dispatch(s3req)`` calls it. Multipart upload handlers live in
``proxy.s3api.multipart`` (``create_multipart_upload``, ``upload_part``,
``upload_part_copy``, ``list_parts``, ``complete_multipart_upload``,
``abort_multipart_upload``, ``list_multipart_uploads``), each taking the S3Request
and returning a webob Response or raising S3Error.
"""

import importlib

from proxy.s3api.errors import MethodNotAllowed
from proxy.s3api.errors import NotImplemented as S3NotImplemented

# Bucket sub-resources we answer, and those we know but do not implement.
UNSUPPORTED_BUCKET = {
    "policy": "NoSuchBucketPolicy",
    "cors": "NoSuchCORSConfiguration",
    "lifecycle": "NoSuchLifecycleConfiguration",
    "tagging": "NoSuchTagSet",
}
KNOWN_UNIMPLEMENTED = (
    "website",
    "logging",
    "notification",
    "encryption",
    "object-lock",
    "replication",
    "ownershipControls",
    "publicAccessBlock",
    "accelerate",
    "requestPayment",
    "analytics",
    "metrics",
    "inventory",
    "intelligent-tiering",
    "torrent",
    "restore",
    "select",
    "retention",
    "legal-hold",
    "attributes",
)


def _unsupported(query):
    for name in KNOWN_UNIMPLEMENTED:
        if name in query:
            return "router.not_implemented"
    for name in UNSUPPORTED_BUCKET:
        if name in query:
            return "router.not_implemented"
    return None


def route(method, bucket, key, query, headers):
    """The handler's dotted name (relative to ``proxy.s3api``) for a request."""
    if bucket is None:
        if method in ("GET", "HEAD"):
            return "buckets.list_buckets"
        return "router.method_not_allowed"
    if key is None:
        return _bucket_route(method, query)
    return _object_route(method, query, headers)


def _bucket_route(method, query):
    if method == "GET":
        if "tagging" in query or "policy" in query or "cors" in query or "lifecycle" in query:
            return "router.no_such_configuration"
        unsupported = _unsupported(query)
        if unsupported:
            return unsupported
        if "location" in query:
            return "buckets.get_bucket_location"
        if "acl" in query:
            return "acl.get_bucket_acl"
        if "versioning" in query:
            return "buckets.get_bucket_versioning"
        if "versions" in query:
            return "listing.list_object_versions"
        if "uploads" in query:
            return "multipart.list_multipart_uploads"
        if query.get("list-type") == "2":
            return "listing.list_objects_v2"
        return "listing.list_objects"
    if method == "HEAD":
        return "buckets.head_bucket"
    if method == "PUT":
        if "acl" in query:
            return "acl.put_bucket_acl"
        unsupported = _unsupported(query) or (
            "router.not_implemented" if "versioning" in query else None
        )
        if unsupported:
            return unsupported
        return "buckets.create_bucket"
    if method == "DELETE":
        unsupported = _unsupported(query)
        if unsupported:
            return unsupported
        return "buckets.delete_bucket"
    if method == "POST":
        if "delete" in query:
            return "multidelete.delete_objects"
        return "router.not_implemented"
    return "router.method_not_allowed"


def _object_route(method, query, headers):
    has_upload = "uploadId" in query
    if method in ("GET", "HEAD"):
        if "acl" in query:
            return "acl.get_object_acl" if method == "GET" else "router.method_not_allowed"
        if has_upload and method == "GET":
            return "multipart.list_parts"
        unsupported = _unsupported(query) or (
            "router.not_implemented" if "tagging" in query else None
        )
        if unsupported:
            return unsupported
        return "objects.get_object" if method == "GET" else "objects.head_object"
    if method == "PUT":
        if "acl" in query:
            return "acl.put_object_acl"
        if "partNumber" in query or has_upload:
            if headers.get("x-amz-copy-source"):
                return "multipart.upload_part_copy"
            return "multipart.upload_part"
        unsupported = _unsupported(query) or (
            "router.not_implemented" if "tagging" in query else None
        )
        if unsupported:
            return unsupported
        if headers.get("x-amz-copy-source"):
            return "objects.copy_object"
        return "objects.put_object"
    if method == "DELETE":
        if has_upload:
            return "multipart.abort_multipart_upload"
        if "tagging" in query:
            return "router.not_implemented"
        return "objects.delete_object"
    if method == "POST":
        if "uploads" in query:
            return "multipart.create_multipart_upload"
        if has_upload:
            return "multipart.complete_multipart_upload"
        return "router.not_implemented"
    return "router.method_not_allowed"


def handler(name):
    """The function a route names; NotImplemented if its module is not there."""
    module_name, _, function = name.rpartition(".")
    try:
        module = importlib.import_module(f"proxy.s3api.{module_name}")
    except ImportError as err:
        if err.name != f"proxy.s3api.{module_name}":
            raise
        raise S3NotImplemented(f"{function} is not available") from None
    found = getattr(module, function, None)
    if found is None:
        raise S3NotImplemented(f"{function} is not available")
    return found


def dispatch(s3req):
    name = route(s3req.method, s3req.bucket, s3req.key, s3req.query, s3req.headers)
    return handler(name)(s3req)


# -- the small answers -----------------------------------------------------------------


def not_implemented(s3req):
    raise S3NotImplemented()


def method_not_allowed(s3req):
    raise MethodNotAllowed(
        method=s3req.method, resource_type="OBJECT" if s3req.key is not None else "BUCKET"
    )


def no_such_configuration(s3req):
    from proxy.s3api import errors
    from proxy.s3api.buckets import head_container

    head_container(s3req)
    for name, code in UNSUPPORTED_BUCKET.items():
        if name in s3req.query:
            raise getattr(errors, code)(bucket_name=s3req.bucket)
    raise S3NotImplemented()
