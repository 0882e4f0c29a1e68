import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.middleware.acl import (
    account_acl_level,
    acl_grants,
    clean_account_acl,
    clean_acl,
    format_acl,
    parse_account_acl,
    parse_acl,
    referrer_allowed,
)

TESTER = ["test", "test:tester", "AUTH_test"]
TESTER3 = ["test", "test:tester3"]
TESTER2 = ["test2", "test2:tester2", "AUTH_test2"]


# -- cleaning ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        (".r:*", ".r:*"),
        (" .r:* , .rlistings ", ".r:*,.rlistings"),
        (".referrer:example.com", ".r:example.com"),
        (".ref:*.example.com", ".r:.example.com"),
        (".r:-bad.example", ".r:-bad.example"),
        (".r: - bad.example", ".r:-bad.example"),
        ("test:tester3, test2:*,,*:tester", "test:tester3,test2:*,*:tester"),
        ("test", "test"),
        ("", ""),
    ],
)
def test_clean_read_acl_normalises(raw, cleaned):
    assert clean_acl("X-Container-Read", raw) == cleaned


@pytest.mark.parametrize(
    "raw",
    [".r:", ".r:-", ".r:.", ".r:*.", ".x:foo", ".unknown", "test:", ":tester"],
)
def test_clean_read_acl_rejects_bad_entries(raw):
    with pytest.raises(ValueError):
        clean_acl("X-Container-Read", raw)


@pytest.mark.parametrize("raw", [".r:*", ".rlistings", "test:tester,.r:example.com"])
def test_write_acl_refuses_referrers_and_listings(raw):
    with pytest.raises(ValueError):
        clean_acl("X-Container-Write", raw)


def test_write_acl_keeps_users_and_groups():
    assert clean_acl("x-container-write", "test:tester3, test2") == "test:tester3,test2"


# -- parsing and matching ---------------------------------------------------------------


def test_parse_acl_splits_referrers_from_groups_in_order():
    assert parse_acl(".r:*,.r:-bad.example,.rlistings,test:tester3") == (
        ["*", "-bad.example"],
        [".rlistings", "test:tester3"],
    )
    assert parse_acl(None) == ([], [])


@pytest.mark.parametrize(
    "referrers, referrer, allowed",
    [
        (["*"], None, True),
        (["*"], "http://anything.example/page", True),
        ([], "http://anything.example/", False),
        (["example.com"], "http://example.com/x", True),
        (["example.com"], "http://www.example.com/x", False),
        ([".example.com"], "http://www.example.com/x", True),
        ([".example.com"], "http://example.org/x", False),
        (["*", "-bad.example"], "http://bad.example/", False),
        (["*", "-bad.example"], "http://good.example/", True),
        (["-bad.example", "*"], "http://bad.example/", True),  # the last match decides
        (["*", "-*"], "http://good.example/", False),
        (["Example.COM"], "http://example.com/", True),
    ],
)
def test_referrer_allowed(referrers, referrer, allowed):
    assert referrer_allowed(referrer, referrers) is allowed


@pytest.mark.parametrize(
    "entry, user_groups, granted",
    [
        ("test:tester3", TESTER3, True),
        ("test:tester3", TESTER, False),
        ("test:*", TESTER3, True),
        ("test:*", TESTER2, False),
        ("*:tester2", TESTER2, True),
        ("*:tester2", TESTER, False),
        ("*:*", TESTER2, True),
        ("test", TESTER3, True),  # the account as a group: every user of it
        ("test2", TESTER3, False),
        ("AUTH_test", TESTER3, False),
        ("test:*", [], False),
    ],
)
def test_acl_grants_each_form(entry, user_groups, granted):
    assert acl_grants([entry], user_groups) is granted


# -- account ACLs -----------------------------------------------------------------------


def test_account_acl_levels():
    acl = parse_account_acl(
        json.dumps({"read-only": ["test:*"], "read-write": ["test2:tester2"], "admin": []})
    )
    assert account_acl_level(acl, TESTER3) == "read-only"
    assert account_acl_level(acl, TESTER2) == "read-write"
    assert account_acl_level({"admin": ["test2"]}, TESTER2) == "admin"
    assert account_acl_level(acl, ["other", "other:x"]) is None


@pytest.mark.parametrize(
    "text", ["[]", "not json", '{"owner": ["a"]}', '{"admin": "a"}', '{"admin": [""]}']
)
def test_bad_account_acls_are_refused(text):
    with pytest.raises(ValueError):
        parse_account_acl(text)


def test_clean_account_acl_is_canonical():
    text = '{"read-only": [" a "], "admin": ["b"], "read-write": []}'
    assert clean_account_acl(text) == '{"admin":["b"],"read-only":["a"]}'
    assert clean_account_acl("") == ""


# -- properties -------------------------------------------------------------------------

name_chars = st.characters(
    max_codepoint=0x2FFF, blacklist_categories=("Z", "C"), blacklist_characters=",:.-*"
)
names = st.text(name_chars, min_size=1, max_size=12)
hosts = st.builds(
    lambda parts, domain: (".", "")[not domain] + ".".join(parts),
    st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8), min_size=1),
    st.booleans(),
)
referrer_entries = st.one_of(
    st.just(".r:*"),
    st.builds(lambda neg, host: f".r:{'-' if neg else ''}{host}", st.booleans(), hosts),
)
group_entries = st.one_of(
    names,
    st.builds(lambda a, u: f"{a}:{u}", st.one_of(names, st.just("*")), names),
    st.just(".rlistings"),
)
acl_entries = st.lists(st.one_of(referrer_entries, group_entries), max_size=8)


@given(acl_entries)
def test_clean_is_idempotent_and_keeps_meaning(entries):
    raw = " , ".join(entries)
    cleaned = clean_acl("X-Container-Read", raw)
    assert clean_acl("X-Container-Read", cleaned) == cleaned
    assert parse_acl(cleaned) == parse_acl(raw)


@given(acl_entries)
def test_format_inverts_parse(entries):
    cleaned = clean_acl("X-Container-Read", ",".join(entries))
    referrers, groups = parse_acl(cleaned)
    assert parse_acl(format_acl(referrers, groups)) == (referrers, groups)


@given(st.text(max_size=40))
def test_clean_acl_accepts_or_raises_value_error(text):
    for header in ("X-Container-Read", "X-Container-Write"):
        try:
            cleaned = clean_acl(header, text)
        except ValueError:
            continue
        assert clean_acl(header, cleaned) == cleaned
        if cleaned:
            assert all(entry and entry.strip() == entry for entry in cleaned.split(","))


@given(st.lists(hosts, max_size=5), hosts)
def test_a_trailing_negation_always_denies_its_host(referrers, host):
    host = host.lstrip(".")
    assert not referrer_allowed(f"http://{host}/", ["*", *referrers, f"-{host}"])
    assert referrer_allowed(f"http://{host}/", [*referrers, f"-{host}", "*"])
