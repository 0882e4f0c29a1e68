"""``haneul-ring-builder``: the operator's walkthrough, and every way to get it wrong."""

import os
import subprocess
import sys

import pytest

from cli.main import main as haneul_main
from common.hashing import HashSecrets
from ring.builder import RingBuilder
from ring.cli import main, parse_overload, ring_path_for
from ring.ring import Ring

SECRETS = HashSecrets("cli-prefix", "cli-suffix")
DEVICES = [
    ("r1z1-127.0.0.1:6210/d1", "100"),
    ("r1z2-127.0.0.1:6220/d2", "100"),
    ("r1z3-127.0.0.1:6230/d3", "100"),
    ("r1z4-127.0.0.1:6240/d4", "100"),
]


def run(capsys, *args):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def builder_path(tmp_path):
    return str(tmp_path / "object.builder")


@pytest.fixture
def balanced(builder_path, capsys):
    """A builder with four devices in four zones, rebalanced once."""
    assert run(capsys, builder_path, "create", 6, 3, 1)[0] == 0
    pairs = [item for pair in DEVICES for item in pair]
    assert run(capsys, builder_path, "add", *pairs)[0] == 0
    assert run(capsys, builder_path, "rebalance", "--seed", 1)[0] in (0, 1)
    return builder_path


# -- the walkthrough ------------------------------------------------------------------


def test_walkthrough_create_add_rebalance_write_ring_then_lookup(builder_path, capsys):
    code, out, err = run(capsys, builder_path, "create", 8, 3, 1)
    assert (code, err) == (0, "")
    assert "256 partitions" in out

    for spec, weight in DEVICES[:3]:
        code, out, err = run(capsys, builder_path, "add", spec, weight)
        assert (code, err) == (0, ""), err
    code, out, err = run(
        capsys,
        builder_path,
        "add",
        *("--region", 1, "--zone", 4, "--ip", "127.0.0.1", "--port", 6240),
        *("--device", "d4", "--weight", 100, "--meta", "ssd"),
    )
    assert (code, err) == (0, "")
    assert "got id 3" in out

    code, out, _err = run(capsys, builder_path)
    assert code == 0
    assert "part power 8" in out and "not rebalanced yet" in out
    assert out.count("127.0.0.1:62") == 4 and "ssd" in out

    code, out, err = run(capsys, builder_path, "rebalance", "--seed", 3)
    assert code == 0, out + err
    assert "Reassigned 768" in out

    ring_file = ring_path_for(builder_path)
    os.unlink(ring_file)  # rebalance wrote it already; write_ring must bring it back
    code, out, err = run(capsys, builder_path, "write_ring")
    assert (code, err) == (0, "")
    assert ring_file.endswith("object.ring.gz") and os.path.exists(ring_file)

    builder = RingBuilder.load(builder_path)
    table = builder.get_ring().replica2part2dev
    ring = Ring(ring_file, hash_secrets=SECRETS)
    assert ring.partition_count == 256 and ring.replica_count == 3
    part, nodes = ring.get_nodes("AUTH_test", "c", "o")
    assert [n["id"] for n in nodes] == [row[part] for row in table]
    assert len({n["zone"] for n in nodes}) == 3

    code, out, _err = run(capsys, builder_path)
    assert code == 0 and "balance" in out and "not rebalanced" not in out


def test_inspection_commands(balanced, capsys):
    code, out, _err = run(capsys, balanced, "search", "z2")
    assert code == 0 and "127.0.0.1:6220" in out and "6210" not in out

    code, out, _err = run(capsys, balanced, "list_parts", "d0", "d1")
    assert code == 0 and out.startswith("Partition")
    assert len(out.splitlines()) > 1

    code, out, _err = run(capsys, balanced, "dispersion")
    assert code == 0 and out.strip()

    code, out, _err = run(capsys, balanced, "validate")
    assert code == 0 and "OK" in out


