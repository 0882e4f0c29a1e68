"""The proxy in front of a real four-node cluster on loopback.

Each storage node is a child process serving its account, container and object apps on
three ports with the server runner (``common.wsgi.serve``, eventlet, green sockets), as
``haneul serve storage`` does; one more child serves a ProxyApp the same way, for what
needs real HTTP (chunked uploads, 100-continue, a client hanging up). The tests build
the rings here, and most call a ``ProxyApp`` of this process directly through webob.

A node is taken down by killing its process (its ports close) and brought back by
starting it again on the same ports. Each node also listens on a control port that can
make its object server slow to answer or cut its GET bodies short.
"""

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from webob import Request

from common.hashing import HashSecrets
from proxy.server import ProxyApp
from ring.builder import RingBuilder
from ring.ring import Ring

NODES = 4
KINDS = ("account", "container", "object")
SECRETS = HashSecrets("pre", "suf")
HANEUL_CONF = """
[hash]
prefix = pre
suffix = suf

[policy:0]
name = gold
default = yes

[policy:1]
name = silver
"""

NODE = r"""
import json, os, sys
from common.wsgi import prepare_process
prepare_process()
from common import concurrency
from common.wsgi import Listener, ServerOptions, serve
from common.hashing import HashSecrets
from account_server.server import AccountApp
from container_server.server import ContainerApp
from object_server.server import ObjectApp
from webob import Response

root, n, ports = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
secrets = HashSecrets("pre", "suf")
devices = os.path.join(root, f"node{n}")
os.makedirs(os.path.join(devices, f"d{n}"), exist_ok=True)
conf = {"devices": devices, "mount_check": "false"}


class Faults:
    # The real app, optionally slow to answer or cutting GET bodies short.
    def __init__(self, app):
        self.app, self.delay, self.cut = app, 0, None

    def __call__(self, environ, start_response):
        if self.delay:
            concurrency.sleep(self.delay)
        body = self.app(environ, start_response)
        if self.cut is None or environ["REQUEST_METHOD"] != "GET":
            return body
        return self._cut(body, self.cut)

    @staticmethod
    def _cut(body, limit):
        sent = 0
        try:
            for chunk in body:
                if sent + len(chunk) >= limit:
                    yield chunk[: limit - sent]
                    return
                sent += len(chunk)
                yield chunk
        finally:
            if hasattr(body, "close"):
                body.close()


obj = Faults(ObjectApp(conf, hash_secrets=secrets))


def control(environ, start_response):
    # POST /slow/<seconds> or /cut/<bytes>|none
    verb, value = environ["PATH_INFO"].strip("/").split("/")
    if verb == "slow":
        obj.delay = float(value)
    elif verb == "cut":
        obj.cut = None if value == "none" else int(value)
    return Response(body=b"ok")(environ, start_response)


listeners = [
    Listener("account", ports["account"], AccountApp(conf, hash_secrets=secrets)),
    Listener("container", ports["container"], ContainerApp(conf, hash_secrets=secrets)),
    Listener("object", ports["object"], obj),
    Listener("control", ports["control"], control),
]
serve(listeners, ServerOptions({"bind_ip": "127.0.0.1", "workers": "0", "log_requests": "false"}))
"""

PROXY = r"""
import os, sys
from common.wsgi import prepare_process
prepare_process()
from common.wsgi import Listener, ServerOptions, serve
from proxy.server import ProxyApp

root, port = sys.argv[1], int(sys.argv[2])
conf = {"ring_dir": root, "haneul_conf": os.path.join(root, "haneul.conf"), "node_timeout": "3"}
options = {"bind_ip": "127.0.0.1", "workers": "0", "log_requests": "false", "client_timeout": "2"}
serve([Listener("proxy", port, ProxyApp(conf))], ServerOptions(options))
"""

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_ports(count):
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def build_ring(path, ports, replicas=3):
    builder = RingBuilder(6, replicas, 0)
    for n, port in enumerate(ports):
        builder.add_dev(
            {
                "region": 1,
                "zone": n + 1,
                "ip": "127.0.0.1",
                "port": port,
                "device": f"d{n}",
                "weight": 100,
            }
        )
    builder.rebalance(seed=42)
    builder.get_ring().save(path)


def spawn(script, *args):
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO, "PYTHONWARNINGS": "ignore"},
        stderr=subprocess.DEVNULL,
    )


