"""A whole storage node over HTTP: ``haneul serve storage`` in a real process.

Objects, containers and accounts through their own ports, the updates between them
(the object PUT updates the container listing, the container PUT the account listing),
what bad input gets back over the wire, what a client hanging up or stalling mid-upload
leaves on disk (nothing), one port for all three apps, the runner's signals with real
apps, and ``haneul serve proxy`` in front of the node.
"""

import hashlib
import json
import os
import signal
import socket
import threading
import time
import uuid

import msgpack
import pytest

from common.timestamp import Timestamp
from tests.functional.nodes import ProxyServer


def ts():
    return Timestamp.now().internal


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def put_object(node, path, body, headers=None):
    headers = {"X-Timestamp": ts(), "Content-Type": "application/x-test", **(headers or {})}
    return node.request("object", "PUT", path, headers, body)


def put_account(node, account, device="d1"):
    resp = node.request("account", "PUT", node.path(device, account), {"X-Timestamp": ts()})
    assert resp.status in (201, 202), resp
    return resp


def put_container(node, account, container, device="d1"):
    headers = {"X-Timestamp": ts(), "X-Backend-Storage-Policy-Index": "0"}
    headers.update(node.account_update_headers(device, account))
    resp = node.request("container", "PUT", node.path(device, account, container), headers)
    assert resp.status in (201, 202), resp
    return resp


def listing(node, kind, path):
    resp = node.request(kind, "GET", path + "?format=json")
    assert resp.status == 200, resp
    return json.loads(resp.body)


# -- objects ---------------------------------------------------------------------------


def test_object_put_get_head_post_delete(storage_node):
    node = storage_node
    path = node.path("d1", "AUTH_obj", "c", unique("o"))
    body = os.urandom(200_000)
    resp = put_object(node, path, body, {"X-Object-Meta-Color": "blue"})
    assert resp.status == 201
    assert resp.header("ETag").strip('"') == hashlib.md5(body).hexdigest()
    assert resp.header("X-Trans-Id")

    got = node.request("object", "GET", path)
    assert (got.status, got.body) == (200, body)
    assert got.header("X-Object-Meta-Color") == "blue"
    assert got.header("Content-Type") == "application/x-test"

    head = node.request("object", "HEAD", path)
    assert (head.status, head.body, head.header("Content-Length")) == (200, b"", str(len(body)))

    post = node.request(
        "object", "POST", path, {"X-Timestamp": ts(), "X-Object-Meta-Shape": "round"}
    )
    assert post.status == 202
    head = node.request("object", "HEAD", path)
    assert head.header("X-Object-Meta-Shape") == "round"
    assert head.header("X-Object-Meta-Color") is None  # a POST replaces user metadata

    assert node.request("object", "DELETE", path, {"X-Timestamp": ts()}).status == 204
    assert node.request("object", "GET", path).status == 404


def test_object_ranges(storage_node):
    node = storage_node
    path = node.path("d2", "AUTH_obj", "c", unique("ranged"))
    body = bytes(range(256)) * 400
    assert put_object(node, path, body).status == 201

    part = node.request("object", "GET", path, {"Range": "bytes=100-199"})
    assert (part.status, part.body) == (206, body[100:200])
    assert part.header("Content-Range") == f"bytes 100-199/{len(body)}"
    tail = node.request("object", "GET", path, {"Range": "bytes=-10"})
    assert tail.body == body[-10:]
    multi = node.request("object", "GET", path, {"Range": "bytes=0-4,-5"})
    assert multi.status == 206 and multi.header("Content-Type").startswith("multipart/byteranges")
    assert body[:5] in multi.body and body[-5:] in multi.body
    bad = node.request("object", "GET", path, {"Range": f"bytes={len(body)}-"})
    assert bad.status == 416


def test_object_writes_show_in_the_container_listing(storage_node):
    node = storage_node
    account, container = unique("AUTH_l"), "listed"
    put_account(node, account)
    put_container(node, account, container)
    names = sorted(unique("obj") for _ in range(3))
    bodies = {name: os.urandom(1000 + i) for i, name in enumerate(names)}
    for name in names:
        headers = node.container_update_headers("d1", account, container)
        path = node.path("d2", account, container, name)
        assert put_object(node, path, bodies[name], headers).status == 201

    rows = listing(node, "container", node.path("d1", account, container))
    assert [row["name"] for row in rows] == names
    for row in rows:
        assert row["bytes"] == len(bodies[row["name"]])
        assert row["hash"] == hashlib.md5(bodies[row["name"]]).hexdigest()
        assert row["content_type"] == "application/x-test"

    headers = {"X-Timestamp": ts(), **node.container_update_headers("d1", account, container)}
    path = node.path("d2", account, container, names[0])
    assert node.request("object", "DELETE", path, headers).status == 204
    rows = listing(node, "container", node.path("d1", account, container))
    assert [row["name"] for row in rows] == names[1:]


