"""``benchmarks/load.py --s3``: the S3 load client signs what our SigV4 check accepts."""

import hashlib

import pytest

from benchmarks import load
from proxy.s3api import S3Settings, sigv4
from proxy.s3api.credentials import Credential

CREDENTIALS = {"AKLOAD": Credential("AKLOAD", "load-secret", "test", "tester")}


def as_environ(method, path, headers):
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": ""}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    return env


@pytest.mark.parametrize("payload", ["unsigned", "sha256"])
def test_s3_client_signatures_verify(payload):
    client = load.S3Client(
        "http://127.0.0.1:8080", "AKLOAD", "load-secret", "load-1", payload=payload
    )
    body = memoryview(b"x" * 4096)
    path = f"{client.base}/obj-7"
    headers = client.signed("PUT", path, body, {"Content-Length": "4096"})
    expected = "UNSIGNED-PAYLOAD" if payload == "unsigned" else hashlib.sha256(body).hexdigest()
    assert headers["x-amz-content-sha256"] == expected
    assert headers["Host"] == "127.0.0.1:8080"
    result = sigv4.check_header(
        as_environ("PUT", "/load-1/obj-7", headers),
        "/load-1/obj-7",
        "",
        CREDENTIALS,
        S3Settings({}),
    )
    assert result.credential.user == "tester" and result.payload_hash == expected
    # The payload hash is computed once and reused for the same payload.
    assert client.signed("PUT", path, body)["x-amz-content-sha256"] == expected
    assert len(client._payload_hashes) == (1 if payload == "sha256" else 0)


def test_s3_mode_is_chosen_by_client_config():
    args = load.build_parser().parse_args(
        ["--s3", "--endpoint", "http://h:1", "--access-key", "A", "--secret-key", "S"]
    )
    kind, kw, shown = load.client_config(args, "bucket-x")
    assert kind == "s3" and shown == "http://h:1"
    assert kw["bucket"] == "bucket-x" and kw["payload"] == "unsigned"
    assert isinstance(load.CLIENT_TYPES[kind](**kw), load.S3Client)
    with pytest.raises(load.UsageError):
        load.client_config(load.build_parser().parse_args(["--s3"]), "b")
