"""The read side of the ring: partitions, primaries, handoffs and reloading."""

import copy
import os
import tempfile
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import ConfigError
from common.hashing import HashSecrets, hash_path, load_hash_secrets, part_of_hash
from ring.builder import RingBuilder
from ring.ring import Ring
from ring.ringfile import RingData, RingFileError

SECRETS = HashSecrets("test-prefix", "test-suffix")


def _dev(dev_id, region=1, zone=1, ip="10.0.0.1", port=6200, weight=100.0):
    return {
        "id": dev_id,
        "region": region,
        "zone": zone,
        "ip": ip,
        "port": port,
        "device": f"d{dev_id}",
        "weight": weight,
        "meta": "",
    }


def _cluster_devs():
    """2 regions x 3 zones x 2 servers x 2 disks = 24 devices."""
    devs = []
    for region in (1, 2):
        for zone in (1, 2, 3):
            for server in (1, 2):
                for _disk in (1, 2):
                    ip = f"10.{region}.{zone}.{server}"
                    devs.append(_dev(len(devs), region, zone, ip))
    return devs


def _built_ring(tmp_path, devs=None, part_power=8, replicas=3, seed=7):
    builder = RingBuilder(part_power, replicas, 1)
    for dev in devs or _cluster_devs():
        builder.add_dev({k: v for k, v in dev.items() if k != "id"})
    builder.rebalance(seed=seed)
    path = tmp_path / "object.ring.gz"
    builder.get_ring().save(path)
    return builder, path


def _handmade_ring(tmp_path, devs, rows, part_power, name="object.ring.gz"):
    path = tmp_path / name
    RingData(part_power, devs, [array("H", row) for row in rows]).save(path)
    return path


@pytest.fixture
def built(tmp_path):
    builder, path = _built_ring(tmp_path)
    return builder, Ring(path, hash_secrets=SECRETS)


# -- partitions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [("AUTH_test",), ("AUTH_test", "c"), ("AUTH_test", "c", "o"), ("하늘", "컨테이너", "o/é/x")],
)
def test_get_part_is_top_bits_of_hash_path(built, name):
    _builder, ring = built
    digest = hash_path(*name, secrets=SECRETS, raw_digest=True)
    assert ring.get_part(*name) == part_of_hash(digest, 8)
    assert ring.get_nodes(*name)[0] == ring.get_part(*name)


def test_object_without_container_is_refused(built):
    with pytest.raises(ValueError):
        built[1].get_part("a", None, "o")


def test_shape_properties(built):
    builder, ring = built
    assert ring.part_power == 8
    assert ring.partition_count == 256
    assert ring.replica_count == 3.0
    assert [d["id"] for d in ring.devs] == [d["id"] for d in builder.devs]


# -- primaries ------------------------------------------------------------------------


def test_primaries_match_the_builders_table(built):
    builder, ring = built
    table = builder.get_ring().replica2part2dev
    for part in range(ring.partition_count):
        nodes = ring.get_part_nodes(part)
        assert [n["id"] for n in nodes] == [row[part] for row in table]
        assert [n["index"] for n in nodes] == [0, 1, 2]
        assert len({n["id"] for n in nodes}) == 3


def test_get_nodes_carries_every_device_field(built):
    _builder, ring = built
    _part, nodes = ring.get_nodes("AUTH_test", "c", "o")
    for node in nodes:
        assert set(node) >= {"id", "region", "zone", "ip", "port", "device", "weight", "meta"}


def test_nodes_are_read_only_but_copies_are_not(built):
    _builder, ring = built
    _part, nodes = ring.get_nodes("AUTH_test", "c", "o")
    with pytest.raises(TypeError):
        nodes[0]["ip"] = "1.2.3.4"
    mine = dict(nodes[0])
    mine["ip"] = "1.2.3.4"
    deep = copy.deepcopy(nodes[0])
    deep["backend_index"] = 1
    assert ring.get_nodes("AUTH_test", "c", "o")[1][0]["ip"] != "1.2.3.4"


def test_partition_out_of_range_is_refused(built):
    _builder, ring = built
    for bad in (-1, 256):
        with pytest.raises(ValueError):
            ring.get_part_nodes(bad)
        with pytest.raises(ValueError):
            ring.get_more_nodes(bad)


