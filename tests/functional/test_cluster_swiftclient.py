"""``haneul up`` gives a Swift endpoint that python-swiftclient and the ``swift`` CLI use
unchanged: auth, stat, post, upload, list, download, delete, ACLs, bad input."""

import hashlib
import http.client
import json
import os
import subprocess
import sys
import urllib.parse

import pytest
from swiftclient import client as swift
from swiftclient.exceptions import ClientException

from tests.aio import AllInOne

SWIFT_CLI = os.path.join(os.path.dirname(sys.executable), "swift")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    aio = AllInOne(tmp_path_factory.mktemp("aio"))
    aio.up()
    try:
        yield aio
    finally:
        aio.down()


@pytest.fixture(scope="module")
def conn(cluster):
    return swift.Connection(
        authurl=cluster.auth_url, user=cluster.info["user"], key=cluster.info["key"], retries=0
    )


def user_conn(cluster, user, key):
    return swift.Connection(authurl=cluster.auth_url, user=user, key=key, retries=0)


def swift_cli(cluster, *args, user=None, key=None, cwd=None):
    cmd = [
        SWIFT_CLI,
        "-A",
        cluster.auth_url,
        "-U",
        user or cluster.info["user"],
        "-K",
        key or cluster.info["key"],
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def raw_request(url, method, path, headers=None, body=None):
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.netloc, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_up_writes_cluster_json_in_the_documented_shape(cluster):
    info = cluster.info
    assert info["user"] == "test:tester" and info["key"] == "testing"
    assert {"user": "test2:tester2", "key": "testing2"} in info["users"]
    assert {"user": "test:tester3", "key": "testing3"} in info["users"]
    assert info["auth_url"].endswith("/auth/v1.0")
    assert os.path.exists(os.path.join(info["etc"], "object.ring.gz"))
    assert len(info["nodes"]) == 4
    for node in info["nodes"]:
        assert {"object_port", "container_port", "account_port", "pid", "devices"} <= set(node)
        for path in node["devices"].values():
            assert os.path.isdir(path)


def test_status_reports_every_process(cluster):
    proc = cluster.run("status", "--dir", cluster.root)
    assert proc.stdout.count(" ok") == 9, proc.stdout


def test_second_up_reuses_running_cluster(cluster):
    proc = cluster.up()
    assert "already running" in proc.stdout


def test_library_round_trip(conn):
    conn.put_container("lib")
    body = os.urandom(300_000)
    etag = conn.put_object("lib", "dir/obj.bin", body)
    assert etag == hashlib.md5(body).hexdigest()
    headers, got = conn.get_object("lib", "dir/obj.bin")
    assert got == body and headers["etag"] == etag
    assert headers["content-type"] == "application/octet-stream"
    conn.post_object("lib", "dir/obj.bin", headers={"X-Object-Meta-Color": "blue"})
    assert conn.head_object("lib", "dir/obj.bin")["x-object-meta-color"] == "blue"
    headers, part = conn.get_object("lib", "dir/obj.bin", headers={"Range": "bytes=10-19"})
    assert part == body[10:20]
    _, listing = conn.get_container("lib")
    assert [o["name"] for o in listing] == ["dir/obj.bin"]
    assert listing[0]["bytes"] == len(body) and listing[0]["hash"] == etag
    account_headers = conn.head_account()
    assert int(account_headers["x-account-container-count"]) >= 1
    conn.delete_object("lib", "dir/obj.bin")
    with pytest.raises(ClientException) as err:
        conn.get_object("lib", "dir/obj.bin")
    assert err.value.http_status == 404
    conn.delete_container("lib")


def test_listing_with_prefix_and_delimiter(conn):
    conn.put_container("tree")
    for name in ["a/1", "a/2", "b/1", "c"]:
        conn.put_object("tree", name, b"x")
    _, listing = conn.get_container("tree", delimiter="/")
    assert [e.get("name") or e.get("subdir") for e in listing] == ["a/", "b/", "c"]
    _, listing = conn.get_container("tree", prefix="a/")
    assert [e["name"] for e in listing] == ["a/1", "a/2"]
    _, listing = conn.get_container("tree", marker="a/2", limit=2)
    assert [e["name"] for e in listing] == ["b/1", "c"]


def test_swift_cli_stat_post_upload_list_download_delete(cluster, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "one.txt").write_bytes(b"one\n" * 1000)
    (src / "two.bin").write_bytes(os.urandom(70_000))

    proc = swift_cli(cluster, "stat")
    assert proc.returncode == 0 and "Account: AUTH_test" in proc.stdout, proc.stderr
    proc = swift_cli(cluster, "post", "cli", "-m", "Owner:me")
    assert proc.returncode == 0, proc.stderr
    proc = swift_cli(cluster, "stat", "cli")
    assert "Meta Owner: me" in proc.stdout, proc.stdout
    proc = swift_cli(cluster, "upload", "cli", "one.txt", "two.bin", cwd=src)
    assert proc.returncode == 0, proc.stderr
    proc = swift_cli(cluster, "upload", "cli", "one.txt", "--object-name", "renamed.txt", cwd=src)
    assert proc.returncode == 0, proc.stderr
    proc = swift_cli(cluster, "list", "cli")
    assert proc.stdout.split() == ["one.txt", "renamed.txt", "two.bin"]
    proc = swift_cli(cluster, "list", "cli", "--prefix", "t")
    assert proc.stdout.split() == ["two.bin"]

    out = tmp_path / "out"
    out.mkdir()
    proc = swift_cli(cluster, "download", "cli", cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "two.bin").read_bytes() == (src / "two.bin").read_bytes()
    assert (out / "renamed.txt").read_bytes() == (src / "one.txt").read_bytes()

    proc = swift_cli(cluster, "delete", "cli")
    assert proc.returncode == 0, proc.stderr
    proc = swift_cli(cluster, "list")
    assert "cli" not in proc.stdout.split()


def test_container_acls_with_a_second_user(cluster, conn):
    conn.put_container("shared")
    conn.put_object("shared", "doc", b"secret words")
    tester3 = user_conn(cluster, "test:tester3", "testing3")
    with pytest.raises(ClientException) as err:
        tester3.get_object("shared", "doc")
    assert err.value.http_status == 403
    conn.post_container("shared", {"X-Container-Read": "test:tester3"})
    assert tester3.get_object("shared", "doc")[1] == b"secret words"
    with pytest.raises(ClientException) as err:
        tester3.put_object("shared", "new", b"x")
    assert err.value.http_status == 403
    conn.post_container("shared", {"X-Container-Write": "test:tester3"})
    tester3.put_object("shared", "new", b"x")
    # a user of another account sees nothing of test's
    other = user_conn(cluster, "test2:tester2", "testing2")
    url, token = other.get_auth()
    with pytest.raises(ClientException) as err:
        swift.get_object(url.replace("AUTH_test2", "AUTH_test"), token, "shared", "doc")
    assert err.value.http_status == 403


def test_bad_credentials_and_tokens(cluster, conn):
    with pytest.raises(ClientException) as err:
        user_conn(cluster, "test:tester", "wrong").get_auth()
    assert err.value.http_status == 401
    url, _ = conn.get_auth()
    status, _, _ = raw_request(url, "HEAD", urllib.parse.urlsplit(url).path)
    assert status == 401
    status, _, _ = raw_request(
        url, "HEAD", urllib.parse.urlsplit(url).path, {"X-Auth-Token": "AUTH_tkforged.abc"}
    )
    assert status == 401


def test_unknown_account_is_401_anonymous_and_403_for_another_user(cluster, conn):
    url, token = conn.get_auth()
    other = urllib.parse.urlsplit(url).path.replace("AUTH_test", "AUTH_nosuchaccount")
    status, _, _ = raw_request(url, "GET", other)
    assert status == 401
    status, _, _ = raw_request(url, "GET", other, {"X-Auth-Token": token})
    assert status == 403


def test_bad_input_through_the_proxy(cluster, conn):
    url, token = conn.get_auth()
    path = urllib.parse.urlsplit(url).path
    conn.put_container("bad")
    auth = {"X-Auth-Token": token}
    status, _, _ = raw_request(url, "PUT", f"{path}/{'c' * 300}", auth)
    assert status == 400
    status, _, _ = raw_request(url, "PUT", f"{path}/bad/{'o' * 1100}", auth, b"x")
    assert status == 400
    status, _, _ = raw_request(
        url, "PUT", f"{path}/bad/meta", {**auth, "X-Object-Meta-" + "k" * 200: "v"}, b"x"
    )
    assert status == 400
    status, _, _ = raw_request(
        url, "PUT", f"{path}/bad/toobig", {**auth, "Content-Length": str(6 * 1024**3)}
    )
    assert status == 413
    conn.put_object("bad", "small", b"0123456789")
    status, headers, _ = raw_request(
        url, "GET", f"{path}/bad/small", {**auth, "Range": "bytes=50-"}
    )
    assert status == 416
    assert headers.get("Content-Range") == "bytes */10"


def test_short_body_stores_nothing(cluster, conn):
    url, token = conn.get_auth()
    parsed = urllib.parse.urlsplit(url)
    conn.put_container("short")
    sock = http.client.HTTPConnection(parsed.netloc, timeout=30)
    sock.putrequest("PUT", f"{parsed.path}/short/partial")
    sock.putheader("X-Auth-Token", token)
    sock.putheader("Content-Length", "100000")
    sock.endheaders()
    sock.send(b"x" * 1000)
    sock.sock.shutdown(1)  # the client goes away mid-body
    try:
        status = sock.getresponse().status
        assert status in (499, 408, 400)
    except (http.client.RemoteDisconnected, ConnectionError):
        pass
    finally:
        sock.close()
    with pytest.raises(ClientException) as err:
        conn.head_object("short", "partial")
    assert err.value.http_status == 404


def test_info_describes_limits_and_policies(cluster):
    status, _, body = raw_request(cluster.info["proxy"]["url"], "GET", "/info")
    assert status == 200
    info = json.loads(body)
    assert info["swift"]["max_file_size"] == 5 * 1024**3
    assert [p["name"] for p in info["swift"]["policies"]] == ["gold", "ec42"]
