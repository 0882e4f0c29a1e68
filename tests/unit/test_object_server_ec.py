"""The object server's erasure-coded path in-process (webob), on real files in tmp_path:
the two-phase write, what GET/HEAD serve, and REPLICATE hashes across fragment indexes."""

import os

import msgpack
import pytest
from helpers import Clock
from webob import Request

from common.crc32 import CRC32
from common.hashing import HashSecrets, hash_path
from common.policies import ReplicationPolicy, StoragePolicies, policy_from_section
from object_server import layout
from object_server.async_pending import read_async_pending
from object_server.ec_hashes import suffix_view
from object_server.metadata import INLINE_LIMIT
from object_server.server import ObjectApp

SECRETS = HashSecrets("p", "s")
PATH = "/sda1/0/a/c/o"
EC = "1"


def ec_policies(segment_size=4096):
    ec = policy_from_section(
        1,
        {
            "name": "ec42",
            "type": "erasure_coding",
            "ec_type": "isa_l_rs_vand",
            "ec_num_data_fragments": "4",
            "ec_num_parity_fragments": "2",
            "ec_object_segment_size": str(segment_size),
        },
    )
    return StoragePolicies([ReplicationPolicy(0, "gold", is_default=True), ec])


def crc(data):
    """An archive's checksum, as the proxy sends it and the node stores it."""
    return CRC32(data).hexdigest()


@pytest.fixture
def clock():
    return Clock()


def make_app(root, device="sda1"):
    os.makedirs(os.path.join(root, device), exist_ok=True)
    return ObjectApp({"devices": str(root)}, hash_secrets=SECRETS, policies=ec_policies())


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path / "node")


def call(app, method, path=PATH, headers=None, body=None):
    req = Request.blank(path, environ={"REQUEST_METHOD": method})
    req.headers["X-Backend-Storage-Policy-Index"] = EC
    for key, value in (headers or {}).items():
        req.headers[key] = value
    if body is not None:
        req.body = body
    return req.get_response(app)


def put_fragment(app, ts, frag, archive, path=PATH, **extra):
    headers = {
        "X-Timestamp": ts,
        "X-Backend-Ec-Frag-Index": str(frag),
        "Content-Type": "text/plain",
        "X-Object-Meta-Color": "blue",
        "X-Object-Sysmeta-Ec-Segment-Size": "4096",
    }
    headers.update(extra)
    return call(app, "PUT", path, headers, archive)


def commit(app, ts, frag, archive_etag, path=PATH, size=1000, etag="0" * 32, **extra):
    headers = {
        "X-Timestamp": ts,
        "X-Backend-Ec-Frag-Index": str(frag),
        "X-Backend-Ec-Commit": "true",
        "X-Object-Sysmeta-Ec-Etag": etag,
        "X-Object-Sysmeta-Ec-Content-Length": str(size),
        "X-Object-Sysmeta-Ec-Frag-Archive-Etag": archive_etag,
    }
    headers.update(extra)
    return call(app, "POST", path, headers)


def hash_dir_files(root, path=PATH):
    _, dev, part, account, container, obj = path.split("/", 5)
    obj_hash = hash_path(account, container, obj, secrets=SECRETS)
    hash_dir = layout.hash_dir(os.path.join(root, dev), int(part), int(EC), obj_hash)
    return sorted(os.listdir(hash_dir)) if os.path.isdir(hash_dir) else []


def test_phase_one_stores_a_fragment_that_is_not_served(app, clock, tmp_path):
    archive = os.urandom(3000)
    ts = clock()
    resp = put_fragment(app, ts, 2, archive)
    assert resp.status_int == 201
    assert resp.headers["ETag"] == f'"{crc(archive)}"'
    assert hash_dir_files(tmp_path / "node") == [f"{ts}#2.data"]
    assert call(app, "GET").status_int == 404
    assert call(app, "HEAD").status_int == 404


