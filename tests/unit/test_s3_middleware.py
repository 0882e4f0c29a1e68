"""The s3api filter in front of tempauth and a stub Swift app: what passes through, who
the Swift side sees, and how failures come back (requests signed by botocore)."""

import io
import json
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from webob import Request, Response

from proxy.middleware.tempauth import TempAuth
from proxy.s3api import filter_factory
from proxy.s3api.request import IDENTITY_KEY

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
S3_CONF = {
    "storage_domain": "s3.example.com",
    "s3_user_test_tester": "AKTESTER SECRETTESTER display_name=tester",
    "s3_user_test_tester3": "AKTESTER3 SECRETTESTER3",
    "s3_user_ghost_user": "AKGHOST SECRETGHOST",
}
TEMPAUTH_CONF = {
    "secret": "unit-test-secret",
    "user_test_tester": "testing .admin",
    "user_test_tester3": "testing3",
}


class StubSwift:
    """Answers like the proxy app would, remembering what it saw."""

    def __init__(self):
        self.seen = []
        self.fail = False

    def __call__(self, environ, start_response):
        req = Request(environ)
        self.seen.append(
            {
                "method": req.method,
                "path": req.path_info,
                "query": req.query_string,
                "remote_user": environ.get("REMOTE_USER"),
                "identity": environ.get(IDENTITY_KEY),
                "body": req.body_file.read() if req.method == "PUT" else b"",
                "headers": dict(req.headers),
            }
        )
        if self.fail:
            raise RuntimeError("boom")
        hook = environ.get("haneul.authorize")
        denial = hook(req) if hook else None
        if denial is not None:
            return denial(environ, start_response)
        if req.path_info == "/v1/AUTH_test" and req.method == "GET":
            resp = Response(
                json=[
                    {
                        "name": "bkt",
                        "count": 0,
                        "bytes": 0,
                        "last_modified": "2024-05-01T12:00:00.000000",
                    }
                ]
            )
        elif req.method == "PUT":
            resp = Response(
                status=201,
                headers={
                    "ETag": "5d41402abc4b2a76b9719d911017c592",
                    "Last-Modified": "Wed, 01 May 2024 12:00:00 GMT",
                },
            )
        else:
            resp = Response(status=404)
        return resp(environ, start_response)


@pytest.fixture
def stack():
    swift = StubSwift()
    app = filter_factory({}, dict(S3_CONF))(TempAuth(swift, dict(TEMPAUTH_CONF)))
    return app, swift


def call(
    app, method, url, body=b"", access="AKTESTER", secret="SECRETTESTER", headers=None, sign=True
):
    aws = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    if sign:
        S3SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(aws)
    parts = urlsplit(url)
    req = Request.blank(parts.path, environ={"REQUEST_METHOD": method, "QUERY_STRING": parts.query})
    req.host = parts.netloc
    for name, value in aws.headers.items():
        req.headers[name] = value.decode() if isinstance(value, bytes) else value
    req.body_file = io.BytesIO(body)
    req.content_length = len(body)
    return req.get_response(app)


def test_identity_key_is_the_one_tempauth_reads():
    from proxy.middleware import tempauth

    assert IDENTITY_KEY == tempauth.IDENTITY_KEY


def test_requests_without_s3_credentials_pass_through_to_swift(stack):
    app, swift = stack
    resp = call(app, "GET", "http://127.0.0.1/v1/AUTH_test", sign=False)
    assert "x-amz-request-id" not in resp.headers
    assert swift.seen[-1]["path"] == "/v1/AUTH_test"


def test_list_buckets_runs_as_the_key_pairs_user(stack):
    app, swift = stack
    resp = call(app, "GET", "http://127.0.0.1/")
    assert resp.status_int == 200, resp.body
    assert resp.headers["x-amz-request-id"]
    seen = swift.seen[-1]
    assert seen["path"] == "/v1/AUTH_test" and "format=json" in seen["query"]
    assert seen["identity"] == "test:tester"
    assert "AUTH_test" in seen["remote_user"].split(",")  # tempauth made it the owner
    root = ET.fromstring(resp.body)
    assert root.find(f"{NS}Owner/{NS}DisplayName").text == "tester"
    assert [e.text for e in root.iter(f"{NS}Name")] == ["bkt"]
    assert root.find(f"{NS}Buckets/{NS}Bucket/{NS}CreationDate").text == (
        "2024-05-01T12:00:00.000Z"
    )


def test_a_non_admin_user_is_denied_by_the_swift_side(stack):
    app, _swift = stack
    resp = call(app, "GET", "http://127.0.0.1/", access="AKTESTER3", secret="SECRETTESTER3")
    assert resp.status_int == 403
    assert ET.fromstring(resp.body).find("Code").text == "AccessDenied"


def test_a_key_pair_of_a_user_tempauth_does_not_know_is_refused(stack):
    app, _swift = stack
    resp = call(app, "GET", "http://127.0.0.1/", access="AKGHOST", secret="SECRETGHOST")
    assert resp.status_int == 403
    assert ET.fromstring(resp.body).find("Code").text == "AccessDenied"


def test_bad_signature_and_unknown_key(stack):
    app, swift = stack
    before = len(swift.seen)
    resp = call(app, "GET", "http://127.0.0.1/", secret="wrong")
    assert resp.status_int == 403
    assert ET.fromstring(resp.body).find("Code").text == "SignatureDoesNotMatch"
    resp = call(app, "GET", "http://127.0.0.1/", access="AKNOBODY")
    assert ET.fromstring(resp.body).find("Code").text == "InvalidAccessKeyId"
    assert len(swift.seen) == before  # nothing reached Swift


def test_virtual_hosted_put_maps_onto_the_container(stack):
    app, swift = stack
    resp = call(
        app,
        "PUT",
        "http://bkt.s3.example.com/dir/key.txt",
        body=b"hello",
        headers={"x-amz-meta-colour": "blue", "Content-Type": "text/plain"},
    )
    assert resp.status_int == 200, resp.body
    assert resp.headers["ETag"] == '"5d41402abc4b2a76b9719d911017c592"'
    seen = swift.seen[-1]
    assert seen["path"] == "/v1/AUTH_test/bkt/dir/key.txt"
    assert seen["body"] == b"hello"
    assert seen["headers"]["X-Object-Meta-Colour"] == "blue"
    assert seen["headers"]["Content-Type"] == "text/plain"


def test_missing_key_is_no_such_key_and_head_has_no_body(stack):
    app, swift = stack
    swift_404 = call(app, "GET", "http://127.0.0.1/bkt/missing")
    assert swift_404.status_int == 404
    # The container HEAD answered 404 too (the stub has no containers): NoSuchBucket.
    assert ET.fromstring(swift_404.body).find("Code").text == "NoSuchBucket"
    head = call(app, "HEAD", "http://127.0.0.1/bkt/missing")
    assert head.status_int == 404 and head.body == b""


def test_unexpected_errors_are_s3_internal_errors(stack):
    app, swift = stack
    swift.fail = True
    resp = call(app, "GET", "http://127.0.0.1/")
    assert resp.status_int == 500
    root = ET.fromstring(resp.body)
    assert root.find("Code").text == "InternalError"
    assert root.find("RequestId").text == resp.headers["x-amz-request-id"]


def test_filter_factory_refuses_unknown_options():
    from common.config import ConfigError

    with pytest.raises(ConfigError):
        filter_factory({}, {"storage_domian": "typo"})
    assert json.dumps(S3_CONF)  # the conf above is plain strings, as an INI gives them