def test_changes_then_rebalance(balanced, capsys):
    assert run(capsys, balanced, "set_weight", "d0", 50)[0] == 0
    assert RingBuilder.load(balanced).devs[0]["weight"] == 50
    assert run(capsys, balanced, "set_overload", "10%")[0] == 0
    assert RingBuilder.load(balanced).overload == pytest.approx(0.1)
    assert run(capsys, balanced, "set_overload", "0.05")[0] == 0
    assert RingBuilder.load(balanced).overload == pytest.approx(0.05)
    assert run(capsys, balanced, "set_replicas", 2)[0] == 0
    assert RingBuilder.load(balanced).replicas == 2
    assert run(capsys, balanced, "set_min_part_hours", 0)[0] == 0
    assert RingBuilder.load(balanced).min_part_hours == 0
    assert run(capsys, balanced, "add", "r1z5-127.0.0.1:6250/d5", 100)[0] == 0
    assert run(capsys, balanced, "pretend_min_part_hours_passed")[0] == 0
    code, out, err = run(capsys, balanced, "rebalance", "--seed", 2)
    assert code in (0, 1), err
    ring = Ring(ring_path_for(balanced), hash_secrets=SECRETS)
    assert ring.replica_count == 2

    assert run(capsys, balanced, "remove", "d4")[0] == 0
    assert run(capsys, balanced, "remove", "z1", "--yes")[0] == 0
    live = [d for d in RingBuilder.load(balanced).devs if d is not None and d["weight"] > 0]
    assert {d["zone"] for d in live} <= {2, 3, 4}


def test_rebalance_with_nothing_to_move_warns_and_keeps_the_file(balanced, capsys):
    before = open(balanced, "rb").read()
    code, out, err = run(capsys, balanced, "rebalance")
    assert code == 1 and err == ""
    assert "No partitions could be reassigned" in out
    assert open(balanced, "rb").read() == before


def test_rebalance_short_of_balance_exits_with_a_warning(builder_path, capsys):
    # Three replicas over three zones, one zone holding most of the weight: each zone
    # must hold a replica of every part, so the heavy zone's devices stay under-filled.
    run(capsys, builder_path, "create", 6, 3, 1)
    run(capsys, builder_path, "add", "r1z1-10.0.0.1:6200/a", 1000, "r1z1-10.0.0.1:6200/b", 1000)
    run(capsys, builder_path, "add", "r1z2-10.0.0.2:6200/a", 10, "r1z3-10.0.0.3:6200/a", 10)
    code, out, err = run(capsys, builder_path, "rebalance", "--seed", 1)
    assert code == 1, out + err
    assert "NOTE" in out and err == ""
    assert os.path.exists(ring_path_for(builder_path))


def test_help_prints_usage(capsys):
    for args in (["-h"], ["--help"], ["object.builder", "add", "--help"]):
        code, out, err = run(capsys, *args)
        assert code == 0 and "create <part_power>" in out and err == ""


def test_overload_accepts_fraction_or_percent():
    assert parse_overload("0.1") == pytest.approx(0.1)
    assert parse_overload("10%") == pytest.approx(0.1)
    assert parse_overload("0") == 0


def test_ring_path_sits_beside_the_builder():
    assert ring_path_for("/etc/haneul/object-1.builder") == "/etc/haneul/object-1.ring.gz"
    assert ring_path_for("account") == "account.ring.gz"


def test_haneul_ring_dispatches_here(builder_path, capsys):
    assert haneul_main(["ring", builder_path, "create", 4, 3, 0]) == 0
    assert os.path.exists(builder_path)
    capsys.readouterr()


# -- errors: one line on stderr, exit 2, the builder file untouched ----------------------


def assert_one_line_error(code, out, err):
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("haneul-ring-builder: error: "), err
    assert "Traceback" not in err


BAD_COMMANDS = [
    ["frob"],
    ["create", 8, 3, 1],
    ["add", "garbage", 100],
    ["add", "r1z1-127.0.0.1:6250/d9", "heavy"],
    ["add", "r1z1-127.0.0.1:6250/d9", -5],
    ["add", "r1z1-127.0.0.1:6250/d9"],
    ["add"],
    ["add", "--zone", 1, "--ip", "127.0.0.1", "--port", 6250, "--device", "d9"],
    ["add", "--zone", "x", "--ip", "127.0.0.1", "--port", 6250, "--device", "d9", "--weight", 1],
    ["add", "--zone", 1, "--bogus", 1],
    ["add", "--zone", 1, "--ip", "no such!", "--port", 1, "--device", "d9", "--weight", 1],
    ["add", "--zone", 1, "--ip", "10.0.0.9", "--port", 0, "--device", "d9", "--weight", 1],
    ["remove"],
    ["remove", "d99"],
    ["remove", "r1"],
    ["remove", "d0", "d99"],
    ["set_weight", "d0"],
    ["set_weight", "d99", 10],
    ["set_weight", "d0", "abc"],
    ["set_weight", "r1", 10],
    ["set_replicas"],
    ["set_replicas", "zero"],
    ["set_replicas", 0.5],
    ["set_overload", "lots"],
    ["set_overload", "-1"],
    ["set_overload", "x%"],
    ["set_min_part_hours", "soon"],
    ["rebalance", "--seed", "abc"],
    ["rebalance", "--bogus"],
    ["list_parts"],
    ["list_parts", "d99"],
    ["search"],
    ["search", "d99"],
    ["search", "d0", "d1"],
    ["validate", "extra"],
    ["dispersion", "extra"],
    ["write_ring", "extra"],
    ["pretend_min_part_hours_passed", "extra"],
    ["extra"],
]


