"""The ec42 policy of ``haneul up`` through python-swiftclient: whole and ranged reads
byte for byte, with no storage node down, with one, and with two.

The EC ring puts 6 fragments on 4 nodes of 2 devices, so stopping 2 whole nodes can
take away more than m = 2 fragments of some objects. The ring decides: the test
stops two fixed nodes, and names each object (a counter appended) so that those two
nodes hold at most m of its fragments; one node holds at most 2 of anything.
"""

import glob
import hashlib
import os
import time

import pytest
from swiftclient import client as swift
from swiftclient.exceptions import ClientException

from common.hashing import hash_path, load_hash_secrets
from ring.ring import Ring
from tests.aio import AllInOne

SEGMENT = 1048576
M = 2
SIZES = [0, 1, SEGMENT - 1, SEGMENT + 1, 3 * SEGMENT + 12345, 50 * SEGMENT]
DOWN = ("node3", "node4")  # stopped one, then both
CONTAINER = "ec-objects"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    aio = AllInOne(tmp_path_factory.mktemp("ec-aio"))
    aio.up()
    try:
        yield aio
    finally:
        aio.down()


@pytest.fixture(scope="module")
def conn(cluster):
    connection = swift.Connection(
        authurl=cluster.auth_url, user=cluster.info["user"], key=cluster.info["key"], retries=0
    )
    connection.put_container(CONTAINER, headers={"X-Storage-Policy": "ec42"})
    return connection


@pytest.fixture(scope="module")
def secrets(cluster):
    return load_hash_secrets(os.path.join(cluster.info["etc"], "haneul.conf"))


@pytest.fixture(scope="module")
def ring(cluster, secrets):
    return Ring(os.path.join(cluster.info["etc"], "object-1.ring.gz"), hash_secrets=secrets)


def account_of(conn):
    return conn.get_auth()[0].rstrip("/").rsplit("/", 1)[1]


def fragments_on(cluster, ring, account, container, name, nodes):
    """How many of the object's fragments the named storage nodes hold."""
    ports = {cluster.node(n)["object_port"] for n in nodes}
    _part, primaries = ring.get_nodes(account, container, name)
    return sum(1 for node in primaries if node["port"] in ports)


def pick_name(cluster, ring, account, base, nodes=DOWN):
    """``base-<n>`` for the first n whose fragments on ``nodes`` number at most m."""
    for n in range(1000):
        name = f"{base}-{n}"
        if fragments_on(cluster, ring, account, CONTAINER, name, nodes) <= M:
            return name
    raise AssertionError("no name found")


@pytest.fixture(scope="module")
def objects(cluster, conn, ring):
    """{name: bytes}: one object of each size, uploaded with every node up."""
    account = account_of(conn)
    stored = {}
    for size in SIZES:
        name = pick_name(cluster, ring, account, f"obj-{size}")
        data = os.urandom(size)
        etag = conn.put_object(CONTAINER, name, data)
        assert etag == hashlib.md5(data).hexdigest()
        stored[name] = data
    return stored


def get(conn, name, **headers):
    return conn.get_object(CONTAINER, name, headers=headers)