def wait_for_port(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server on port {port} exited: {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Cluster:
    def __init__(self, root):
        self.root = root
        ports = iter(free_ports(NODES * 4 + 1))
        self.node_ports = [
            {kind: next(ports) for kind in (*KINDS, "control")} for _ in range(NODES)
        ]
        self.proxy_port = next(ports)
        for kind in KINDS:
            path = os.path.join(root, f"{kind}.ring.gz")
            build_ring(path, [p[kind] for p in self.node_ports])
        build_ring(os.path.join(root, "object-1.ring.gz"), [p["object"] for p in self.node_ports])
        self.object_ring = Ring(os.path.join(root, "object.ring.gz"), hash_secrets=SECRETS)
        self.procs = {}

    def start(self):
        for n in range(NODES):
            self.procs[n] = spawn(NODE, self.root, n, json.dumps(self.node_ports[n]))
        self.procs["proxy"] = spawn(PROXY, self.root, self.proxy_port)
        for n in range(NODES):
            for port in self.node_ports[n].values():
                wait_for_port(port, self.procs[n])
        wait_for_port(self.proxy_port, self.procs["proxy"])

    def stop(self):
        for proc in self.procs.values():
            proc.kill()
            proc.wait(5)

    def down(self, n):
        """Kill node ``n``: its ports close at once, as when a machine dies."""
        proc = self.procs.pop(n)
        proc.kill()
        proc.wait(5)

    def up(self, n):
        self.procs[n] = spawn(NODE, self.root, n, json.dumps(self.node_ports[n]))
        for port in self.node_ports[n].values():
            wait_for_port(port, self.procs[n])

    def control(self, n, *parts):
        conn = http.client.HTTPConnection("127.0.0.1", self.node_ports[n]["control"], timeout=5)
        conn.request("POST", "/" + "/".join(str(p) for p in parts))
        assert conn.getresponse().status == 200
        conn.close()

    def proxy(self, **conf):
        base = {
            "ring_dir": self.root,
            "haneul_conf": os.path.join(self.root, "haneul.conf"),
            "conn_timeout": "0.5",
            "node_timeout": "3",
        }
        base.update(conf)
        return ProxyApp(base)

    @staticmethod
    def node_of(dev):
        """Which of the four nodes a ring device is (its device is named d<n>)."""
        return int(dev["device"][1:])

    def primaries(self, account, container, obj):
        _part, nodes = self.object_ring.get_nodes(account, container, obj)
        return [self.node_of(dev) for dev in nodes]

    def handoffs(self, account, container, obj):
        part = self.object_ring.get_part(account, container, obj)
        return [self.node_of(dev) for dev in self.object_ring.get_more_nodes(part)]

    def http(self, method, path, headers=None, body=None, **kwargs):
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        conn.request(method, path, body=body, headers=headers or {}, **kwargs)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cluster"))
    with open(os.path.join(root, "haneul.conf"), "w") as fp:
        fp.write(HANEUL_CONF)
    cluster = Cluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def proxy(cluster):
    return cluster.proxy()


def call(app, method, path, body=None, **headers):
    req = Request.blank(path, method=method, headers=headers)
    if body is not None:
        req.body = body
    return req.get_response(app)


def listing(app, path, **params):
    query = "&".join(f"{k}={v}" for k, v in dict(params, format="json").items())
    resp = call(app, "GET", f"{path}?{query}")
    assert resp.status_int == 200, resp.status
    return json.loads(resp.body)


def md5(data):
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def container(proxy, request):
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    assert call(proxy, "PUT", f"/v1/AUTH_test/{name}").status_int in (201, 202)
    return f"/v1/AUTH_test/{name}"


# -- accounts and containers ---------------------------------------------------------------


def test_container_create_list_and_account_listing(proxy):
    assert call(proxy, "PUT", "/v1/AUTH_acct/photos").status_int == 201
    assert call(proxy, "PUT", "/v1/AUTH_acct/photos").status_int == 202
    names = [c["name"] for c in listing(proxy, "/v1/AUTH_acct")]
    assert names == ["photos"]
    head = call(proxy, "HEAD", "/v1/AUTH_acct/photos")
    assert head.status_int == 204
    assert head.headers["X-Container-Object-Count"] == "0"
    assert head.headers["X-Storage-Policy"] == "gold"
    assert "X-Backend-Storage-Policy-Index" not in head.headers


def test_unknown_account_looks_empty_until_used(proxy):
    head = call(proxy, "HEAD", "/v1/AUTH_nobody")
    assert head.status_int == 204
    assert head.headers["X-Account-Container-Count"] == "0"
    assert call(proxy, "GET", "/v1/AUTH_nobody?format=json").body == b"[]"


def test_container_metadata_and_acls_round_trip(proxy, container):
    resp = call(
        proxy,
        "POST",
        container,
        **{"X-Container-Meta-Color": "blue", "X-Container-Read": ".r:*"},
    )
    assert resp.status_int == 204
    head = call(proxy, "HEAD", container)
    assert head.headers["X-Container-Meta-Color"] == "blue"
    assert head.headers["X-Container-Read"] == ".r:*"


def test_container_policy_is_chosen_at_creation(cluster, proxy):
    path = "/v1/AUTH_test/silvery"
    assert call(proxy, "PUT", path, **{"X-Storage-Policy": "silver"}).status_int == 201
    assert call(proxy, "HEAD", path).headers["X-Storage-Policy"] == "silver"
    assert call(proxy, "PUT", path, **{"X-Storage-Policy": "gold"}).status_int == 409
    assert call(proxy, "PUT", path + "/o", b"data").status_int == 201
    stored = [
        name
        for n in range(NODES)
        for _dir, _subdirs, files in os.walk(os.path.join(cluster.root, f"node{n}", f"d{n}"))
        for name in files
        if name.endswith(".data") and "objects-1" in _dir
    ]
    assert len(stored) == 3
    assert call(proxy, "GET", path + "/o").body == b"data"


def test_container_delete_only_when_empty(proxy, container):
    assert call(proxy, "PUT", container + "/o", b"x").status_int == 201
    assert call(proxy, "DELETE", container).status_int == 409
    assert call(proxy, "DELETE", container + "/o").status_int == 204
    assert call(proxy, "DELETE", container).status_int == 204
    assert call(proxy, "HEAD", container).status_int == 404


# -- objects -------------------------------------------------------------------------------


def test_object_put_get_head_post_delete(proxy, container):
    body = os.urandom(200_000)
    put = call(proxy, "PUT", container + "/dir/pic.jpg", body, **{"X-Object-Meta-Kind": "cat"})
    assert put.status_int == 201
    assert put.headers["ETag"] == md5(body)
    get = call(proxy, "GET", container + "/dir/pic.jpg")
    assert get.status_int == 200
    assert get.body == body
    assert get.headers["Content-Type"] == "image/jpeg"
    assert get.headers["X-Object-Meta-Kind"] == "cat"
    head = call(proxy, "HEAD", container + "/dir/pic.jpg")
    assert head.headers["Content-Length"] == str(len(body))
    assert head.headers["ETag"] == md5(body)
    assert (
        call(proxy, "POST", container + "/dir/pic.jpg", **{"X-Object-Meta-Kind": "dog"}).status_int
        == 202
    )
    assert call(proxy, "HEAD", container + "/dir/pic.jpg").headers["X-Object-Meta-Kind"] == "dog"
    [entry] = listing(proxy, container)
    assert (entry["name"], entry["bytes"], entry["hash"]) == ("dir/pic.jpg", len(body), md5(body))
    assert call(proxy, "DELETE", container + "/dir/pic.jpg").status_int == 204
    assert call(proxy, "GET", container + "/dir/pic.jpg").status_int == 404
    assert call(proxy, "DELETE", container + "/dir/pic.jpg").status_int == 404
    assert listing(proxy, container) == []


def test_listing_passes_query_parameters(proxy, container):
    for name in ("a/1", "a/2", "b/1", "c"):
        assert call(proxy, "PUT", f"{container}/{name}", b"x").status_int == 201
    assert [e.get("subdir") or e["name"] for e in listing(proxy, container, delimiter="/")] == [
        "a/",
        "b/",
        "c",
    ]
    assert [e["name"] for e in listing(proxy, container, prefix="a/")] == ["a/1", "a/2"]
    assert [e["name"] for e in listing(proxy, container, marker="a/2", limit=2)] == ["b/1", "c"]
    assert call(proxy, "GET", container + "?limit=10001").status_int == 412


def test_put_to_a_missing_container_is_404(proxy):
    assert call(proxy, "PUT", "/v1/AUTH_test/nonesuch/o", b"x").status_int == 404


def test_etag_mismatch_is_422_and_stores_nothing(proxy, container):
    resp = call(proxy, "PUT", container + "/o", b"hello", ETag=md5(b"other"))
    assert resp.status_int == 422
    assert call(proxy, "HEAD", container + "/o").status_int == 404
    resp = call(proxy, "PUT", container + "/o", b"hello", ETag=md5(b"hello"))
    assert resp.status_int == 201


def test_if_none_match_star_refuses_to_overwrite(proxy, container):
    assert call(proxy, "PUT", container + "/o", b"one", **{"If-None-Match": "*"}).status_int == 201
    assert call(proxy, "PUT", container + "/o", b"two", **{"If-None-Match": "*"}).status_int == 412
    assert call(proxy, "GET", container + "/o").body == b"one"


def test_ranges_single_multi_and_unsatisfiable(proxy, container):
    body = bytes(range(256)) * 40
    call(proxy, "PUT", container + "/r", body)
    one = call(proxy, "GET", container + "/r", Range="bytes=10-19")
    assert one.status_int == 206
    assert one.body == body[10:20]
    assert one.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    many = call(proxy, "GET", container + "/r", Range="bytes=0-4,-5")
    assert many.status_int == 206
    assert many.headers["Content-Type"].startswith("multipart/byteranges")
    assert body[:5] in many.body and body[-5:] in many.body
    bad = call(proxy, "GET", container + "/r", Range=f"bytes={len(body) + 10}-")
    assert bad.status_int == 416
    assert bad.headers["Content-Range"] == f"bytes */{len(body)}"


def test_conditional_get_passes_through(proxy, container):
    call(proxy, "PUT", container + "/c", b"abc")
    assert call(proxy, "GET", container + "/c", **{"If-None-Match": md5(b"abc")}).status_int == 304
    assert call(proxy, "GET", container + "/c", **{"If-Match": "nope"}).status_int == 412


def test_delete_after_sets_delete_at(proxy, container):
    resp = call(proxy, "PUT", container + "/t", b"x", **{"X-Delete-After": "3600"})
    assert resp.status_int == 201
    delete_at = int(call(proxy, "HEAD", container + "/t").headers["X-Delete-At"])
    assert abs(delete_at - (time.time() + 3600)) < 60
    assert call(proxy, "PUT", container + "/t", b"x", **{"X-Delete-At": "12"}).status_int == 400


def test_x_newest_reads_every_primary(proxy, container):
    call(proxy, "PUT", container + "/n", b"v1")
    call(proxy, "PUT", container + "/n", b"v2")
    resp = call(proxy, "GET", container + "/n", **{"X-Newest": "true"})
    assert (resp.status_int, resp.body) == (200, b"v2")
    assert call(proxy, "HEAD", container + "/gone", **{"X-Newest": "true"}).status_int == 404


def test_account_post_creates_the_account_and_keeps_metadata(proxy):
    resp = call(proxy, "POST", "/v1/AUTH_posted", **{"X-Account-Meta-Team": "blue"})
    assert resp.status_int == 204
    head = call(proxy, "HEAD", "/v1/AUTH_posted")
    assert head.headers["X-Account-Meta-Team"] == "blue"


# -- server-side copy ----------------------------------------------------------------------


def test_copy_verb_carries_body_and_metadata(proxy, container):
    name = container.rsplit("/", 1)[1]
    call(proxy, "PUT", container + "/src", b"payload", **{"X-Object-Meta-A": "1"})
    resp = call(proxy, "COPY", container + "/src", Destination=f"{name}/dst")
    assert resp.status_int == 201
    assert resp.headers["X-Copied-From"] == f"{name}/src"
    got = call(proxy, "GET", container + "/dst")
    assert got.body == b"payload"
    assert got.headers["X-Object-Meta-A"] == "1"


def test_x_copy_from_merges_or_replaces_metadata(proxy, container):
    name = container.rsplit("/", 1)[1]
    call(
        proxy,
        "PUT",
        container + "/src",
        b"payload",
        **{"X-Object-Meta-A": "1", "Content-Type": "text/x-thing"},
    )
    headers = {"X-Copy-From": f"{name}/src", "X-Object-Meta-B": "2"}
    assert call(proxy, "PUT", container + "/merged", b"", **headers).status_int == 201
    merged = call(proxy, "HEAD", container + "/merged")
    assert (merged.headers["X-Object-Meta-A"], merged.headers["X-Object-Meta-B"]) == ("1", "2")
    assert merged.headers["Content-Type"] == "text/x-thing"
    headers["X-Fresh-Metadata"] = "true"
    assert call(proxy, "PUT", container + "/fresh", b"", **headers).status_int == 201
    fresh = call(proxy, "HEAD", container + "/fresh")
    assert "X-Object-Meta-A" not in fresh.headers
    assert fresh.headers["X-Object-Meta-B"] == "2"
    missing = {"X-Copy-From": f"{name}/nothing"}
    assert call(proxy, "PUT", container + "/x", b"", **missing).status_int == 404


def test_post_as_copy_replaces_metadata_and_keeps_the_body(cluster, container):
    proxy = cluster.proxy(object_post_as_copy="true")
    call(proxy, "PUT", container + "/pac", b"body", **{"X-Object-Meta-Old": "1"})
    resp = call(proxy, "POST", container + "/pac", **{"X-Object-Meta-New": "2"})
    assert resp.status_int == 202
    got = call(proxy, "GET", container + "/pac")
    assert got.body == b"body"
    assert got.headers["X-Object-Meta-New"] == "2"
    assert "X-Object-Meta-Old" not in got.headers


# -- failures ------------------------------------------------------------------------------


def test_one_object_node_down_still_works(cluster, proxy, container):
    account, cname = container.split("/")[2:4]
    down = cluster.primaries(account, cname, "survivor")[0]
    cluster.down(down)
    try:
        body = b"still here" * 1000
        assert call(proxy, "PUT", container + "/survivor", body).status_int == 201
        assert call(proxy, "GET", container + "/survivor").body == body
        assert call(proxy, "HEAD", container + "/survivor").status_int == 200
        assert call(proxy, "DELETE", container + "/survivor").status_int == 204
    finally:
        cluster.up(down)


def test_two_of_three_down_put_fails_but_get_still_served(cluster, proxy, container):
    account, cname = container.split("/")[2:4]
    assert call(proxy, "PUT", container + "/lonely", b"old").status_int == 201
    primaries = cluster.primaries(account, cname, "lonely")
    handoff = cluster.handoffs(account, cname, "lonely")[0]
    down = [primaries[0], primaries[1], handoff]
    for n in down:
        cluster.down(n)
    try:
        assert call(proxy, "PUT", container + "/lonely", b"new").status_int == 503
        resp = call(proxy, "GET", container + "/lonely")
        assert resp.status_int == 200
        assert resp.body == b"old"
    finally:
        for n in down:
            cluster.up(n)


def test_get_resumes_from_another_node_when_the_stream_dies(cluster, proxy, container, caplog):
    account, cname = container.split("/")[2:4]
    body = os.urandom(1_000_000)
    assert call(proxy, "PUT", container + "/big", body).status_int == 201
    first = cluster.primaries(account, cname, "big")[0]
    cluster.control(first, "cut", 300_000)
    try:
        with caplog.at_level("INFO", logger="haneul.proxy"):
            resp = call(proxy, "GET", container + "/big")
            assert resp.status_int == 200
            assert md5(resp.body) == md5(body)
        assert any("resumed at byte 300000" in r.getMessage() for r in caplog.records)
        part = call(proxy, "GET", container + "/big", Range="bytes=100000-899999")
        assert part.status_int == 206
        assert part.body == body[100000:900000]
    finally:
        cluster.control(first, "cut", "none")


def test_slow_first_node_is_passed_over_after_the_first_byte_timeout(cluster, container):
    proxy = cluster.proxy(recoverable_node_timeout="0.3")
    account, cname = container.split("/")[2:4]
    assert call(proxy, "PUT", container + "/slow", b"quick").status_int == 201
    first = cluster.primaries(account, cname, "slow")[0]
    cluster.control(first, "slow", 2)
    try:
        started = time.monotonic()
        assert call(proxy, "GET", container + "/slow").body == b"quick"
        assert time.monotonic() - started < 1.5
    finally:
        cluster.control(first, "slow", 0)


# -- over HTTP -------------------------------------------------------------------------------


def test_chunked_put_over_http(cluster, container):
    body = [os.urandom(70_000) for _ in range(5)]
    resp, _ = cluster.http(
        "PUT",
        container + "/chunked",
        {"Transfer-Encoding": "chunked"},
        iter(body),
        encode_chunked=True,
    )
    assert resp.status == 201
    assert resp.getheader("ETag") == md5(b"".join(body))
    resp, data = cluster.http("GET", container + "/chunked")
    assert data == b"".join(body)
    resp, data = cluster.http("HEAD", container + "/chunked")
    assert (resp.status, data) == (200, b"")
    assert resp.getheader("Content-Length") == str(len(b"".join(body)))
    assert resp.getheader("X-Trans-Id").startswith("tx")


def test_expect_100_continue_over_http(cluster, container):
    conn = http.client.HTTPConnection("127.0.0.1", cluster.proxy_port, timeout=10)
    conn.putrequest("PUT", container + "/expect")
    conn.putheader("Content-Length", "5")
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    line = conn.sock.recv(64)
    assert line.startswith(b"HTTP/1.1 100")
    conn.sock.sendall(b"hello")
    resp = conn.getresponse()
    assert resp.status == 201
    conn.close()
    # Refused up front: the body is never asked for.
    conn = http.client.HTTPConnection("127.0.0.1", cluster.proxy_port, timeout=10)
    conn.putrequest("PUT", container + "/expect")
    conn.putheader("Content-Length", "5")
    conn.putheader("Expect", "100-continue")
    conn.putheader("If-None-Match", "*")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 412
    conn.close()


def test_client_disconnect_mid_upload_stores_nothing(cluster, proxy, container):
    sock = socket.create_connection(("127.0.0.1", cluster.proxy_port))
    sock.sendall(
        f"PUT {container}/partial HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
        + b"x" * 1000
    )
    time.sleep(0.2)
    sock.close()
    time.sleep(0.3)
    assert call(proxy, "HEAD", container + "/partial").status_int == 404


def test_info_through_swiftclient(cluster):
    swiftclient = pytest.importorskip("swiftclient.client")
    url = f"http://127.0.0.1:{cluster.proxy_port}/info"
    info = swiftclient.get_capabilities(swiftclient.http_connection(url))
    assert info["swift"]["max_file_size"] == 5 * 1024**3
    assert [p["name"] for p in info["swift"]["policies"]] == ["gold", "silver"]


# -- the auth hook, with tempauth in front ---------------------------------------------------


def test_container_acls_through_tempauth(proxy):
    tempauth = pytest.importorskip("proxy.middleware.tempauth")
    conf = {
        "secret": "functional-secret",
        "user_test_tester": "testing .admin",
        "user_test_tester3": "testing3",
    }
    app = tempauth.filter_factory({}, conf)(proxy)

    def token(user, key):
        resp = call(app, "GET", "/auth/v1.0", **{"X-Auth-User": user, "X-Auth-Key": key})
        assert resp.status_int == 200
        return resp.headers["X-Auth-Token"]

    owner, other = token("test:tester", "testing"), token("test:tester3", "testing3")
    path = "/v1/AUTH_test/acl-check"
    assert call(app, "PUT", path, **{"X-Auth-Token": owner}).status_int in (201, 202)
    assert call(app, "PUT", path + "/o", b"secret", **{"X-Auth-Token": owner}).status_int == 201
    assert call(app, "GET", path + "/o", **{"X-Auth-Token": other}).status_int == 403
    assert call(app, "GET", path + "/o").status_int == 401
    grant = {"X-Auth-Token": owner, "X-Container-Read": "test:tester3"}
    assert call(app, "POST", path, **grant).status_int == 204
    assert call(app, "GET", path + "/o", **{"X-Auth-Token": other}).body == b"secret"
    listed = call(app, "GET", path, **{"X-Auth-Token": other})
    assert listed.status_int == 200
    assert "X-Container-Read" not in listed.headers  # owner-only
    assert call(app, "PUT", path + "/p", b"x", **{"X-Auth-Token": other}).status_int == 403
    grant = {"X-Auth-Token": owner, "X-Container-Write": "test:tester3"}
    assert call(app, "POST", path, **grant).status_int == 204
    assert call(app, "PUT", path + "/p", b"x", **{"X-Auth-Token": other}).status_int == 201
    assert call(app, "HEAD", "/v1/AUTH_test", **{"X-Auth-Token": other}).status_int == 403