def test_commit_makes_the_fragment_durable_and_served(app, clock, tmp_path):
    archive = os.urandom(3000)
    ts = clock()
    put_fragment(app, ts, 2, archive)
    resp = commit(app, ts, 2, crc(archive), size=11000, etag="a" * 32)
    assert resp.status_int == 201
    assert hash_dir_files(tmp_path / "node") == [f"{ts}#2#d.data"]

    resp = call(app, "GET")
    assert resp.status_int == 200
    assert resp.body == archive
    assert resp.headers["Content-Length"] == "3000"
    assert resp.headers["ETag"] == f'"{crc(archive)}"'
    assert resp.headers["X-Backend-Ec-Frag-Index"] == "2"
    assert resp.headers["X-Object-Sysmeta-Ec-Etag"] == "a" * 32
    assert resp.headers["X-Object-Sysmeta-Ec-Content-Length"] == "11000"
    assert resp.headers["X-Object-Sysmeta-Ec-Segment-Size"] == "4096"
    assert resp.headers["X-Object-Sysmeta-Ec-Frag-Archive-Etag"] == crc(archive)
    assert resp.headers["X-Object-Meta-Color"] == "blue"
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["X-Timestamp"] == ts
    assert resp.headers["X-Backend-Timestamp"] == ts

    head = call(app, "HEAD")
    assert head.status_int == 200 and head.headers["Content-Length"] == "3000"
    ranged = call(app, "GET", headers={"Range": "bytes=100-199"})
    assert ranged.status_int == 206 and ranged.body == archive[100:200]


