"""S3 key pairs and the Swift users they stand for, from ``[filter:s3api]``.

One option per user, named like tempauth's users::

    s3_user_<account>_<user> = <access key> <secret key> [display_name=<name>]
                               [email=<address>] [id=<canonical id>]
    s3_user64_<b64 account>_<b64 user> = ...   (names holding "_"; unpadded base64url)

A user may have several key pairs (one option per pair, distinguished by a suffix
after a ``.`` in the option name: ``s3_user_test_tester.2 = ...``). The owner
record S3 shows (``<Owner><ID>/<DisplayName>``) comes from ``id`` (default: a
64-hex digest of ``account:user``) and ``display_name`` (default ``account:user``).
"""

import base64
import binascii
import hashlib

from common.config import ConfigError

PREFIXES = ("s3_user_", "s3_user64_")


class Credential:
    """One key pair: who it is (``account``, ``user`` as in tempauth) and the secret."""

    __slots__ = ("access_key", "secret_key", "account", "user", "display_name", "email", "owner_id")

    def __init__(
        self, access_key, secret_key, account, user, display_name=None, email=None, owner_id=None
    ):
        self.access_key = access_key
        self.secret_key = secret_key
        self.account = account
        self.user = user
        self.display_name = display_name or f"{account}:{user}"
        self.email = email
        self.owner_id = owner_id or canonical_id(account, user)

    @property
    def name(self):
        """``account:user``, the tempauth user this key pair signs in as."""
        return f"{self.account}:{self.user}"

    def __repr__(self):
        return f"Credential({self.access_key!r} -> {self.name!r})"


def canonical_id(account, user):
    """A stable 64-hex owner id for a user (what S3 calls the canonical user id)."""
    return hashlib.sha256(f"haneul-s3-owner\x00{account}:{user}".encode()).hexdigest()


def _b64decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")


def _names(option):
    base = option.partition(".")[0]
    if base.startswith("s3_user64_"):
        encoded_account, _, encoded_user = base[len("s3_user64_") :].partition("_")
        try:
            return _b64decode(encoded_account), _b64decode(encoded_user)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ConfigError(f"{option}: names are not valid base64") from None
    account, _, user = base[len("s3_user_") :].partition("_")
    return account, user


def parse_credentials(conf):
    """``{access_key: Credential}`` from the ``s3_user_*`` options of ``conf``."""
    found = {}
    for option, value in conf.items():
        if not option.startswith(PREFIXES):
            continue
        account, user = _names(option)
        if not account or not user or ":" in account:
            raise ConfigError(f"{option}: expected s3_user_<account>_<user>")
        words = value.split()
        if len(words) < 2:
            raise ConfigError(f"{option}: expected '<access key> <secret key> [name=value ...]'")
        access, secret, extras = words[0], words[1], {}
        for word in words[2:]:
            key, sep, val = word.partition("=")
            if not sep or key not in ("display_name", "email", "id"):
                raise ConfigError(
                    f"{option}: unknown setting {word!r} (display_name=, email=, id=)"
                )
            extras[key] = val
        if access in found:
            raise ConfigError(f"{option}: access key {access!r} is given twice")
        found[access] = Credential(
            access,
            secret,
            account,
            user,
            display_name=extras.get("display_name"),
            email=extras.get("email"),
            owner_id=extras.get("id"),
        )
    return found
