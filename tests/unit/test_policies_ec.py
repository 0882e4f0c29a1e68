"""The erasure_coding policy type: its options, its pyeclib driver, its quorum, and the
proxy refusing to start on a policy or ring it cannot serve."""

import configparser
import os
import socket

import pytest

from common.config import ConfigError
from common.hashing import HashSecrets
from common.policies import ErasureCodingPolicy, parse_policies
from proxy.server import OBJECT_CONTROLLERS, ProxyApp
from ring.builder import RingBuilder

pytest.importorskip("pyeclib.ec_iface")

EC42 = """
[policy:0]
name = gold
default = yes

[policy:1]
name = ec42
type = erasure_coding
ec_type = isa_l_rs_vand
ec_num_data_fragments = 4
ec_num_parity_fragments = 2
"""


def parse(text):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parse_policies(parser)


def ec_text(**options):
    values = {
        "ec_type": "isa_l_rs_vand",
        "ec_num_data_fragments": "4",
        "ec_num_parity_fragments": "2",
    }
    values.update(options)
    lines = "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)
    return (
        "[policy:0]\nname = gold\ndefault = yes\n\n"
        f"[policy:1]\nname = ec\ntype = erasure_coding\n{lines}"
    )


def test_an_ec_policy_reads_its_options_and_builds_its_driver():
    policy = parse(EC42).get_by_name("ec42")
    assert isinstance(policy, ErasureCodingPolicy)
    assert policy.policy_type == "erasure_coding"
    assert (policy.ec_type, policy.ec_ndata, policy.ec_nparity) == ("isa_l_rs_vand", 4, 2)
    assert policy.ec_segment_size == 1048576
    assert policy.ec_n_fragments == 6
    fragments = policy.driver.encode(b"x" * 1000)
    assert len(fragments) == 6
    assert policy.driver.decode(fragments[2:]) == b"x" * 1000
    assert policy.ring_name == "object-1"


def test_fragment_sizes_come_from_the_driver():
    policy = parse(ec_text(ec_object_segment_size="65536")).get_by_name("ec")
    assert policy.ec_segment_size == 65536
    assert policy.fragment_size == len(policy.driver.encode(os.urandom(65536))[0])
    assert policy.fragment_size_for(10) == len(policy.driver.encode(b"0123456789")[0])
    assert policy.fragment_size_for(0) == 0


def test_commit_quorum_is_k_plus_one_or_k_with_one_parity():
    assert parse(EC42).get_by_name("ec42").quorum_size(6) == 5
    policy = parse(ec_text(ec_num_data_fragments="3", ec_num_parity_fragments="1"))
    assert policy.get_by_name("ec").quorum_size(4) == 3
    policy = parse(ec_text(ec_num_data_fragments="8", ec_num_parity_fragments="4"))
    assert policy.get_by_name("ec").quorum_size(12) == 9


def test_the_replicated_quorum_is_unchanged():
    assert parse(EC42).get_by_index(0).quorum_size(3) == 2


@pytest.mark.parametrize(
    "options, message",
    [
        ({"ec_type": "nonsense"}, "unknown ec_type 'nonsense'"),
        ({"ec_type": None}, "ec_type is required"),
        ({"ec_num_data_fragments": "0"}, "ec_num_data_fragments must be >= 1"),
        ({"ec_num_parity_fragments": "0"}, "ec_num_parity_fragments must be >= 1"),
        ({"ec_num_parity_fragments": "two"}, "ec_num_parity_fragments must be an integer"),
        ({"ec_num_data_fragments": None}, "ec_num_data_fragments must be an integer"),
        ({"ec_object_segment_size": "0"}, "ec_object_segment_size must be >= 1"),
        ({"ec_type": "flat_xor_hd_3"}, "is not available here"),
        ({"replicas": "3"}, "unknown option(s) replicas"),
    ],
)
def test_a_bad_ec_policy_is_one_clear_config_error(options, message):
    with pytest.raises(ConfigError) as caught:
        parse(ec_text(**options))
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_info_lists_the_ec_policy_like_any_other():
    assert parse(EC42).info() == [
        {"name": "gold", "aliases": "gold", "default": True},
        {"name": "ec42", "aliases": "ec42"},
    ]


def test_the_ec_policy_type_has_its_object_controller():
    assert OBJECT_CONTROLLERS["erasure_coding"].__name__ == "ECObjectController"


# -- the proxy checks each EC policy's ring at start -----------------------------------------


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_ring(ring_dir, name, replicas, devices=8):
    builder = RingBuilder(4, replicas, 0)
    for i in range(devices):
        builder.add_dev(
            {
                "region": 1,
                "zone": i % 4,
                "ip": "127.0.0.1",
                "port": closed_port(),
                "device": f"d{i}",
                "weight": 1,
            }
        )
    builder.rebalance(seed=7)
    builder.get_ring().save(str(ring_dir / f"{name}.ring.gz"))


def proxy_app(ring_dir, ec_replicas):
    for name in ("account", "container", "object"):
        write_ring(ring_dir, name, 3)
    write_ring(ring_dir, "object-1", ec_replicas)
    return ProxyApp(
        {"ring_dir": str(ring_dir)}, hash_secrets=HashSecrets("p", "s"), policies=parse(EC42)
    )


def test_the_proxy_starts_with_a_ring_of_k_plus_m_replicas(tmp_path):
    app = proxy_app(tmp_path, 6)
    assert app.object_ring(app.policies.get_by_index(1)).replica_count == 6


def test_the_proxy_refuses_an_ec_ring_with_the_wrong_replica_count(tmp_path):
    with pytest.raises(ConfigError) as caught:
        proxy_app(tmp_path, 3)
    text = str(caught.value)
    assert "object-1.ring.gz has 3 replicas" in text and "needs 6" in text
    assert "\n" not in text


# -- the all-in-one cluster's haneul.conf ------------------------------------------------------


def test_haneul_up_writes_the_ec42_policy_and_adds_it_to_an_old_conf():
    from cli.cluster_layout import ClusterLayout, haneul_conf_text

    fresh = haneul_conf_text(None, with_ec=True)
    policies = parse(fresh)
    assert [(p.index, p.name, p.policy_type) for p in policies] == [
        (0, "gold", "replication"),
        (1, "ec42", "erasure_coding"),
    ]
    ec42 = policies.get_by_index(1)
    assert (ec42.ec_type, ec42.ec_ndata, ec42.ec_nparity) == ("isa_l_rs_vand", 4, 2)
    old = "[hash]\nprefix = a\nsuffix = b\n\n[policy:0]\nname = gold\ndefault = yes\n"
    upgraded = haneul_conf_text(old, with_ec=True)
    assert upgraded.startswith(old.rstrip("\n")) and "[policy:1]" in upgraded
    assert haneul_conf_text(upgraded, with_ec=True) == upgraded
    assert haneul_conf_text(old, with_ec=False) == old
    assert ClusterLayout("/tmp/x", nodes=4).has_ec_policy
    assert not ClusterLayout("/tmp/x", nodes=2).has_ec_policy
