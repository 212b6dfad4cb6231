"""Name/label syntax helpers (pklib.validation), with Kubernetes' own accept/reject cases."""
from __future__ import annotations

import pytest

from pklib import validation as v


@pytest.mark.parametrize("ok", ["a", "ab", "a-b", "0", "123-abc", "a" * 63])
def test_dns1123_label_accepts(ok: str) -> None:
    assert v.is_dns1123_label(ok) == []


@pytest.mark.parametrize("bad", ["", "A", "-a", "a-", "a.b", "a_b", "a b", "ä"])
def test_dns1123_label_rejects(bad: str) -> None:
    errs = v.is_dns1123_label(bad)
    assert errs and "a lowercase RFC 1123 label must consist of" in errs[-1]


def test_dns1123_label_too_long() -> None:
    assert v.is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]


@pytest.mark.parametrize("ok", ["example.com", "a", "a.b-c.d", "1.2.3", "x" * 253])
def test_dns1123_subdomain_accepts(ok: str) -> None:
    assert v.is_dns1123_subdomain(ok) == []


@pytest.mark.parametrize("bad", ["", "Example.com", "a..b", ".a", "a.", "a_b", "a.-b"])
def test_dns1123_subdomain_rejects(bad: str) -> None:
    assert any("RFC 1123 subdomain" in e for e in v.is_dns1123_subdomain(bad))


def test_dns1123_subdomain_too_long() -> None:
    assert "must be no more than 253 characters" in v.is_dns1123_subdomain("x" * 254)


def test_dns1035_label_must_start_with_a_letter() -> None:
    assert v.is_dns1035_label("web-1") == []
    assert "DNS-1035 label" in v.is_dns1035_label("1web")[0]


@pytest.mark.parametrize("ok", ["app", "App_1", "my.name", "example.com/MyName", "k8s.io/a-b", "a" * 63,
                                "kubernetes.io/" + "a" * 63])
def test_qualified_name_accepts(ok: str) -> None:
    assert v.is_qualified_name(ok) == []


@pytest.mark.parametrize("bad, fragment", [
    ("", "name part must be non-empty"),
    ("/a", "prefix part must be non-empty"),
    ("a/", "name part must be non-empty"),
    ("a/b/c", "a qualified name must consist of"),
    ("-a", "name part must consist of"),
    ("Example.com/a", "prefix part a lowercase RFC 1123 subdomain"),
    ("a" * 64, "name part must be no more than 63 characters"),
    ("a b", "name part must consist of"),
])
def test_qualified_name_rejects(bad: str, fragment: str) -> None:
    assert any(fragment in e for e in v.is_qualified_name(bad)), v.is_qualified_name(bad)


@pytest.mark.parametrize("ok", ["", "a", "MyValue", "my_value", "1.2-3", "a" * 63])
def test_label_value_accepts(ok: str) -> None:
    assert v.is_label_value(ok) == []


@pytest.mark.parametrize("bad", ["-a", "a-", "a b", "a/b", "a" * 64])
def test_label_value_rejects(bad: str) -> None:
    assert v.is_label_value(bad)


@pytest.mark.parametrize("ok", ["http", "web-80", "a1", "x" * 15])
def test_port_name_accepts(ok: str) -> None:
    assert v.is_valid_port_name(ok) == []


@pytest.mark.parametrize("bad, fragment", [
    ("HTTP", "only alpha-numeric"),
    ("80", "at least one letter"),
    ("a--b", "consecutive hyphens"),
    ("-a", "begin or end with a hyphen"),
    ("x" * 16, "no more than 15"),
])
def test_port_name_rejects(bad: str, fragment: str) -> None:
    assert any(fragment in e for e in v.is_valid_port_name(bad))


@pytest.mark.parametrize("port, ok", [(1, True), (65535, True), (0, False), (65536, False), (-1, False),
                                      (True, False), ("80", False)])
def test_port_number(port: object, ok: bool) -> None:
    assert (v.is_valid_port_num(port) == []) is ok  # type: ignore[arg-type]


@pytest.mark.parametrize("name, ok", [("PATH", True), ("my.env-name", True), ("_x", True), ("1X", False),
                                      ("A B", False), ("", False)])
def test_env_var_name(name: str, ok: bool) -> None:
    assert (v.is_env_var_name(name) == []) is ok


@pytest.mark.parametrize("key, ok", [("key.name", True), ("KEY_NAME", True), (".env", True), (".", False),
                                     ("..", False), ("..x", False), ("a/b", False), ("", False)])
def test_config_map_key(key: str, ok: bool) -> None:
    assert (v.is_config_map_key(key) == []) is ok
