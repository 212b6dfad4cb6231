"""Name and label syntax as Kubernetes checks it (k8s.io/apimachinery/pkg/util/validation).

Each `is_*` function returns a list of problems (empty when the value is fine), worded
as Kubernetes words them, so that the API server and pkctl report the same text.
"""
from __future__ import annotations

import re

__all__ = ["is_dns1123_label", "is_dns1123_subdomain", "is_dns1035_label", "is_qualified_name",
           "is_label_value", "is_valid_port_name", "is_env_var_name", "is_config_map_key", "is_valid_port_num",
           "DNS1123_LABEL_MAX", "DNS1123_SUBDOMAIN_MAX", "LABEL_VALUE_MAX"]

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
_QUALIFIED_NAME_MAX = 63
_PORT_NAME_MAX = 15

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(" + _QUALIFIED_NAME + r")?"
_ENV_VAR = r"[-._a-zA-Z][-._a-zA-Z0-9]*"
_CONFIG_KEY = r"[-._a-zA-Z0-9]+"


_RE_LABEL = re.compile(_DNS1123_LABEL)
_RE_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN)
_RE_1035 = re.compile(_DNS1035_LABEL)
_RE_QUALIFIED = re.compile(_QUALIFIED_NAME)
_RE_LABEL_VALUE = re.compile(_LABEL_VALUE)
_RE_ENV = re.compile(_ENV_VAR)
_RE_CONFIG_KEY = re.compile(_CONFIG_KEY)
_RE_PORT_NAME_CHARS = re.compile(r"[-a-z0-9]+")
_RE_HAS_LETTER = re.compile(r"[a-z]")


def _regex_error(what: str, pattern: str, examples: tuple[str, ...]) -> str:
    ex = ",  or ".join(f"'{e}'" for e in examples)
    return f"{what} (e.g. {ex}, regex used for validation is '{pattern}')"


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


DNS1123_LABEL_ERROR = _regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character", _DNS1123_LABEL, ("my-name", "123-abc"))
DNS1123_SUBDOMAIN_ERROR = _regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character", _DNS1123_SUBDOMAIN, ("example.com",))
DNS1035_LABEL_ERROR = _regex_error(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character", _DNS1035_LABEL, ("my-name", "abc-123"))
QUALIFIED_NAME_ERROR = _regex_error(
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character", _QUALIFIED_NAME, ("MyName", "my.name", "123-abc"))
LABEL_VALUE_ERROR = _regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character", _LABEL_VALUE, ("MyValue", "my_value", "12345"))
ENV_VAR_ERROR = _regex_error(
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and "
    "must not start with a digit", _ENV_VAR, ("my.env-name", "MY_ENV.NAME", "MyEnvName1"))
CONFIG_KEY_ERROR = _regex_error(
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'", _CONFIG_KEY,
    ("key.name", "KEY_NAME", "key-name"))

_QUALIFIED_WITH_PREFIX_ERROR = _regex_error(
    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character", _QUALIFIED_NAME, ("MyName", "my.name", "123-abc")
) + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"


def _length_and_format(value: str, max_len: int, pattern: re.Pattern[str], error: str) -> list[str]:
    """How Kubernetes checks most names: at most `max_len` characters, and the format (each failure reported)."""
    errs = [_max_len(max_len)] if len(value) > max_len else []
    if not pattern.fullmatch(value):
        errs.append(error)
    return errs


def is_dns1123_label(value: str) -> list[str]:
    return _length_and_format(value, DNS1123_LABEL_MAX, _RE_LABEL, DNS1123_LABEL_ERROR)


def is_dns1123_subdomain(value: str) -> list[str]:
    return _length_and_format(value, DNS1123_SUBDOMAIN_MAX, _RE_SUBDOMAIN, DNS1123_SUBDOMAIN_ERROR)


def is_dns1035_label(value: str) -> list[str]:
    """What Kubernetes requires of Service names: a DNS label that starts with a letter."""
    return _length_and_format(value, DNS1123_LABEL_MAX, _RE_1035, DNS1035_LABEL_ERROR)


def is_qualified_name(value: str) -> list[str]:
    """Label and annotation keys: `[prefix/]name`, prefix a DNS subdomain."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        errs = []
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + e for e in is_dns1123_subdomain(prefix))
    else:
        return [_QUALIFIED_WITH_PREFIX_ERROR]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > _QUALIFIED_NAME_MAX:
        errs.append("name part " + _max_len(_QUALIFIED_NAME_MAX))
    if name and not _RE_QUALIFIED.fullmatch(name):
        errs.append(QUALIFIED_NAME_ERROR)
    return errs


def is_label_value(value: str) -> list[str]:
    return _length_and_format(value, LABEL_VALUE_MAX, _RE_LABEL_VALUE, LABEL_VALUE_ERROR)


def is_valid_port_name(value: str) -> list[str]:
    """An IANA_SVC_NAME: what container and service port names must be."""
    errs = []
    if len(value) > _PORT_NAME_MAX:
        errs.append(_max_len(_PORT_NAME_MAX))
    if not _RE_PORT_NAME_CHARS.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and not _RE_HAS_LETTER.search(value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_port_num(port: int) -> list[str]:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def is_env_var_name(value: str) -> list[str]:
    return [] if _RE_ENV.fullmatch(value) else [ENV_VAR_ERROR]


def is_config_map_key(value: str) -> list[str]:
    """Keys of ConfigMap/Secret data: they become file names in volumes."""
    errs = _length_and_format(value, DNS1123_SUBDOMAIN_MAX, _RE_CONFIG_KEY, CONFIG_KEY_ERROR)
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs
