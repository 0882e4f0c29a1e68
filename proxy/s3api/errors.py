"""S3 errors: one exception class per S3 error code, each able to answer as S3 does.

A handler raises ``NoSuchKey(key=name)``; the middleware catches ``S3Error`` and
sends ``err.response(request_id, resource)``: the status, ``Content-Type:
application/xml`` and the body S3 clients parse::

    <Error><Code>NoSuchKey</Code><Message>...</Message><Key>...</Key>
    <Resource>...</Resource><RequestId>...</RequestId><HostId>...</HostId></Error>

``S3Error(message, status=..., code=..., headers=..., **extra)``: keyword arguments
beyond those become elements of the body in the order given (``Key``, ``BucketName``,
``UploadId`` ...; a snake_case name is written in CamelCase, ``bucket_name`` ->
``BucketName``). ``headers`` are added to the response (e.g. ``Allow``).
"""

import xml.etree.ElementTree as ET
from http import HTTPStatus

from webob import Response

_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _camel(name):
    if "_" not in name and name[:1].isupper():
        return name
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def host_id(request_id):
    """The ``x-amz-id-2`` of a request (opaque to clients; ours names the request)."""
    return f"haneul/{request_id}"


class S3Error(Exception):
    """An S3 error answer. Subclasses fix ``code``, ``status`` and the default message."""

    code = "InternalError"
    status = 500
    message = "We encountered an internal error. Please try again."

    def __init__(self, message=None, *, status=None, code=None, headers=None, **extra):
        if message is not None:
            self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})
        self.extra = {_camel(k): v for k, v in extra.items() if v is not None}
        super().__init__(f"{self.code}: {self.message}")

    def body(self, request_id="", resource=None):
        """The XML document (bytes)."""
        root = ET.Element("Error")
        ET.SubElement(root, "Code").text = self.code
        ET.SubElement(root, "Message").text = self.message
        for tag, value in self.extra.items():
            ET.SubElement(root, tag).text = str(value)
        if resource is not None and "Resource" not in self.extra:
            ET.SubElement(root, "Resource").text = resource
        ET.SubElement(root, "RequestId").text = request_id
        ET.SubElement(root, "HostId").text = host_id(request_id)
        return _DECLARATION + ET.tostring(root, encoding="utf-8")

    def response(self, request_id="", resource=None, head=False):
        """The webob Response: status, S3 headers and (unless ``head``) the XML body."""
        resp = Response(status=status_line_for(self.status))
        resp.headers["Content-Type"] = "application/xml"
        resp.headers["x-amz-request-id"] = request_id
        resp.headers["x-amz-id-2"] = host_id(request_id)
        for key, value in self.headers.items():
            resp.headers[key] = value
        if head or self.status == 304:
            resp.body = b""
            if self.status == 304:
                del resp.headers["Content-Type"]
        else:
            resp.body = self.body(request_id, resource)
        return resp


def status_line_for(code):
    """``"404 Not Found"``: the status line of a code."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Error"


def _error(name, status, code_message, code=None):
    cls = type(name, (S3Error,), {"code": code or name, "status": status, "message": code_message})
    cls.__doc__ = f"{code or name} ({status}): {code_message}"
    return cls


# 3xx / 4xx / 5xx, each with a short default message (our own wording).
NotModified = _error("NotModified", 304, "Not Modified")
AccessDenied = _error("AccessDenied", 403, "Access Denied")
AccountProblem = _error("AccountProblem", 403, "There is a problem with your account.")
BadDigest = _error(
    "BadDigest", 400, "The Content-MD5 you specified did not match what we received."
)
BucketAlreadyExists = _error(
    "BucketAlreadyExists", 409, "The requested bucket name is not available; pick another."
)
BucketAlreadyOwnedByYou = _error(
    "BucketAlreadyOwnedByYou", 409, "You already own a bucket by that name."
)
BucketNotEmpty = _error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty.")
EntityTooLarge = _error("EntityTooLarge", 400, "Your upload exceeds the maximum allowed size.")
EntityTooSmall = _error("EntityTooSmall", 400, "Your upload is smaller than the minimum size.")
IncompleteBody = _error(
    "IncompleteBody", 400, "You did not send the number of bytes given by Content-Length."
)
InternalError = _error("InternalError", 500, "We encountered an internal error. Please try again.")
InvalidAccessKeyId = _error(
    "InvalidAccessKeyId", 403, "The AWS access key id you provided does not exist in our records."
)
InvalidArgument = _error("InvalidArgument", 400, "Invalid Argument")
InvalidBucketName = _error("InvalidBucketName", 400, "The specified bucket is not valid.")
InvalidDigest = _error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
InvalidLocationConstraint = _error(
    "InvalidLocationConstraint", 400, "The specified location constraint is not valid."
)
IllegalLocationConstraintException = _error(
    "IllegalLocationConstraintException",
    400,
    "The location constraint is incompatible with the region this request was sent to.",
)
InvalidPart = _error(
    "InvalidPart", 400, "One or more of the specified parts could not be found or did not match."
)
InvalidPartOrder = _error(
    "InvalidPartOrder", 400, "The list of parts was not in ascending order by part number."
)
InvalidRange = _error("InvalidRange", 416, "The requested range is not satisfiable")
InvalidRequest = _error("InvalidRequest", 400, "Invalid Request")
InvalidStorageClass = _error(
    "InvalidStorageClass", 400, "The storage class you specified is not valid."
)
InvalidURI = _error("InvalidURI", 400, "Couldn't parse the specified URI.")
KeyTooLongError = _error("KeyTooLongError", 400, "Your key is too long.")
MalformedACLError = _error(
    "MalformedACLError", 400, "The XML you provided was not well-formed or did not validate."
)
MalformedXML = _error(
    "MalformedXML", 400, "The XML you provided was not well-formed or did not validate."
)
MalformedPOSTRequest = _error(
    "MalformedPOSTRequest", 400, "The body of your POST request is not well-formed."
)
MaxMessageLengthExceeded = _error("MaxMessageLengthExceeded", 400, "Your request was too big.")
MetadataTooLarge = _error(
    "MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed size."
)
MethodNotAllowed = _error(
    "MethodNotAllowed", 405, "The specified method is not allowed against this resource."
)
MissingContentLength = _error(
    "MissingContentLength", 411, "You must provide the Content-Length HTTP header."
)
MissingSecurityHeader = _error(
    "MissingSecurityHeader", 400, "Your request is missing a required header."
)
NoSuchBucket = _error("NoSuchBucket", 404, "The specified bucket does not exist.")
NoSuchKey = _error("NoSuchKey", 404, "The specified key does not exist.")
NoSuchUpload = _error("NoSuchUpload", 404, "The specified multipart upload does not exist.")
NoSuchVersion = _error("NoSuchVersion", 404, "The specified version does not exist.")
NoSuchBucketPolicy = _error("NoSuchBucketPolicy", 404, "The bucket policy does not exist.")
NoSuchCORSConfiguration = _error(
    "NoSuchCORSConfiguration", 404, "The CORS configuration does not exist."
)
NoSuchLifecycleConfiguration = _error(
    "NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist."
)
NoSuchTagSet = _error("NoSuchTagSet", 404, "The TagSet does not exist.")
NotImplemented = _error(  # noqa: A001 - the S3 error code
    "NotImplemented",
    501,
    "A header or query you provided implies functionality that is not implemented.",
)
PreconditionFailed = _error(
    "PreconditionFailed", 412, "At least one of the preconditions you specified did not hold."
)
RequestTimeout = _error(
    "RequestTimeout",
    400,
    "Your socket connection to the server was not read from or written to "
    "within the timeout period.",
)
RequestTimeTooSkewed = _error(
    "RequestTimeTooSkewed",
    403,
    "The difference between the request time and the server's time is too large.",
)
ServiceUnavailable = _error("ServiceUnavailable", 503, "Please reduce your request rate.")
SignatureDoesNotMatch = _error(
    "SignatureDoesNotMatch",
    403,
    "The request signature we calculated does not match the "
    "signature you provided. Check your key and signing method.",
)
AuthorizationHeaderMalformed = _error(
    "AuthorizationHeaderMalformed", 400, "The authorization header you provided is invalid."
)
AuthorizationQueryParametersError = _error(
    "AuthorizationQueryParametersError", 400, "The authorization query parameters are invalid."
)
InvalidObjectState = _error(
    "InvalidObjectState", 403, "The operation is not valid for the object's state."
)
XAmzContentSHA256Mismatch = _error(
    "XAmzContentSHA256Mismatch",
    400,
    "The provided 'x-amz-content-sha256' header does not match what was computed.",
)


class BadChecksum(BadDigest):  # noqa: N818 - named like the S3 codes
    """BadDigest (400) for an ``x-amz-checksum-*`` that does not match the payload."""

    message = "The checksum you specified did not match what we received."


InvalidChunkSizeError = _error(
    "InvalidChunkSizeError",
    403,
    "Only the last chunk is allowed to have a size less than 8192 bytes",
)
InvalidEncodingType = _error(
    "InvalidEncodingType",
    400,
    "Invalid Encoding Method specified in Request",
    code="InvalidArgument",
)
OperationAborted = _error(
    "OperationAborted",
    409,
    "A conflicting conditional operation is currently in progress against this resource.",
)
TooManyBuckets = _error(
    "TooManyBuckets", 400, "You have attempted to create more buckets than allowed."
)
UnexpectedContent = _error("UnexpectedContent", 400, "This request does not support content.")
UnresolvableGrantByEmailAddress = _error(
    "UnresolvableGrantByEmailAddress",
    400,
    "The e-mail address you provided does not match any account on record.",
)
SlowDown = _error("SlowDown", 503, "Please reduce your request rate.")