def test_fractional_replicas_give_fewer_nodes_on_the_short_row(tmp_path):
    devs = [_dev(i, zone=i + 1) for i in range(4)]
    rows = [[0] * 4, [1] * 4, [2, 2]]
    ring = Ring(_handmade_ring(tmp_path, devs, rows, 2), hash_secrets=SECRETS)
    assert ring.replica_count == 2.5
    assert [n["id"] for n in ring.get_part_nodes(0)] == [0, 1, 2]
    assert [n["id"] for n in ring.get_part_nodes(3)] == [0, 1]


def test_a_device_named_twice_in_a_part_is_listed_once(tmp_path):
    devs = [_dev(0), _dev(1, zone=2)]
    ring = Ring(_handmade_ring(tmp_path, devs, [[0, 0], [1, 0], [0, 1]], 1), hash_secrets=SECRETS)
    nodes = ring.get_part_nodes(0)
    assert [(n["id"], n["index"]) for n in nodes] == [(0, 0), (1, 1)]


def test_ring_naming_a_missing_device_is_refused(tmp_path):
    devs = [_dev(0), None]
    with pytest.raises(RingFileError, match="missing device"):
        Ring(_handmade_ring(tmp_path, devs, [[0, 1]], 1), hash_secrets=SECRETS)


def test_missing_ring_file_is_a_ring_file_error(tmp_path):
    with pytest.raises(RingFileError, match="not found"):
        Ring(tmp_path / "nope.ring.gz", hash_secrets=SECRETS)


# -- handoffs -------------------------------------------------------------------------


def _distinctness(node, primaries):
    """0 other region, 1 other zone, 2 other server, 3 same server as a primary."""
    if node["region"] not in {p["region"] for p in primaries}:
        return 0
    if (node["region"], node["zone"]) not in {(p["region"], p["zone"]) for p in primaries}:
        return 1
    if (node["ip"], node["port"]) not in {(p["ip"], p["port"]) for p in primaries}:
        return 2
    return 3


def test_handoffs_cover_every_other_device_once_never_a_primary(built):
    _builder, ring = built
    for part in range(0, ring.partition_count, 17):
        primaries = {n["id"] for n in ring.get_part_nodes(part)}
        handoffs = [n["id"] for n in ring.get_more_nodes(part)]
        assert len(handoffs) == len(set(handoffs))
        assert not primaries & set(handoffs)
        assert set(handoffs) | primaries == {d["id"] for d in ring.devs}


def test_handoffs_go_to_more_distinct_places_first(built):
    _builder, ring = built
    for part in range(0, ring.partition_count, 5):
        primaries = ring.get_part_nodes(part)
        levels = [_distinctness(n, primaries) for n in ring.get_more_nodes(part)]
        assert levels == sorted(levels)