def test_container_writes_show_in_the_account_listing(storage_node):
    node = storage_node
    account = unique("AUTH_a")
    put_account(node, account)
    for container in ("alpha", "beta"):
        put_container(node, account, container)
    headers = node.container_update_headers("d1", account, "alpha")
    assert put_object(node, node.path("d1", account, "alpha", "o"), b"12345", headers).status == 201
    put_container(node, account, "alpha")  # a container PUT reports its current stats

    rows = listing(node, "account", node.path("d1", account))
    assert [row["name"] for row in rows] == ["alpha", "beta"]
    head = node.request("account", "HEAD", node.path("d1", account))
    assert head.status == 204 and head.header("X-Account-Container-Count") == "2"


# -- bad input over the wire -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "method", "path"),
    [
        ("object", "PUT", "/d1/1/a/c"),  # too short for an object
        ("object", "PUT", "/d1/notapart/a/c/o"),
        ("object", "PUT", "/../1/a/c/o"),
        ("object", "PUT", "/%2E%2E/1/a/c/o"),
        ("object", "PUT", "/d1/1/a/c/" + "o" * 1025),
        ("container", "PUT", "/d1/1/a/" + "c" * 257),
        ("account", "PUT", "/d1/1/" + "a" * 257),
        ("container", "PUT", "/d1/1/a/c%00"),
    ],
)
def test_bad_paths_are_400(storage_node, kind, method, path):
    resp = storage_node.request(kind, method, path, {"X-Timestamp": ts()}, b"")
    assert resp.status == 400, resp


def test_missing_or_bad_timestamp_is_400(storage_node):
    node = storage_node
    path = node.path("d1", "AUTH_obj", "c", unique("o"))
    assert node.request("object", "PUT", path, {}, b"x").status == 400
    assert node.request("object", "PUT", path, {"X-Timestamp": "yesterday"}, b"x").status == 400


def test_unknown_device_is_507(storage_node):
    node = storage_node
    for kind, path in [
        ("object", node.path("nodev", "AUTH_obj", "c", "o")),
        ("container", node.path("nodev", "AUTH_obj", "c")),
        ("account", node.path("nodev", "AUTH_obj")),
    ]:
        resp = node.request(kind, "PUT", path, {"X-Timestamp": ts()}, b"")
        assert resp.status == 507, (kind, resp)


def test_a_client_hanging_up_mid_put_leaves_no_data(storage_node):
    node = storage_node
    name = unique("cut")
    path = node.path("d2", "AUTH_obj", "c", name)
    before = set(node.data_files())
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts()}\r\n"
        f"Content-Length: {4 * 1024 * 1024}\r\nContent-Type: a/b\r\n\r\n"
    ).encode()
    with socket.create_connection((node.host, node.ports["object"])) as sock:
        sock.sendall(head + os.urandom(300_000))
        time.sleep(0.2)  # the server has started writing to tmp/
    deadline = time.monotonic() + 10
    while f"PUT {path} 499" not in node.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"PUT {path} 499" in node.log
    assert set(node.data_files()) == before
    assert node.request("object", "GET", path).status == 404
    assert os.listdir(os.path.join(node.devices_root, "d2", "tmp")) == []


def test_a_client_stalling_mid_put_times_out_with_408(make_storage_node):
    node = make_storage_node(extra={"DEFAULT": {"client_timeout": "0.5"}})
    path = node.path("d1", "AUTH_obj", "c", "stalled")
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts()}\r\n"
        f"Content-Length: 100000\r\nContent-Type: a/b\r\n\r\n"
    ).encode()
    with socket.create_connection((node.host, node.ports["object"]), timeout=10) as sock:
        sock.sendall(head + b"x" * 1000)
        answer = sock.recv(4096)  # the server gives up after client_timeout
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert node.data_files() == []