def multipart_parts(content_type, body):
    """[(content_range, bytes)] of a multipart/byteranges body."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        content_range = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-range")
        )
        parts.append((content_range, data[:-2]))
    return parts


def check_reads(conn, objects):
    """Every object whole and by ranges (single, suffix, open, multi), byte for byte."""
    for name, data in objects.items():
        headers, body = get(conn, name)
        assert body == data, name
        assert headers["etag"] == hashlib.md5(data).hexdigest()
        size = len(data)
        if size == 0:
            with pytest.raises(ClientException) as caught:
                get(conn, name, Range="bytes=0-0")
            assert caught.value.http_status == 416
            continue
        mid = size // 2
        tail = max(size - SEGMENT - 5, 0)
        cases = [
            ("bytes=0-0", data[:1]),
            (f"bytes={size - 1}-", data[-1:]),
            ("bytes=-1", data[-1:]),
            (f"bytes={mid}-{mid + SEGMENT + 3}", data[mid : mid + SEGMENT + 4]),
            (f"bytes={tail}-", data[tail:]),
            ("bytes=-70000", data[-70000:]),
        ]
        if size < 10 * SEGMENT:
            cases.append((f"bytes=-{size + 10}", data))
        for header, expected in cases:
            resp_headers, body = get(conn, name, Range=header)
            assert body == expected, (name, header)
            assert int(resp_headers["content-length"]) == len(expected)
        if size > 2:
            resp_headers, body = get(conn, name, Range=f"bytes=0-0,{mid}-{mid + 1},-1")
            parts = multipart_parts(resp_headers["content-type"], body)
            assert parts == [
                (f"bytes 0-0/{size}", data[:1]),
                (f"bytes {mid}-{mid + 1}/{size}", data[mid : mid + 2]),
                (f"bytes {size - 1}-{size - 1}/{size}", data[-1:]),
            ]
        with pytest.raises(ClientException) as caught:
            get(conn, name, Range=f"bytes={size}-")
        assert caught.value.http_status == 416


def test_info_lists_both_policies(conn):
    info = conn.get_capabilities()
    names = {p["name"] for p in info["swift"]["policies"]}
    assert names == {"gold", "ec42"}


def test_a_containers_policy_is_fixed(conn):
    assert conn.head_container(CONTAINER)["x-storage-policy"] == "ec42"
    with pytest.raises(ClientException) as caught:
        conn.put_container(CONTAINER, headers={"X-Storage-Policy": "gold"})
    assert caught.value.http_status == 409
    assert conn.head_container(CONTAINER)["x-storage-policy"] == "ec42"


def test_objects_of_every_size_read_back_whole_and_by_ranges(conn, objects):
    check_reads(conn, objects)
    listing = {o["name"]: o for o in conn.get_container(CONTAINER)[1]}
    for name, data in objects.items():
        assert listing[name]["bytes"] == len(data)
        assert listing[name]["hash"] == hashlib.md5(data).hexdigest()
        headers = conn.head_object(CONTAINER, name)
        assert int(headers["content-length"]) == len(data)
        assert headers["etag"] == hashlib.md5(data).hexdigest()


def test_a_chunked_upload_and_metadata(conn):
    class Body:  # no length: swiftclient sends it chunked
        def __init__(self, data):
            self.data, self.pos = data, 0

        def read(self, size=-1):
            size = 65536 if size is None or size < 0 else size
            out = self.data[self.pos : self.pos + size]
            self.pos += len(out)
            return out

    data = os.urandom(2 * SEGMENT + 777)
    etag = conn.put_object(
        CONTAINER, "chunked", Body(data), headers={"X-Object-Meta-Color": "blue"}
    )
    assert etag == hashlib.md5(data).hexdigest()
    headers, body = get(conn, "chunked")
    assert body == data and headers["x-object-meta-color"] == "blue"
    assert not any(k.startswith("x-object-sysmeta-ec") for k in headers)
    conn.post_object(CONTAINER, "chunked", headers={"X-Object-Meta-Color": "red"})
    assert conn.head_object(CONTAINER, "chunked")["x-object-meta-color"] == "red"


def test_a_wrong_etag_is_422_and_stores_nothing(conn):
    with pytest.raises(ClientException) as caught:
        conn.put_object(CONTAINER, "bad-etag", b"hello", etag="0" * 32)
    assert caught.value.http_status == 422
    with pytest.raises(ClientException) as caught:
        conn.head_object(CONTAINER, "bad-etag")
    assert caught.value.http_status == 404


def test_conditional_requests_judge_the_whole_objects_etag(conn, objects):
    name = next(n for n, d in objects.items() if len(d) == SEGMENT + 1)
    etag = hashlib.md5(objects[name]).hexdigest()
    headers, body = get(conn, name, **{"If-Match": etag})
    assert body == objects[name]
    with pytest.raises(ClientException) as caught:
        get(conn, name, **{"If-Match": "0" * 32})
    assert caught.value.http_status == 412
    with pytest.raises(ClientException) as caught:
        get(conn, name, **{"If-None-Match": etag})
    assert caught.value.http_status == 304
    # If-Range with the object's ETag honours the range; another ETag gets it all.
    _h, body = get(conn, name, Range="bytes=0-9", **{"If-Range": f'"{etag}"'})
    assert body == objects[name][:10]
    _h, body = get(conn, name, Range="bytes=0-9", **{"If-Range": '"other"'})
    assert body == objects[name]


def test_delete_then_404(conn):
    conn.put_object(CONTAINER, "doomed", b"x" * 5000)
    conn.delete_object(CONTAINER, "doomed")
    with pytest.raises(ClientException) as caught:
        get(conn, "doomed")
    assert caught.value.http_status == 404


def archive_file(cluster, ring, secrets, account, name, frag_index):
    """The durable .data file of fragment ``frag_index`` of an object."""
    part, primaries = ring.get_nodes(account, CONTAINER, name)
    node = primaries[frag_index]
    devices = next(n["devices"] for n in cluster.info["nodes"] if n["object_port"] == node["port"])
    digest = hash_path(account, CONTAINER, name, secrets=secrets)
    pattern = os.path.join(
        devices[node["device"]],
        "objects-1",
        str(part),
        digest[-3:],
        digest,
        f"*#{frag_index}#d.data",
    )
    (path,) = glob.glob(pattern)
    return path


def test_a_garbage_fragment_is_dropped_mid_stream(cluster, conn, ring, secrets):
    """Fragment 0 (read first) goes bad in its second segment: the proxy swaps in
    another node's fragment from that segment on, and the client sees no difference."""
    account = account_of(conn)
    data = os.urandom(4 * SEGMENT)
    conn.put_object(CONTAINER, "garbled", data)
    path = archive_file(cluster, ring, secrets, account, "garbled", 0)
    fragment_size = os.path.getsize(path) // 4
    with open(path, "r+b") as fp:
        fp.seek(fragment_size + 8)
        fp.write(b"\xff" * 32)  # inside the pyeclib header of segment 1's fragment
    assert get(conn, "garbled")[1] == data
    header = f"bytes={SEGMENT + 10}-{2 * SEGMENT + 10}"
    assert get(conn, "garbled", Range=header)[1] == data[SEGMENT + 10 : 2 * SEGMENT + 11]