def test_other_zone_devices_come_before_same_zone_ones(tmp_path):
    # One region, three zones; the primaries use zones 1 and 2 only.
    devs = [_dev(i, zone=1 + i // 4, ip=f"10.0.{i // 4}.{i % 2}") for i in range(12)]
    ring = Ring(_handmade_ring(tmp_path, devs, [[0, 0], [4, 4]], 1), hash_secrets=SECRETS)
    for part in (0, 1):
        zones = [n["zone"] for n in ring.get_more_nodes(part)]
        assert zones[:4] == [3, 3, 3, 3]
        assert sorted(zones[4:]) == [1, 1, 1, 2, 2, 2]


def test_handoffs_are_deterministic_and_differ_between_parts(built):
    _builder, ring = built
    orders = {tuple(n["id"] for n in ring.get_more_nodes(p)) for p in range(32)}
    assert len(orders) > 16
    assert list(ring.get_more_nodes(3)) == list(ring.get_more_nodes(3))


def test_first_handoffs_spread_over_the_cluster(built):
    _builder, ring = built
    firsts = {next(ring.get_more_nodes(p))["id"] for p in range(ring.partition_count)}
    # A failed primary's load must not all land on one or two devices.
    assert len(firsts) >= 8


def test_handoffs_skip_zero_weight_and_removed_devices(tmp_path):
    devs = [_dev(i, zone=i + 1) for i in range(6)]
    devs[4]["weight"] = 0
    devs[5] = None
    ring = Ring(_handmade_ring(tmp_path, devs, [[0, 1], [2, 2]], 1), hash_secrets=SECRETS)
    assert sorted(n["id"] for n in ring.get_more_nodes(0)) == [1, 3]
    handoffs = list(ring.get_more_nodes(1))
    assert sorted(n["id"] for n in handoffs) == [0, 3]
    assert [n["handoff_index"] for n in handoffs] == [0, 1]


@st.composite
def _topologies(draw):
    """Random small clusters (some devices weightless or removed) and a random table."""
    count = draw(st.integers(2, 14))
    devs = []
    for i in range(count):
        region, zone, server = (draw(st.integers(1, n)) for n in (2, 3, 3))
        weight = draw(st.sampled_from([0, 1, 100, 100, 100]))
        devs.append(_dev(i, region, zone, f"10.{region}.{zone}.{server}", weight=weight))
    for i in draw(st.sets(st.integers(0, count - 1), max_size=count - 1)):
        devs[i] = None
    live = [d["id"] for d in devs if d is not None]
    replicas = draw(st.integers(1, 3))
    rows = [[draw(st.sampled_from(live)) for _ in range(4)] for _ in range(replicas)]
    return devs, rows


@settings(max_examples=60, deadline=None)
@given(_topologies())
def test_handoff_invariants_hold_on_any_cluster(topology):
    devs, rows = topology
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.ring.gz")
        RingData(2, devs, [array("H", row) for row in rows]).save(path)
        ring = Ring(path, hash_secrets=SECRETS)
    in_service = {d["id"] for d in devs if d is not None and d["weight"] > 0}
    for part in range(4):
        primaries = ring.get_part_nodes(part)
        ids = [n["id"] for n in primaries]
        assert len(ids) == len(set(ids))
        handoffs = list(ring.get_more_nodes(part))
        got = [n["id"] for n in handoffs]
        assert len(got) == len(set(got))
        assert set(got) == in_service - set(ids)
        levels = [_distinctness(n, primaries) for n in handoffs]
        assert levels == sorted(levels)


# -- reloading ------------------------------------------------------------------------


def test_reloads_when_the_file_is_replaced(tmp_path):
    devs = [_dev(0), _dev(1, zone=2)]
    path = _handmade_ring(tmp_path, devs, [[0, 0]], 1)
    ring = Ring(path, hash_secrets=SECRETS, reload_interval=0)
    assert ring.get_part_nodes(1)[0]["id"] == 0
    _handmade_ring(tmp_path, devs, [[1, 1]], 1)
    assert ring.get_part_nodes(1)[0]["id"] == 1


def test_does_not_look_at_the_file_before_the_interval(tmp_path):
    devs = [_dev(0), _dev(1, zone=2)]
    path = _handmade_ring(tmp_path, devs, [[0, 0]], 1)
    ring = Ring(path, hash_secrets=SECRETS, reload_interval=3600)
    _handmade_ring(tmp_path, devs, [[1, 1]], 1)
    assert ring.get_part_nodes(1)[0]["id"] == 0


def test_a_broken_replacement_keeps_the_loaded_ring(tmp_path, caplog):
    devs = [_dev(0), _dev(1, zone=2)]
    path = _handmade_ring(tmp_path, devs, [[0, 0]], 1)
    ring = Ring(path, hash_secrets=SECRETS, reload_interval=0)
    path.write_bytes(b"garbage")
    assert ring.get_part_nodes(1)[0]["id"] == 0
    assert "cannot reload" in caplog.text
    os.unlink(path)
    assert ring.get_part_nodes(1)[0]["id"] == 0


# -- secrets --------------------------------------------------------------------------


def test_secrets_come_from_haneul_conf(tmp_path, monkeypatch):
    conf = tmp_path / "haneul.conf"
    conf.write_text("[hash]\nprefix = test-prefix\nsuffix = test-suffix\n")
    monkeypatch.setenv("HANEUL_CONF", str(conf))
    load_hash_secrets.cache_clear()
    try:
        path = _handmade_ring(tmp_path, [_dev(0)], [[0] * 16], 4)
        assert Ring(path).get_part("a", "c", "o") == Ring(path, SECRETS).get_part("a", "c", "o")
    finally:
        load_hash_secrets.cache_clear()


def test_missing_hash_secrets_are_a_clear_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HANEUL_CONF", str(tmp_path / "absent.conf"))
    load_hash_secrets.cache_clear()
    try:
        path = _handmade_ring(tmp_path, [_dev(0)], [[0, 0]], 1)
        with pytest.raises(ConfigError, match="absent.conf"):
            Ring(path)
    finally:
        load_hash_secrets.cache_clear()
