import configparser

import pytest

from common.config import ConfigError
from common.policies import (
    ReplicationPolicy,
    StoragePolicies,
    load_policies,
    parse_policies,
)


def parse(text):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parse_policies(parser)


def test_no_policy_section_means_one_policy_0_named_policy_0():
    policies = parse("[hash]\nprefix = p\n")
    assert len(policies) == 1
    policy = policies.get_by_index(0)
    assert policy.name == "Policy-0"
    assert policy.is_default
    assert policies.default is policy
    assert isinstance(policy, ReplicationPolicy)


def test_sections_give_names_aliases_default_and_types():
    policies = parse(
        """
[policy:0]
name = gold
aliases = yellow, orange
default = yes

[policy:1]
name = silver
type = replication
"""
    )
    assert [p.index for p in policies] == [0, 1]
    assert policies.default.name == "gold"
    assert policies.get_by_name("YELLOW").index == 0
    assert policies.get_by_name(" orange ").index == 0
    assert policies.get_by_name("silver").index == 1
    assert policies.get_by_name("bronze") is None
    assert policies.get_by_index("1").name == "silver"
    assert policies.get_by_index("x") is None
    assert policies.get_by_index(7) is None
    assert policies.get_by_index(0).aliases == ["yellow", "orange"]


def test_the_only_policy_is_the_default_even_if_not_marked():
    policies = parse("[policy:0]\nname = gold\n")
    assert policies.default.name == "gold"


def test_ring_names_follow_the_index():
    policies = parse("[policy:0]\nname = a\ndefault = yes\n[policy:3]\nname = b\n")
    assert policies.get_by_index(0).ring_name == "object"
    assert policies.get_by_index(3).ring_name == "object-3"


def test_info_lists_names_aliases_default_but_not_deprecated():
    policies = parse(
        "[policy:0]\nname = a\naliases = b\ndefault = yes\n"
        "[policy:1]\nname = old\ndeprecated = yes\n"
    )
    assert policies.info() == [{"name": "a", "aliases": "a, b", "default": True}]


def test_replication_quorum_is_a_majority():
    policy = ReplicationPolicy(0, "x")
    assert [policy.quorum_size(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[policy:0]\nname = a\ntype = magic\n", "unknown policy type"),
        ("[policy:0]\nname = a\n[policy:1]\nname = A\n", "used by both"),
        ("[policy:0]\nname = a\naliases = b, B\n", "given twice"),
        ("[policy:0]\nname = a\n[policy:1]\nname = b\n", "none is marked default"),
        (
            "[policy:0]\nname = a\ndefault = yes\n[policy:1]\nname = b\ndefault = yes\n",
            "more than one default",
        ),
        ("[policy:1]\nname = a\n", "must include policy 0"),
        ("[policy:zero]\nname = a\n", "bad storage policy section"),
        ("[policy:0]\nname = a b\n", "invalid name"),
        ("[policy:0]\nname = a\ndefault = yes\ndeprecated = yes\n", "cannot be deprecated"),
        ("[policy:0]\nname = a\nreplicas = 3\n", "unknown option(s) replicas"),
        ("[policy:0]\nname = a\ndefault = perhaps\n", "not a boolean"),
        ("[policy:0]\nname = a\n[policy:2]\n", "missing name"),
    ],
)
def test_bad_policy_config_is_a_clear_error(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_load_policies_names_the_file_in_errors(tmp_path):
    path = tmp_path / "haneul.conf"
    path.write_text("[policy:0]\nname = a\ntype = nope\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_policies(str(path))


def test_load_policies_reads_haneul_conf_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "haneul.conf"
    path.write_text("[hash]\nprefix = x\n\n[policy:0]\nname = gold\n")
    monkeypatch.setenv("HANEUL_CONF", str(path))
    assert load_policies().default.name == "gold"


def test_empty_collection_is_policy_0():
    assert StoragePolicies([]).default.name == "Policy-0"
