"""Reading INI configuration, and the cluster-wide settings in ``haneul.conf``."""

import configparser
import os

DEFAULT_HANEUL_CONF = "/etc/haneul/haneul.conf"
TRUE_VALUES = {"1", "true", "yes", "on", "t", "y"}
FALSE_VALUES = {"0", "false", "no", "off", "f", "n", ""}


class ConfigError(Exception):
    """A configuration file is missing, unreadable or holds a bad value."""


def haneul_conf_path():
    """Where the cluster config lives: ``$HANEUL_CONF``, else /etc/haneul/haneul.conf."""
    return os.environ.get("HANEUL_CONF") or DEFAULT_HANEUL_CONF


def read_conf(path, defaults=None):
    """Parse an INI file into a ConfigParser; a missing or malformed file is a ConfigError."""
    parser = configparser.ConfigParser(defaults=defaults, interpolation=None)
    try:
        with open(path, encoding="utf-8") as fp:
            parser.read_file(fp)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except configparser.Error as err:
        raise ConfigError(f"malformed config file {path}: {err}") from None
    return parser


def config_true(value):
    """Read a boolean option; anything that is not clearly true or false is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def config_int(value, name="value", minimum=None):
    """Read an integer option with a clear error naming the option."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    return number


def config_float(value, name="value", minimum=None):
    """Read a float option with a clear error naming the option."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    return number
