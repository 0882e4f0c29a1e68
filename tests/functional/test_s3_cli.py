"""The ``aws`` CLI (``aws s3`` and ``aws s3api``) and ``s3cmd`` against a real
``haneul up``: copy, list, sync a small tree, remove recursively, get bytes back."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.aio import AllInOne

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    aio = AllInOne(tmp_path_factory.mktemp("s3cli"))
    aio.up()
    try:
        yield aio
    finally:
        aio.down()


@pytest.fixture(scope="module")
def aws(cluster, tmp_path_factory):
    home = tmp_path_factory.mktemp("awshome")
    pair = cluster.info["s3"]
    (home / "credentials").write_text(
        f"[default]\naws_access_key_id = {pair['access_key']}\n"
        f"aws_secret_access_key = {pair['secret_key']}\n"
    )
    # A high multipart threshold: these tests are about single-request uploads.
    (home / "config").write_text(
        f"[default]\nregion = {pair['region']}\n"
        "s3 =\n    multipart_threshold = 256MB\n    addressing_style = path\n"
    )
    env = dict(
        os.environ,
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_PAGER="",
    )

    def run(*args, check=True):
        proc = subprocess.run(
            [os.path.join(BIN, "aws"), "--endpoint-url", pair["endpoint"], *args],
            env=env,
            capture_output=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"aws {' '.join(args)}: {proc.returncode}\n"
                f"{proc.stdout.decode()}\n{proc.stderr.decode()}"
            )
        return proc

    return run


@pytest.fixture(scope="module")
def s3cmd(cluster, tmp_path_factory):
    home = tmp_path_factory.mktemp("s3cmdhome")
    pair = cluster.info["s3"]
    hostport = pair["endpoint"].split("://", 1)[1]
    config = home / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {pair['access_key']}\nsecret_key = {pair['secret_key']}\n"
        f"host_base = {hostport}\nhost_bucket = {hostport}\n"
        f"bucket_location = {pair['region']}\nuse_https = False\nsignature_v2 = False\n"
    )

    def run(*args, check=True):
        proc = subprocess.run(
            [sys.executable, os.path.join(BIN, "s3cmd"), "-c", str(config), *args],
            capture_output=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"s3cmd {' '.join(args)}: {proc.returncode}\n"
                f"{proc.stdout.decode()}\n{proc.stderr.decode()}"
            )
        return proc

    return run


def make_tree(root):
    files = {
        "top.txt": b"top level\n",
        "sub/one.bin": bytes(range(256)) * 40,
        "sub/deeper/two.txt": b"two\n" * 1000,
        "with space/three.txt": b"three\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_aws_s3_cp_ls_sync_rm(aws, tmp_path):
    aws("s3", "mb", "s3://cli-bucket")
    source = tmp_path / "tree"
    files = make_tree(source)
    aws("s3", "cp", str(source / "top.txt"), "s3://cli-bucket/copied/top.txt")
    aws("s3", "sync", str(source), "s3://cli-bucket/synced")
    listing = aws("s3", "ls", "--recursive", "s3://cli-bucket").stdout.decode()
    listed = sorted(line.split(maxsplit=3)[3] for line in listing.splitlines())
    assert listed == sorted(["copied/top.txt", *(f"synced/{name}" for name in files)])
    # A second sync has nothing left to do.
    assert aws("s3", "sync", str(source), "s3://cli-bucket/synced").stdout.strip() == b""
    down = tmp_path / "down"
    aws("s3", "sync", "s3://cli-bucket/synced", str(down))
    for name, data in files.items():
        assert (down / name).read_bytes() == data
    streamed = aws("s3", "cp", "s3://cli-bucket/synced/sub/one.bin", "-").stdout
    assert streamed == files["sub/one.bin"]
    removed = aws("s3", "rm", "--recursive", "s3://cli-bucket").stdout.decode()
    assert removed.count("delete:") == len(files) + 1
    assert aws("s3", "ls", "s3://cli-bucket").stdout == b""
    aws("s3", "rb", "s3://cli-bucket")
    assert b"cli-bucket" not in aws("s3", "ls").stdout


def test_aws_s3api_put_head_get_list(aws, tmp_path):
    aws("s3api", "create-bucket", "--bucket", "cli-api")
    body = tmp_path / "body.bin"
    body.write_bytes(b"s3api body" * 500)
    put = json.loads(
        aws(
            "s3api",
            "put-object",
            "--bucket",
            "cli-api",
            "--key",
            "k/obj",
            "--body",
            str(body),
            "--metadata",
            "team=storage",
        ).stdout
    )
    md5 = hashlib.md5(body.read_bytes()).hexdigest()
    assert put["ETag"] == f'"{md5}"'
    head = json.loads(aws("s3api", "head-object", "--bucket", "cli-api", "--key", "k/obj").stdout)
    assert head["ContentLength"] == 5000 and head["ETag"] == f'"{md5}"'
    assert head["Metadata"] == {"team": "storage"}
    out = tmp_path / "out.bin"
    aws(
        "s3api",
        "get-object",
        "--bucket",
        "cli-api",
        "--key",
        "k/obj",
        "--range",
        "bytes=0-9",
        str(out),
    )
    assert out.read_bytes() == b"s3api body"
    listing = json.loads(aws("s3api", "list-objects-v2", "--bucket", "cli-api").stdout)
    assert [o["Key"] for o in listing["Contents"]] == ["k/obj"]
    missing = aws("s3api", "head-bucket", "--bucket", "no-such-cli-bucket", check=False)
    assert missing.returncode != 0 and b"404" in missing.stderr


def test_s3cmd_put_get_ls_del(s3cmd, tmp_path):
    s3cmd("mb", "s3://s3cmd-bucket")
    source = tmp_path / "src.txt"
    source.write_bytes(b"s3cmd payload\n" * 300)
    s3cmd("put", str(source), "s3://s3cmd-bucket/dir/src.txt")
    listing = s3cmd("ls", "s3://s3cmd-bucket/dir/").stdout.decode()
    assert "s3://s3cmd-bucket/dir/src.txt" in listing
    assert str(len(source.read_bytes())) in listing
    target = tmp_path / "got.txt"
    s3cmd("get", "--force", "s3://s3cmd-bucket/dir/src.txt", str(target))
    assert target.read_bytes() == source.read_bytes()
    info = s3cmd("info", "s3://s3cmd-bucket/dir/src.txt").stdout.decode()
    assert hashlib.md5(source.read_bytes()).hexdigest() in info
    s3cmd("del", "s3://s3cmd-bucket/dir/src.txt")
    assert "src.txt" not in s3cmd("ls", "--recursive", "s3://s3cmd-bucket").stdout.decode()
    s3cmd("rb", "s3://s3cmd-bucket")
