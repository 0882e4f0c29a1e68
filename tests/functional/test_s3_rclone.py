"""rclone (its S3 backend, SigV4) against a real ``haneul up``: mkdir, copy, ls, check,
copy back, delete. rclone is not on PyPI; .ci/run installs Debian's package."""

import os
import shutil
import subprocess

import pytest

from tests.aio import AllInOne

RCLONE = shutil.which("rclone")
pytestmark = pytest.mark.skipif(RCLONE is None, reason="rclone is not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    aio = AllInOne(tmp_path_factory.mktemp("rclone"), agents=False)
    aio.up()
    try:
        yield aio
    finally:
        aio.down()


@pytest.fixture(scope="module")
def rclone(cluster, tmp_path_factory):
    pair = cluster.info["s3"]
    conf = tmp_path_factory.mktemp("rclone-conf") / "rclone.conf"
    conf.write_text(
        "[haneul]\n"
        "type = s3\n"
        "provider = Other\n"
        f"access_key_id = {pair['access_key']}\n"
        f"secret_access_key = {pair['secret_key']}\n"
        f"endpoint = {pair['endpoint']}\n"
        f"region = {pair['region']}\n"
        "force_path_style = true\n"
    )

    # rclone 1.60 fails on a custom CA bundle with its own transport; plain HTTP needs none.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}

    def run(*args):
        proc = subprocess.run(
            [RCLONE, "--config", str(conf), "--low-level-retries", "1", "--retries", "1", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run


def test_rclone_copies_a_tree_up_and_back(rclone, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {"a.txt": b"alpha\n" * 100, "sub/b.bin": os.urandom(300_000), "empty": b""}
    for name, data in files.items():
        (src / name).write_bytes(data)

    rclone("mkdir", "haneul:rclone-bucket")
    rclone("copy", str(src), "haneul:rclone-bucket/tree")
    listed = rclone("lsf", "-R", "--files-only", "haneul:rclone-bucket/tree").split()
    assert sorted(listed) == sorted(files)
    rclone("check", str(src), "haneul:rclone-bucket/tree")  # sizes and MD5s agree

    back = tmp_path / "back"
    rclone("copy", "haneul:rclone-bucket/tree", str(back))
    for name, data in files.items():
        assert (back / name).read_bytes() == data

    rclone("purge", "haneul:rclone-bucket")
    assert "rclone-bucket" not in rclone("lsd", "haneul:").split()