def test_reads_and_a_put_with_one_node_down(cluster, conn, ring, objects):
    cluster.stop_node(DOWN[0])
    check_reads(conn, objects)
    # The PUT puts the fragments of the stopped node's devices on handoffs.
    account = account_of(conn)
    name = next(
        f"handoff-{n}"
        for n in range(1000)
        if fragments_on(cluster, ring, account, CONTAINER, f"handoff-{n}", DOWN[:1]) == 2
    )
    data = os.urandom(2 * SEGMENT + 5)
    assert conn.put_object(CONTAINER, name, data) == hashlib.md5(data).hexdigest()
    assert get(conn, name)[1] == data
    objects_with_it = dict(objects, **{name: data})
    if fragments_on(cluster, ring, account, CONTAINER, name, DOWN) <= M:
        objects[name] = data
    assert get(conn, name, Range="bytes=-3")[1] == objects_with_it[name][-3:]


def test_reads_with_two_nodes_down(cluster, conn, objects):
    cluster.stop_node(DOWN[1])
    try:
        check_reads(conn, objects)
    finally:
        for name in DOWN:
            cluster.start_node(name)


def test_reads_after_the_nodes_are_back(cluster, conn, objects):
    deadline = time.monotonic() + 10
    name = next(n for n, d in objects.items() if len(d) == 1)
    while True:  # the restarted nodes' ports answer once `haneul up` returns
        try:
            assert get(conn, name)[1] == objects[name]
            break
        except ClientException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    check_reads(conn, {n: d for n, d in objects.items() if len(d) < 10 * SEGMENT})
