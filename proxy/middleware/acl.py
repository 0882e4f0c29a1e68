"""Container and account ACLs: cleaning, parsing and matching, in Swift's forms.

A container ACL (``X-Container-Read`` / ``X-Container-Write``) is a comma-separated list:

``.r:*``               any referrer (anonymous reads of objects)
``.r:example.com``     that host; ``.r:.example.com`` (or ``*.example.com``) a domain
``.r:-bad.example``    not that host (entries are read in order; the last match wins)
``.rlistings``         referrer-granted readers may also list the container
``test:tester``        that user of that account; ``test:*`` any user of the account,
                       ``*:tester`` a user of that name in any account, ``*:*`` anyone signed in
``test``               a group: with tempauth, every user of the account ``test``

Referrer entries (``.r:``) and ``.rlistings`` belong in read ACLs only. Matching works on
an identity's *groups*: with tempauth these are ``[account, "account:user", ...]`` — the
second one names the user (see ``tempauth.TempAuth.user_groups``).

An account ACL (``X-Account-Access-Control``) is a JSON object whose keys are
``admin``, ``read-write`` and ``read-only``, each a list of entries matched like the
groups above.
"""

import json
from urllib.parse import urlparse

REFERRER_DESIGNATORS = (".r", ".ref", ".referer", ".referrer")
LISTINGS = ".rlistings"
ACCOUNT_ACL_LEVELS = ("admin", "read-write", "read-only")


def clean_acl(name, value):
    """Validate and normalise one ACL header's value; a bad ACL raises ValueError.

    ``name`` is the header name: referrer entries are refused in a write ACL.
    Referrer designators are spelled ``.r:`` afterwards, ``*.example.com`` becomes
    ``.example.com``, whitespace and empty entries go away.
    """
    is_write = "write" in name.lower()
    cleaned = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if ":" not in entry:
            if entry.startswith("."):
                if entry != LISTINGS:
                    raise ValueError(f"unknown designator in ACL: {entry!r}")
                if is_write:
                    raise ValueError(f"{LISTINGS} is not allowed in a write ACL")
            cleaned.append(entry)
            continue
        first, second = (part.strip() for part in entry.split(":", 1))
        if first.startswith("."):
            cleaned.append(_clean_referrer(first, second, entry, is_write))
        elif not first or not second:
            raise ValueError(f"incomplete account:user entry in ACL: {entry!r}")
        else:
            cleaned.append(f"{first}:{second}")
    return ",".join(cleaned)


def _clean_referrer(designator, host, entry, is_write):
    if designator not in REFERRER_DESIGNATORS:
        raise ValueError(f"unknown designator {designator!r} in ACL: {entry!r}")
    if is_write:
        raise ValueError(f"referrers are not allowed in a write ACL: {entry!r}")
    negate = host.startswith("-")
    if negate:
        host = host[1:].strip()
    if host != "*" and host.startswith("*"):
        host = host[1:].strip()
    if not host or host == ".":
        raise ValueError(f"no host or domain after the referrer designator: {entry!r}")
    return f".r:{'-' if negate else ''}{host}"


def parse_acl(value):
    """Split a (cleaned) ACL into ``(referrers, groups)`` lists, in their given order."""
    referrers, groups = [], []
    for raw in (value or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry.startswith(".r:"):
            referrers.append(entry[3:])
        else:
            groups.append(entry)
    return referrers, groups


def format_acl(referrers=(), groups=()):
    """The ACL header value for the given referrer and group lists (parse_acl's inverse)."""
    return ",".join([f".r:{ref}" for ref in referrers] + list(groups))


def referrer_allowed(referrer, referrers):
    """Does the referrer list let a request with this ``Referer`` header through?

    Entries are read in order and the last one that matches decides, so
    ``.r:*,.r:-bad.example`` lets everyone but bad.example in.
    """
    if not referrers:
        return False
    allowed = False
    try:
        host = (urlparse(referrer or "").hostname or "unknown").lower()
    except ValueError:
        host = "unknown"
    for entry in referrers:
        negate = entry.startswith("-")
        pattern = (entry[1:] if negate else entry).lower()
        if (
            pattern == "*"
            or pattern == host
            or (pattern.startswith(".") and host.endswith(pattern))
        ):
            allowed = not negate
    return allowed


def entry_matches(entry, user_groups):
    """Does one ACL group entry name the identity whose groups are ``user_groups``?

    ``user_groups[1]``, when present, is the identity's ``account:user``.
    """
    if entry in user_groups:
        return True
    if ":" not in entry or len(user_groups) < 2 or ":" not in user_groups[1]:
        return False
    want_account, want_user = entry.split(":", 1)
    account, user = user_groups[1].split(":", 1)
    return want_account in ("*", account) and want_user in ("*", user)


def acl_grants(groups, user_groups):
    """Does any of an ACL's group entries name this identity?"""
    return any(entry_matches(entry, user_groups) for entry in groups)


def parse_account_acl(text):
    """Parse an ``X-Account-Access-Control`` value into ``{level: [entries]}``.

    An empty value is no ACL (``{}``); anything that is not a JSON object of known levels
    mapping to lists of non-empty strings raises ValueError.
    """
    if not text or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("account ACL is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("account ACL must be a JSON object")
    acl = {}
    for level, entries in data.items():
        if level not in ACCOUNT_ACL_LEVELS:
            raise ValueError(f"unknown account ACL level {level!r}")
        if not isinstance(entries, list) or not all(
            isinstance(entry, str) and entry.strip() for entry in entries
        ):
            raise ValueError(f"account ACL level {level!r} must be a list of names")
        acl[level] = [entry.strip() for entry in entries]
    return acl


def clean_account_acl(text):
    """The canonical JSON form of an account ACL (levels in fixed order, empty ones dropped)."""
    acl = parse_account_acl(text)
    canonical = {level: acl[level] for level in ACCOUNT_ACL_LEVELS if acl.get(level)}
    return json.dumps(canonical, separators=(",", ":"), sort_keys=False) if canonical else ""


def account_acl_level(acl, user_groups):
    """The highest account ACL level that names this identity, or None."""
    for level in ACCOUNT_ACL_LEVELS:
        if acl_grants(acl.get(level, ()), user_groups):
            return level
    return None