def test_commit_sends_the_container_the_whole_object(app, clock, tmp_path):
    """The row gets the original size and MD5 (kept as an async pending here, as the
    container server is not listening)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    container = {
        "X-Container-Host": f"127.0.0.1:{port}",
        "X-Container-Partition": "7",
        "X-Container-Device": "sdc",
    }
    archive = os.urandom(500)
    ts = clock()
    assert put_fragment(app, ts, 0, archive, **container).status_int == 201
    pending_dir = layout.async_pending_dir(str(tmp_path / "node" / "sda1"), int(EC))
    assert not os.path.exists(pending_dir)  # phase 1 updates no container

    resp = commit(app, ts, 0, crc(archive), size=1234, etag="b" * 32, **container)
    assert resp.status_int == 201
    (suffix,) = os.listdir(pending_dir)
    (name,) = os.listdir(os.path.join(pending_dir, suffix))
    record = read_async_pending(os.path.join(pending_dir, suffix, name))
    assert record["op"] == "PUT"
    assert record["headers"]["X-Size"] == "1234"
    assert record["headers"]["X-Etag"] == "b" * 32
    assert record["headers"]["X-Content-Type"] == "text/plain"
    assert record["policy_index"] == 1


def test_missing_or_bad_fragment_index_is_400(app, clock):
    ts = clock()
    resp = call(app, "PUT", headers={"X-Timestamp": ts, "Content-Length": "1"}, body=b"x")
    assert resp.status_int == 400
    assert put_fragment(app, ts, 6, b"x").status_int == 400  # k + m = 6
    resp = put_fragment(app, ts, 0, b"x", **{"X-Backend-Ec-Frag-Index": "one"})
    assert resp.status_int == 400
    assert commit(app, ts, 9, crc(b"x")).status_int == 400


def test_commit_without_the_fragment_is_404(app, clock):
    ts = clock()
    assert commit(app, ts, 1, crc(b"x")).status_int == 404
    put_fragment(app, ts, 1, b"x")
    assert commit(app, ts, 2, crc(b"x")).status_int == 404  # another index
    assert commit(app, clock(), 1, crc(b"x")).status_int == 404  # another write


def test_commit_with_the_wrong_archive_etag_is_409_and_drops_it(app, clock, tmp_path):
    ts = clock()
    put_fragment(app, ts, 3, b"fragment bytes")
    assert commit(app, ts, 3, crc(b"other bytes")).status_int == 409
    assert hash_dir_files(tmp_path / "node") == []
    assert commit(app, ts, 3, crc(b"fragment bytes")).status_int == 404


def test_commit_twice_is_harmless(app, clock, tmp_path):
    ts = clock()
    put_fragment(app, ts, 3, b"abc")
    assert commit(app, ts, 3, crc(b"abc")).status_int == 201
    assert commit(app, ts, 3, crc(b"abc")).status_int == 201
    assert hash_dir_files(tmp_path / "node") == [f"{ts}#3#d.data"]


def test_commit_keeps_big_metadata_in_a_rewritten_footer(app, clock):
    """Metadata too big for the xattr lives in a footer; the commit rewrites it."""
    archive = os.urandom(2000)
    ts = clock()
    big = {f"X-Object-Meta-K{i}": "v" * 200 for i in range(INLINE_LIMIT // 200 + 2)}
    assert put_fragment(app, ts, 4, archive, **big).status_int == 201
    assert commit(app, ts, 4, crc(archive), size=7000).status_int == 201
    resp = call(app, "GET")
    assert resp.status_int == 200 and resp.body == archive
    assert resp.headers["X-Object-Meta-K0"] == "v" * 200
    assert resp.headers["X-Object-Sysmeta-Ec-Content-Length"] == "7000"


def test_older_durable_is_served_while_a_newer_write_is_uncommitted(app, clock, tmp_path):
    old_ts, new_ts = clock(), clock()
    put_fragment(app, old_ts, 1, b"old archive")
    commit(app, old_ts, 1, crc(b"old archive"))
    assert put_fragment(app, new_ts, 1, b"new archive").status_int == 201
    assert hash_dir_files(tmp_path / "node") == [f"{old_ts}#1#d.data", f"{new_ts}#1.data"]
    resp = call(app, "GET")
    assert resp.body == b"old archive" and resp.headers["X-Timestamp"] == old_ts

    assert commit(app, new_ts, 1, crc(b"new archive")).status_int == 201
    assert call(app, "GET").body == b"new archive"
    assert hash_dir_files(tmp_path / "node") == [f"{new_ts}#1#d.data"]


def test_phase_one_older_than_the_durable_is_409(app, clock):
    old_ts, new_ts = clock(), clock()
    put_fragment(app, new_ts, 1, b"new")
    commit(app, new_ts, 1, crc(b"new"))
    assert put_fragment(app, old_ts, 1, b"old").status_int == 409


def test_delete_and_post_on_an_ec_object(app, clock, tmp_path):
    ts = clock()
    put_fragment(app, ts, 0, b"abc")
    commit(app, ts, 0, crc(b"abc"))
    post_ts = clock()
    resp = call(app, "POST", headers={"X-Timestamp": post_ts, "X-Object-Meta-Color": "red"})
    assert resp.status_int == 202
    resp = call(app, "GET")
    assert resp.headers["X-Object-Meta-Color"] == "red"
    assert resp.headers["X-Object-Sysmeta-Ec-Frag-Index"] == "0"
    assert resp.body == b"abc"

    delete_ts = clock()
    assert call(app, "DELETE", headers={"X-Timestamp": delete_ts}).status_int == 204
    resp = call(app, "GET")
    assert resp.status_int == 404 and resp.headers["X-Backend-Timestamp"] == delete_ts
    assert hash_dir_files(tmp_path / "node") == [f"{delete_ts}.ts"]


def test_handoff_keeps_several_fragments_of_one_write(app, clock, tmp_path):
    ts = clock()
    for frag in (1, 4):
        put_fragment(app, ts, frag, b"frag %d" % frag)
        assert commit(app, ts, frag, crc(b"frag %d" % frag)).status_int == 201
    assert hash_dir_files(tmp_path / "node") == [f"{ts}#1#d.data", f"{ts}#4#d.data"]
    assert call(app, "GET").status_int == 200


def replicate(app, device="sda1", part=0):
    req = Request.blank(f"/{device}/{part}", environ={"REQUEST_METHOD": "REPLICATE"})
    req.headers["X-Backend-Storage-Policy-Index"] = EC
    resp = req.get_response(app)
    assert resp.status_int == 200
    return msgpack.unpackb(resp.body, raw=False)


def test_replicate_hashes_agree_across_fragment_indexes(tmp_path, clock):
    node1, node2 = make_app(tmp_path / "n1"), make_app(tmp_path / "n2")
    writes = [(f"/sda1/0/a/c/o{i}", clock()) for i in range(6)]
    for path, ts in writes:
        for app, frag in ((node1, 1), (node2, 2)):
            archive = b"%d" % frag + path.encode()
            put_fragment(app, ts, frag, archive, path=path)
            assert commit(app, ts, frag, crc(archive), path=path).status_int == 201
    hashes1, hashes2 = replicate(node1), replicate(node2)
    assert hashes1.keys() == hashes2.keys()
    for suffix in hashes1:
        assert set(hashes1[suffix]) == {"none", "1"} and set(hashes2[suffix]) == {"none", "2"}
        assert suffix_view(hashes1[suffix], 1) == suffix_view(hashes2[suffix], 2)

    # An object node2 lacks, a tombstone it lacks, a POST it lacks: each one differs.
    lone = "/sda1/0/a/c/lone"
    lone_suffix = layout.suffix_of(hash_path("a", "c", "lone", secrets=SECRETS))
    put_fragment(node1, clock(), 1, b"lone", path=lone)
    # An uncommitted write is not there yet, for the comparison.
    assert suffix_view(replicate(node1).get(lone_suffix), 1) == suffix_view(
        replicate(node2).get(lone_suffix), 2
    )
    ts = clock()
    put_fragment(node1, ts, 1, b"lone2", path=lone)
    commit(node1, ts, 1, crc(b"lone2"), path=lone)
    assert suffix_view(replicate(node1)[lone_suffix], 1) != suffix_view(
        replicate(node2).get(lone_suffix), 2
    )

    path, _ = writes[0]
    suffix = layout.suffix_of(hash_path("a", "c", "o0", secrets=SECRETS))
    call(node1, "DELETE", path, {"X-Timestamp": clock()})
    assert suffix_view(replicate(node1)[suffix], 1) != suffix_view(replicate(node2)[suffix], 2)

    path, _ = writes[1]
    suffix = layout.suffix_of(hash_path("a", "c", "o1", secrets=SECRETS))
    post_ts = clock()
    call(node2, "POST", path, {"X-Timestamp": post_ts, "X-Object-Meta-X": "1"})
    before = replicate(node2)[suffix]
    assert suffix_view(replicate(node1)[suffix], 1) != suffix_view(before, 2)
    call(node1, "POST", path, {"X-Timestamp": post_ts, "X-Object-Meta-X": "1"})
    if suffix_view(replicate(node1)[suffix], 1) != suffix_view(replicate(node2)[suffix], 2):
        # Only when o0 (deleted on node1 alone) shares the suffix.
        assert layout.suffix_of(hash_path("a", "c", "o0", secrets=SECRETS)) == suffix


def test_replicated_policy_replicate_shape_is_unchanged(app, clock):
    req = Request.blank(PATH, environ={"REQUEST_METHOD": "PUT"})
    req.headers.update({"X-Timestamp": clock(), "X-Backend-Storage-Policy-Index": "0"})
    req.body = b"whole"
    assert req.get_response(app).status_int == 201
    req = Request.blank("/sda1/0", environ={"REQUEST_METHOD": "REPLICATE"})
    hashes = msgpack.unpackb(req.get_response(app).body, raw=False)
    assert all(isinstance(v, str) and len(v) == 32 for v in hashes.values())
