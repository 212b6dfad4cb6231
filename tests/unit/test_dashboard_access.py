"""The dashboard's access rules (dashboard/app.py, dashboard/main.py): the one-time login, Origins, loopback."""
from __future__ import annotations

import pytest

from dashboard.app import LOGIN_TTL, Access
from dashboard.main import host_names, is_loopback


def test_login_token_works_once_and_only_itself() -> None:
    access = Access()
    token = access.login_token
    assert token and len(token) >= 32
    assert access.login("") is None and access.login(token + "x") is None
    session = access.login(token)
    assert session and session in access.sessions and session != token
    assert access.login(token) is None  # used up
    assert access.sessions == {session}


def test_login_link_expires_unused() -> None:
    now = [1000.0]
    access = Access(clock=lambda: now[0])
    token = access.login_token
    assert token
    now[0] += LOGIN_TTL + 1
    assert access.login(token) is None and access.login_token is None  # too late, and gone
    in_time = Access(clock=lambda: now[0])
    now[0] += LOGIN_TTL - 1
    assert in_time.login(in_time.login_token or "")


def test_origin_must_name_a_served_host() -> None:
    access = Access(hosts=host_names("127.0.0.1", 8001))
    assert access.origin_ok("http://127.0.0.1:8001") and access.origin_ok("http://localhost:8001")
    for origin in (None, "null", "http://127.0.0.1:8002", "https://127.0.0.1:8001", "http://evil.example"):
        assert not access.origin_ok(origin), origin


@pytest.mark.parametrize("address, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                               ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                               ("example.com", False)])
def test_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_host_names_off_loopback_are_only_that_address() -> None:
    assert host_names("192.168.1.5", 80) == {"192.168.1.5:80"}
    assert host_names("fd00::1", 80) == {"[fd00::1]:80"}