def test_request_log_lines_carry_the_transaction_id(storage_node):
    node = storage_node
    path = node.path("d1", "AUTH_obj", "c", unique("logged"))
    resp = put_object(node, path, b"abc", {"X-Trans-Id": "tx-functional-test-1"})
    assert resp.header("X-Trans-Id") == "tx-functional-test-1"
    deadline = time.monotonic() + 5
    line = f"PUT {path} 201 0 3 "
    while line not in node.log and time.monotonic() < deadline:
        time.sleep(0.05)
    (logged,) = [text for text in node.log.splitlines() if line in text]
    assert logged.endswith(" tx-functional-test-1")


# -- one port for all three apps -------------------------------------------------------


def test_single_port_routes_by_path(make_storage_node):
    node = make_storage_node(single_port=True)
    assert len(set(node.ports.values())) == 1
    account = "AUTH_single"
    put_account(node, account)
    put_container(node, account, "c")
    headers = node.container_update_headers("d1", account, "c")
    path = node.path("d1", account, "c", "o/with/slashes")
    assert put_object(node, path, b"one port", headers).status == 201
    assert node.request("object", "GET", path).body == b"one port"
    assert [r["name"] for r in listing(node, "container", node.path("d1", account, "c"))] == [
        "o/with/slashes"
    ]
    assert [r["name"] for r in listing(node, "account", node.path("d1", account))] == ["c"]

    part = node.partition(account, "c", "o/with/slashes")
    hashes = node.request("object", "REPLICATE", f"/d1/{part}")
    assert hashes.status == 200 and msgpack.unpackb(hashes.body)  # the object app answered
    other = node.request("object", "REPLICATE", f"/d1/{part}", {"X-Backend-Server-Type": "account"})
    assert other.status != 200 or other.body != hashes.body


# -- the runner with real apps ---------------------------------------------------------


def test_sigterm_lets_an_upload_in_flight_finish(make_storage_node):
    node = make_storage_node(workers=2)
    path = node.path("d1", "AUTH_obj", "c", "slow-upload")
    body = os.urandom(1_000_000)
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts()}\r\n"
        f"Content-Length: {len(body)}\r\nContent-Type: a/b\r\n\r\n"
    ).encode()
    with socket.create_connection((node.host, node.ports["object"]), timeout=10) as sock:
        sock.sendall(head + body[:500_000])
        time.sleep(0.2)
        node.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(body[500_000:])
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 201"), answer
    assert b"Connection: close" in answer
    assert node.proc.wait(15) == 0
    node.start()
    assert node.request("object", "GET", path).body == body


def test_sighup_reloads_the_node_without_dropping_requests(make_storage_node):
    node = make_storage_node(workers=2)
    path = node.path("d1", "AUTH_obj", "c", "reload")
    assert put_object(node, path, b"before").status == 201
    errors, statuses = [], []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                statuses.append(node.request("object", "GET", path).status)
            except OSError as err:
                errors.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.2)
    node.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while node.log.count("object server listening") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    thread.join(10)
    assert node.log.count("object server listening") == 2
    assert errors == [] and statuses and set(statuses) == {200}
    assert node.proc.poll() is None


def test_sighup_with_a_broken_config_keeps_the_old_one(make_storage_node):
    node = make_storage_node(workers=1)
    node.extra = {"object": {"disk_chunk_size": "lots"}}
    node.write_configs()
    node.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload refused" not in node.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reload refused, still serving the old config" in node.log
    assert "disk_chunk_size" in node.log
    path = node.path("d1", "AUTH_obj", "c", "after-refused-reload")
    assert put_object(node, path, b"still up").status == 201


def test_serve_proxy_in_front_of_the_node(storage_node, tmp_path):
    proxy = ProxyServer(tmp_path / "proxy", [storage_node]).start()
    try:
        token, url = proxy.auth()
        headers = {"X-Auth-Token": token}
        assert proxy.request("PUT", f"{url}/through", headers).status in (201, 202)
        assert proxy.request("PUT", f"{url}/through/o", headers, b"via proxy").status == 201
        assert proxy.request("GET", f"{url}/through/o", headers).body == b"via proxy"
        assert proxy.request("GET", f"{url}/through", headers).body == b"o\n"
    finally:
        assert proxy.stop() == 0
    assert "proxy server listening on" in proxy.log and "Traceback" not in proxy.log


def test_bad_config_exits_2_with_one_line(make_storage_node):
    node = make_storage_node(start=False, extra={"object": {"disk_chunk_size": "lots"}})
    with pytest.raises(RuntimeError, match="exited 2"):
        node.start()
    lines = node.log.strip().splitlines()
    assert len(lines) == 1 and "disk_chunk_size" in lines[0] and "[object]" in lines[0]
