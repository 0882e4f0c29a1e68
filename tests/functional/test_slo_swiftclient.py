"""Static large objects on a real ``haneul up`` cluster, through python-swiftclient and
the ``swift`` CLI: segmented upload, a manifest PUT by hand, GET whole and in ranges
across segments, HEAD, ``?multipart-manifest=get``, copy, and delete with segments."""

import hashlib
import json
import os
import random
import subprocess
import sys

import pytest
from swiftclient import client as swift
from swiftclient.exceptions import ClientException

from tests.aio import AllInOne

SWIFT_CLI = os.path.join(os.path.dirname(sys.executable), "swift")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    aio = AllInOne(tmp_path_factory.mktemp("slo"))
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


def swift_cli(cluster, *args, cwd=None):
    cmd = [
        SWIFT_CLI,
        "-A",
        cluster.auth_url,
        "-U",
        cluster.info["user"],
        "-K",
        cluster.info["key"],
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def listing(conn, container, prefix=None):
    return [o["name"] for o in conn.get_container(container, prefix=prefix, full_listing=True)[1]]


def test_info_advertises_slo(conn):
    info = conn.get_capabilities()
    assert "slo" in info
    assert info["slo"]["max_manifest_segments"] >= 1000


def test_swift_upload_use_slo_and_download(cluster, conn, tmp_path):
    data = random.Random(1).randbytes(3 * 1024 * 1024 + 12345)
    (tmp_path / "big.bin").write_bytes(data)
    proc = swift_cli(
        cluster,
        "upload",
        "slocli",
        "big.bin",
        "--use-slo",
        "--segment-size",
        str(1024 * 1024),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    headers = conn.head_object("slocli", "big.bin")
    assert headers["x-static-large-object"] == "True"
    assert int(headers["content-length"]) == len(data)
    segments = listing(conn, "slocli_segments")
    assert len(segments) == 4
    _h, body = conn.get_object("slocli", "big.bin")
    assert body == data
    out = tmp_path / "out"
    out.mkdir()
    proc = swift_cli(cluster, "download", "slocli", "big.bin", "-o", "copy.bin", cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "copy.bin").read_bytes() == data
    # the container listing shows the large object's size
    entry = conn.get_container("slocli")[1][0]
    assert entry["bytes"] == len(data)
    # delete through the CLI takes the segments with it
    proc = swift_cli(cluster, "delete", "slocli", "big.bin")
    assert proc.returncode == 0, proc.stderr
    assert listing(conn, "slocli_segments") == []


@pytest.fixture(scope="module")
def manifest(conn):
    rng = random.Random(2)
    conn.put_container("segs")
    conn.put_container("slo")
    sizes = [100_000, 65_536 * 2 + 7, 1, 50_000]
    parts = [rng.randbytes(n) for n in sizes]
    items = []
    for i, part in enumerate(parts):
        etag = conn.put_object("segs", f"part/{i:03d}", part)
        items.append({"path": f"/segs/part/{i:03d}", "etag": etag, "size_bytes": len(part)})
    response = {}
    conn.put_object(
        "slo",
        "whole",
        json.dumps(items),
        query_string="multipart-manifest=put",
        content_type="application/x-thing",
        headers={"X-Object-Meta-Color": "blue"},
        response_dict=response,
    )
    assert response["status"] == 201
    etag = hashlib.md5("".join(i["etag"] for i in items).encode()).hexdigest()
    assert response["headers"]["etag"] == f'"{etag}"'
    return b"".join(parts), etag


def test_get_and_head_of_a_manifest(conn, manifest):
    data, etag = manifest
    headers, body = conn.get_object("slo", "whole")
    assert body == data
    assert headers["etag"] == f'"{etag}"'
    assert headers["content-type"] == "application/x-thing"
    assert headers["x-object-meta-color"] == "blue"
    head = conn.head_object("slo", "whole")
    assert int(head["content-length"]) == len(data)
    assert head["etag"] == f'"{etag}"'
    assert head["x-static-large-object"] == "True"


@pytest.mark.parametrize(
    "rng",
    ["bytes=99990-100020", "bytes=0-0", "bytes=-60000", "bytes=100000-231080", "bytes=5-"],
)
def test_ranges_across_segments(conn, manifest, rng):
    data, _etag = manifest
    first, _dash, last = rng[6:].partition("-")
    if not first:
        want = data[-int(last) :]
    else:
        want = data[int(first) : int(last) + 1 if last else None]
    headers, body = conn.get_object("slo", "whole", headers={"Range": rng})
    assert body == want
    assert headers["content-range"].endswith(f"/{len(data)}")


def test_multi_range_across_segments(conn, manifest):
    data, _etag = manifest
    headers, body = conn.get_object("slo", "whole", headers={"Range": "bytes=10-20,231075-"})
    assert headers["content-type"].startswith("multipart/byteranges")
    assert data[10:21] in body and data[231075:] in body


def test_conditional_get(conn, manifest):
    _data, etag = manifest
    with pytest.raises(ClientException) as err:
        conn.get_object("slo", "whole", headers={"If-None-Match": f'"{etag}"'})
    assert err.value.http_status == 304
    with pytest.raises(ClientException) as err:
        conn.get_object("slo", "whole", headers={"If-Match": '"nope"'})
    assert err.value.http_status == 412


def test_multipart_manifest_get(conn, manifest):
    headers, body = conn.get_object("slo", "whole", query_string="multipart-manifest=get")
    entries = json.loads(body)
    assert [e["name"] for e in entries] == [f"/segs/part/{i:03d}" for i in range(4)]
    assert headers["content-type"].startswith("application/json")
    _h, raw = conn.get_object("slo", "whole", query_string="multipart-manifest=get&format=raw")
    assert [e["path"] for e in json.loads(raw)] == [e["name"] for e in entries]


def test_bad_manifest_is_refused_with_reasons(conn):
    items = [
        {"path": "/segs/part/000", "etag": "0" * 32, "size_bytes": None},
        {"path": "/segs/missing", "etag": None, "size_bytes": None},
    ]
    with pytest.raises(ClientException) as err:
        conn.put_object("slo", "bad", json.dumps(items), query_string="multipart-manifest=put")
    assert err.value.http_status == 400
    text = err.value.http_response_content.decode()
    assert "Etag Mismatch" in text and "404 Not Found" in text


def test_reserved_header(conn):
    with pytest.raises(ClientException) as err:
        conn.put_object("slo", "fake", b"[]", headers={"X-Static-Large-Object": "true"})
    assert err.value.http_status == 400


def test_copy_of_a_manifest_is_its_bytes(conn, manifest):
    data, _etag = manifest
    conn.copy_object("slo", "whole", destination="/slo/flat")
    headers, body = conn.get_object("slo", "flat")
    assert body == data
    assert "x-static-large-object" not in headers
    assert headers["etag"].strip('"') == hashlib.md5(data).hexdigest()


def test_delete_with_segments(conn):
    conn.put_container("gone")
    items = []
    for i in range(3):
        etag = conn.put_object("gone", f"seg{i}", b"x" * (i + 1))
        items.append({"path": f"/gone/seg{i}", "etag": etag, "size_bytes": i + 1})
    conn.put_object("gone", "man", json.dumps(items), query_string="multipart-manifest=put")
    assert conn.get_object("gone", "man")[1] == b"x" + b"xx" + b"xxx"
    response = {}
    conn.delete_object(
        "gone", "man", query_string="multipart-manifest=delete", response_dict=response
    )
    assert listing(conn, "gone") == []
