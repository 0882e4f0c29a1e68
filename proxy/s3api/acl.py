"""Canned ACLs, kept simple: the owner has FULL_CONTROL, ``public-read`` adds AllUsers READ.

The canned name is kept in sysmeta (``X-Container-Sysmeta-S3api-Acl`` /
``X-Object-Sysmeta-S3api-Acl``). A bucket's ``public-read`` (and ``public-read-write``)
also becomes the Swift read ACL ``.r:*,.rlistings``, so anyone can read it through
the Swift API; ``private`` clears it. Object ACLs are recorded and shown, but Swift
has no per-object ACL to enforce them with. A PutBucketAcl/PutObjectAcl body may only
say what a canned ACL says (owner FULL_CONTROL, optionally AllUsers READ).
"""

from proxy.s3api.errors import InvalidArgument, MalformedACLError
from proxy.s3api.errors import NotImplemented as S3NotImplemented
from proxy.s3api.responses import (
    SYSMETA_CONTAINER,
    SYSMETA_OBJECT,
    empty_response,
    meta_from_swift,
    raise_for,
    xml_response,
)
from proxy.s3api.xml import XSI_NS, Builder, find_text, parse

CANNED = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
)
PUBLIC = ("public-read", "public-read-write")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
PUBLIC_READ_ACL = ".r:*,.rlistings"
GRANT_HEADERS = (
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
)
MAX_ACL_BODY = 64 * 1024


def canned_from_headers(headers):
    """The ``x-amz-acl`` of a request (checked), or None."""
    if any(headers.get(name) for name in GRANT_HEADERS):
        raise S3NotImplemented("x-amz-grant-* headers are not supported; use a canned ACL")
    value = headers.get("x-amz-acl")
    if value is None:
        return None
    value = value.strip()
    if value not in CANNED:
        raise InvalidArgument(argument_name="x-amz-acl", argument_value=value)
    return value


def container_acl_headers(canned):
    """Container headers for a canned ACL: the Swift read ACL and the sysmeta."""
    read = PUBLIC_READ_ACL if canned in PUBLIC else ""
    return {"X-Container-Read": read, SYSMETA_CONTAINER + "Acl": canned}


def object_acl_headers(canned):
    return {SYSMETA_OBJECT + "Acl": canned}


def policy_response(s3req, canned):
    """AccessControlPolicy of a canned ACL, with the caller as owner."""
    builder = Builder("AccessControlPolicy")
    owner = Builder.add(builder.root, "Owner")
    Builder.add(owner, "ID", s3req.owner_id)
    Builder.add(owner, "DisplayName", s3req.display_name)
    grants = Builder.add(builder.root, "AccessControlList")
    grant = Builder.add(grants, "Grant")
    grantee = Builder.add(grant, "Grantee")
    grantee.set("xmlns:xsi", XSI_NS)
    grantee.set("xsi:type", "CanonicalUser")
    Builder.add(grantee, "ID", s3req.owner_id)
    Builder.add(grantee, "DisplayName", s3req.display_name)
    Builder.add(grant, "Permission", "FULL_CONTROL")
    group_grants = []
    if canned in PUBLIC:
        group_grants.append((ALL_USERS, "READ"))
    if canned == "public-read-write":
        group_grants.append((ALL_USERS, "WRITE"))
    if canned == "authenticated-read":
        group_grants.append((AUTHENTICATED_USERS, "READ"))
    for uri, permission in group_grants:
        grant = Builder.add(grants, "Grant")
        grantee = Builder.add(grant, "Grantee")
        grantee.set("xmlns:xsi", XSI_NS)
        grantee.set("xsi:type", "Group")
        Builder.add(grantee, "URI", uri)
        Builder.add(grant, "Permission", permission)
    return xml_response(builder)


def canned_from_body(s3req):
    """The canned ACL an AccessControlPolicy body amounts to (only those we can keep)."""
    root = parse(s3req.read_body(MAX_ACL_BODY), "AccessControlPolicy")
    public = False
    owner_full = False
    for grant in root.iter("Grant"):
        grantee = grant.find("Grantee")
        permission = find_text(grant, "Permission", "")
        if grantee is None or permission not in (
            "READ",
            "WRITE",
            "READ_ACP",
            "WRITE_ACP",
            "FULL_CONTROL",
        ):
            raise MalformedACLError()
        uri = find_text(grantee, "URI")
        grantee_id = find_text(grantee, "ID")
        if uri == ALL_USERS and permission == "READ":
            public = True
        elif grantee_id is not None and grantee_id == s3req.owner_id:
            owner_full = owner_full or permission == "FULL_CONTROL"
        else:
            raise S3NotImplemented(
                "only the grants of the private and public-read canned ACLs are supported"
            )
    return "public-read" if public else "private"


def _canned_for_put(s3req):
    canned = canned_from_headers(s3req.headers)
    if canned is not None:
        return canned
    length = s3req.headers.get("Content-Length")
    if length in (None, "0") and "x-amz-decoded-content-length" not in s3req.headers:
        raise MalformedACLError("an ACL needs an x-amz-acl header or an AccessControlPolicy body")
    return canned_from_body(s3req)


# -- handlers ---------------------------------------------------------------------------


def get_bucket_acl(s3req):
    from proxy.s3api.buckets import head_container

    resp = head_container(s3req)
    canned = resp.headers.get(SYSMETA_CONTAINER + "Acl")
    if canned is None:
        read = resp.headers.get("X-Container-Read") or ""
        canned = "public-read" if ".r:*" in read else "private"
    return policy_response(s3req, canned)


def put_bucket_acl(s3req):
    from proxy.s3api.buckets import head_container

    head_container(s3req)
    canned = _canned_for_put(s3req)
    resp = s3req.subrequest("POST", s3req.bucket, headers=container_acl_headers(canned))
    raise_for(resp, s3req, key=None)
    return empty_response(200)


def get_object_acl(s3req):
    resp = s3req.subrequest("HEAD", s3req.bucket, s3req.key)
    raise_for(resp, s3req)
    canned = resp.headers.get(SYSMETA_OBJECT + "Acl") or "private"
    return policy_response(s3req, canned)


def put_object_acl(s3req):
    head = s3req.subrequest("HEAD", s3req.bucket, s3req.key)
    raise_for(head, s3req)
    canned = _canned_for_put(s3req)
    # A POST replaces the user metadata: send it back with the new ACL.
    headers = {
        "X-Object-Meta-" + k[len("x-amz-meta-") :]: v
        for k, v in meta_from_swift(head.headers).items()
    }
    headers.update(object_acl_headers(canned))
    for name in (
        "Content-Type",
        "Content-Encoding",
        "Content-Disposition",
        "Cache-Control",
        "Content-Language",
        "Expires",
    ):
        if head.headers.get(name):
            headers[name] = head.headers[name]
    resp = s3req.subrequest("POST", s3req.bucket, s3req.key, headers=headers)
    raise_for(resp, s3req)
    return empty_response(200)
