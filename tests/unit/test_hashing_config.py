import hashlib

import pytest

from common.config import ConfigError, config_int, config_true, read_conf
from common.hashing import HashSecrets, hash_path, load_hash_secrets, part_of_hash


def test_hash_path_is_md5_of_prefix_path_suffix():
    secrets = HashSecrets("pre", "suf")
    expected = hashlib.md5(b"pre/a/c/o" + b"suf").hexdigest()
    assert hash_path("a", "c", "o", secrets=secrets) == expected
    assert hash_path("a", secrets=secrets) == hashlib.md5(b"pre/asuf").hexdigest()


def test_hash_path_handles_unicode_names():
    secrets = HashSecrets("p", "s")
    expected = hashlib.md5("p/하늘/c/o\u00e9s".encode()).hexdigest()
    assert hash_path("하늘", "c", "o\u00e9", secrets=secrets) == expected


def test_object_without_container_is_an_error():
    with pytest.raises(ValueError):
        hash_path("a", None, "o", secrets=HashSecrets("p", "s"))


def test_part_of_hash_takes_top_bits():
    digest = bytes([0xFF, 0x00, 0x00, 0x01]) + bytes(12)
    assert part_of_hash(digest, 8) == 0xFF
    assert part_of_hash(digest, 32) == 0xFF000001


def test_secrets_load_from_haneul_conf(tmp_path, monkeypatch):
    conf = tmp_path / "haneul.conf"
    conf.write_text("[hash]\nprefix = one\nsuffix = two\n")
    monkeypatch.setenv("HANEUL_CONF", str(conf))
    load_hash_secrets.cache_clear()
    secrets = load_hash_secrets()
    assert (secrets.prefix, secrets.suffix) == (b"one", b"two")
    load_hash_secrets.cache_clear()


@pytest.mark.parametrize("text", ["", "[hash]\n", "[hash]\nprefix =\nsuffix =\n", "[other]\nx=1\n"])
def test_missing_secrets_are_a_clear_error(tmp_path, text):
    conf = tmp_path / "haneul.conf"
    conf.write_text(text)
    load_hash_secrets.cache_clear()
    with pytest.raises(ConfigError, match="hash"):
        load_hash_secrets(str(conf))


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_conf(str(tmp_path / "nope.conf"))


def test_malformed_config_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("no section header\n")
    with pytest.raises(ConfigError, match="malformed"):
        read_conf(str(path))


def test_config_values():
    assert config_true("Yes") is True
    assert config_true("off") is False
    with pytest.raises(ConfigError):
        config_true("maybe")
    assert config_int("7", "workers") == 7
    with pytest.raises(ConfigError, match="workers"):
        config_int("x", "workers")
    with pytest.raises(ConfigError, match=">= 1"):
        config_int("0", "workers", minimum=1)
