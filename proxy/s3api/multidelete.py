"""DeleteObjects (``POST /bucket?delete``): up to 1000 keys in one request.

The body (``<Delete><Quiet>?</Quiet><Object><Key>..</Key>[<VersionId>]</Object>...``)
is verified like any payload (Content-MD5 or an ``x-amz-checksum-*``; AWS asks for
one, we accept neither too). Keys are deleted side by side, a few at a time; a key
that was not there counts as deleted, as in S3. Quiet mode reports errors only.
"""

from common.concurrency import Pile
from proxy.s3api.buckets import head_container
from proxy.s3api.errors import MalformedXML
from proxy.s3api.objects import MAX_KEY_BYTES, delete_key
from proxy.s3api.responses import xml_response
from proxy.s3api.xml import Builder, find_text, parse

MAX_BODY = 2 * 1024 * 1024
CONCURRENCY = 8


def _delete_one(s3req, key, version):
    """``(key, version, None)`` when deleted, or ``(key, version, (code, message))``."""
    if version is not None and version != "null":
        return key, version, ("NoSuchVersion", "The specified version does not exist.")
    if len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
        return key, version, ("KeyTooLongError", "Your key is too long.")
    status = delete_key(s3req, key)
    if status < 300 or status == 404:
        return key, version, None
    if status in (401, 403):
        return key, version, ("AccessDenied", "Access Denied")
    if status == 503:
        return key, version, ("SlowDown", "Please reduce your request rate.")
    return key, version, ("InternalError", "We encountered an internal error. Please try again.")


def parse_delete(body, max_objects):
    """``(quiet, [(key, version)])`` of a Delete document."""
    root = parse(body, "Delete")
    quiet = (find_text(root, "Quiet", "false") or "").strip().lower() == "true"
    objects = []
    for element in root.findall("Object"):
        key = find_text(element, "Key")
        if key is None:
            raise MalformedXML()
        objects.append((key, find_text(element, "VersionId")))
    if not objects or len(objects) > max_objects:
        raise MalformedXML()
    return quiet, objects


def delete_objects(s3req):
    quiet, objects = parse_delete(s3req.read_body(MAX_BODY), s3req.conf.max_multi_delete_objects)
    head_container(s3req)
    pile = Pile(CONCURRENCY)
    for key, version in objects:
        pile.spawn(_delete_one, s3req, key, version)
    results = {}
    for result in pile:
        if isinstance(result, Exception):
            raise result
        results[(result[0], result[1])] = result[2]
    builder = Builder("DeleteResult")
    for key, version in objects:
        error = results.get((key, version))
        if error is None:
            if quiet:
                continue
            deleted = Builder.add(builder.root, "Deleted")
            Builder.add(deleted, "Key", key)
            if version is not None:
                Builder.add(deleted, "VersionId", version)
        else:
            failed = Builder.add(builder.root, "Error")
            Builder.add(failed, "Key", key)
            if version is not None:
                Builder.add(failed, "VersionId", version)
            Builder.add(failed, "Code", error[0])
            Builder.add(failed, "Message", error[1])
    return xml_response(builder)
