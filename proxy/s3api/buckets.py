"""Bucket operations: one bucket is one container of the caller's Swift account.

ListBuckets (the account listing), CreateBucket, HeadBucket, DeleteBucket,
GetBucketLocation and GetBucketVersioning (never enabled). Listing a bucket's
objects is in ``listing``, ACLs in ``acl``. Bucket names follow S3's rules at
creation (``check_bucket_name``); an existing container whose name S3 could not
create (a ``+segments`` container, say) is not listed as a bucket.
"""

import ipaddress
import re

from proxy.s3api import acl
from proxy.s3api.errors import (
    BucketAlreadyOwnedByYou,
    IllegalLocationConstraintException,
    InvalidBucketName,
    InvalidLocationConstraint,
    NoSuchBucket,
)
from proxy.s3api.responses import (
    SYSMETA_CONTAINER,
    empty_response,
    iso8601,
    raise_for,
    xml_response,
)
from proxy.s3api.xml import Builder, find_text, parse

_BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_LISTABLE = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
MAX_CREATE_BODY = 64 * 1024
ACCOUNT_PAGE = 10000


def bucket_name_problem(name):
    """Why ``name`` may not be a new bucket's name, or None when it may."""
    if not 3 <= len(name) <= 63:
        return "bucket names are 3 to 63 characters long"
    if not _BUCKET_CHARS.match(name):
        return (
            "bucket names hold lowercase letters, digits, dots and hyphens, and begin "
            "and end with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        return "bucket names may not hold two adjacent dots or a dot next to a hyphen"
    try:
        ipaddress.IPv4Address(name)
        return "bucket names may not look like IP addresses"
    except ValueError:
        pass
    if name.startswith(RESERVED_PREFIXES) or name.endswith(RESERVED_SUFFIXES):
        return "bucket names may not use a reserved prefix or suffix"
    return None


def check_bucket_name(name):
    problem = bucket_name_problem(name)
    if problem is not None:
        raise InvalidBucketName(problem, bucket_name=name)


def check_existing_name(name):
    """Names S3 could never reach are answered as missing buckets."""
    if not _LISTABLE.match(name or ""):
        if name and len(name) > 255:
            raise InvalidBucketName(bucket_name=name)
        raise NoSuchBucket(bucket_name=name)


def owner_element(parent, s3req, tag="Owner"):
    owner = Builder.add(parent, tag)
    Builder.add(owner, "ID", s3req.owner_id)
    Builder.add(owner, "DisplayName", s3req.display_name)
    return owner


# -- service -----------------------------------------------------------------------------


def list_buckets(s3req):
    """GET / : every container of the account that is a possible bucket."""
    builder = Builder("ListAllMyBucketsResult")
    owner_element(builder.root, s3req)
    buckets = Builder.add(builder.root, "Buckets")
    marker = ""
    while True:
        query = {"format": "json", "limit": str(ACCOUNT_PAGE)}
        if marker:
            query["marker"] = marker
        resp = s3req.subrequest("GET", query=query)
        raise_for(resp, s3req)
        entries = resp.json if resp.status_int == 200 and resp.body else []
        for entry in entries:
            name = entry["name"]
            if not _LISTABLE.match(name):
                continue
            bucket = Builder.add(buckets, "Bucket")
            Builder.add(bucket, "Name", name)
            Builder.add(bucket, "CreationDate", iso8601(entry.get("last_modified")))
        if len(entries) < ACCOUNT_PAGE:
            break
        marker = entries[-1]["name"]
    return xml_response(builder)


# -- bucket ------------------------------------------------------------------------------


def head_container(s3req, bucket=None):
    """The container's HEAD answer; NoSuchBucket if it is missing."""
    bucket = bucket or s3req.bucket
    check_existing_name(bucket)
    resp = s3req.subrequest("HEAD", bucket)
    return raise_for(resp, s3req, bucket=bucket, key=None)


def create_bucket(s3req):
    """PUT /bucket (optionally with CreateBucketConfiguration/LocationConstraint)."""
    bucket = s3req.bucket
    check_bucket_name(bucket)
    body = s3req.read_body(MAX_CREATE_BODY)
    if body.strip():
        root = parse(body, "CreateBucketConfiguration")
        constraint = find_text(root, "LocationConstraint")
        if constraint:
            if constraint == "us-east-1" and s3req.conf.location == "us-east-1":
                raise InvalidLocationConstraint(location_constraint=constraint)
            if constraint != s3req.conf.location:
                raise IllegalLocationConstraintException(
                    f"The {constraint} location constraint is incompatible with the region "
                    "specific endpoint this request was sent to."
                )
    headers = {SYSMETA_CONTAINER + "Owner": f"{s3req.owner_id} {s3req.display_name}"}
    canned = acl.canned_from_headers(s3req.headers)
    headers.update(acl.container_acl_headers(canned or "private"))
    existing = s3req.subrequest("HEAD", bucket)
    if existing.status_int < 300:
        if s3req.conf.location == "us-east-1":
            # The legacy region answers a re-create by the owner with success.
            return empty_response(200, {"Location": f"/{bucket}"})
        raise BucketAlreadyOwnedByYou(bucket_name=bucket)
    if existing.status_int != 404:
        raise_for(existing, s3req)
    resp = s3req.subrequest("PUT", bucket, headers=headers)
    if resp.status_int == 202:  # it appeared in the meantime
        raise BucketAlreadyOwnedByYou(bucket_name=bucket)
    raise_for(resp, s3req)
    return empty_response(200, {"Location": f"/{bucket}"})


def head_bucket(s3req):
    head_container(s3req)
    return empty_response(200, {"x-amz-bucket-region": s3req.conf.location})


def delete_bucket(s3req):
    check_existing_name(s3req.bucket)
    resp = s3req.subrequest("DELETE", s3req.bucket)
    raise_for(resp, s3req)
    return empty_response(204)


def get_bucket_location(s3req):
    head_container(s3req)
    builder = Builder("LocationConstraint")
    if s3req.conf.location != "us-east-1":
        builder.root.text = s3req.conf.location
    return xml_response(builder)


def get_bucket_versioning(s3req):
    head_container(s3req)
    return xml_response(Builder("VersioningConfiguration"))