@pytest.mark.parametrize("args", BAD_COMMANDS, ids=lambda a: " ".join(map(str, a)) or "none")
def test_bad_command_is_one_line_and_leaves_the_builder(balanced, capsys, args):
    before = open(balanced, "rb").read()
    ring_before = open(ring_path_for(balanced), "rb").read()
    assert_one_line_error(*run(capsys, balanced, *args))
    assert open(balanced, "rb").read() == before
    assert open(ring_path_for(balanced), "rb").read() == ring_before


@pytest.mark.parametrize(
    "args",
    [
        ["create", "x", 3, 1],
        ["create", 8.5, 3, 1],
        ["create", 0, 3, 1],
        ["create", 33, 3, 1],
        ["create", 8, "three", 1],
        ["create", 8, 0, 1],
        ["create", 8, 3, -1],
        ["create", 8, 3],
        ["create", 8, 3, 1, 9],
    ],
)
def test_bad_create_makes_no_file(builder_path, capsys, args):
    assert_one_line_error(*run(capsys, builder_path, *args))
    assert not os.path.exists(builder_path)


@pytest.mark.parametrize(
    "args",
    [[], ["add", "r1z1-127.0.0.1:6200/d1", 1], ["rebalance"], ["write_ring"], ["search", "d0"]],
)
def test_missing_builder_file_is_one_line(builder_path, capsys, args):
    code, out, err = run(capsys, builder_path, *args)
    assert_one_line_error(code, out, err)
    assert "not found" in err
    assert not os.path.exists(builder_path)


def test_create_in_a_missing_directory_is_one_line(tmp_path, capsys):
    code, out, err = run(capsys, tmp_path / "nope" / "object.builder", "create", 8, 3, 1)
    assert_one_line_error(code, out, err)
    assert "does not exist" in err


def test_a_directory_is_not_a_builder_file(tmp_path, capsys):
    assert_one_line_error(*run(capsys, tmp_path))
    assert_one_line_error(*run(capsys, tmp_path, "rebalance"))


@pytest.mark.parametrize("content", [b"", b"garbage \x00\xff", b"\x80\x04\x95 a pickle"])
def test_corrupt_builder_file_is_one_line_and_untouched(builder_path, capsys, content):
    with open(builder_path, "wb") as fp:
        fp.write(content)
    for args in ([], ["add", "r1z1-127.0.0.1:6200/d1", 1], ["rebalance"], ["set_replicas", 2]):
        assert_one_line_error(*run(capsys, builder_path, *args))
        assert open(builder_path, "rb").read() == content


def test_rebalance_without_devices_is_an_error(builder_path, capsys):
    run(capsys, builder_path, "create", 6, 3, 1)
    before = open(builder_path, "rb").read()
    assert_one_line_error(*run(capsys, builder_path, "rebalance"))
    assert open(builder_path, "rb").read() == before
    assert not os.path.exists(ring_path_for(builder_path))


def test_write_ring_before_rebalance_is_an_error(builder_path, capsys):
    run(capsys, builder_path, "create", 6, 3, 1)
    run(capsys, builder_path, "add", *DEVICES[0])
    assert_one_line_error(*run(capsys, builder_path, "write_ring"))
    assert not os.path.exists(ring_path_for(builder_path))


def test_no_arguments_is_one_line(capsys):
    assert_one_line_error(*run(capsys))


# -- the installed command ------------------------------------------------------------


def test_console_script_runs(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "haneul-ring-builder")
    if not os.path.exists(script):
        pytest.skip(f"console script not installed at {script}")
    builder = str(tmp_path / "account.builder")

    def sh(*args):
        return subprocess.run(
            [script, builder, *map(str, args)], capture_output=True, text=True, timeout=60
        )

    assert sh("create", 4, 1, 0).returncode == 0
    assert sh("add", "r1z1-127.0.0.1:6202/d1", 10).returncode == 0
    done = sh("rebalance")
    assert done.returncode in (0, 1), done.stderr
    assert os.path.exists(tmp_path / "account.ring.gz")
    bad = sh("set_replicas", "many")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
