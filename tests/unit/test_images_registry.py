"""Which scheme and host a registry name maps to (no network: only the constructor runs)."""
from __future__ import annotations

from pathlib import Path

import pytest

from images.registry import Registry


@pytest.mark.parametrize("name, insecure, base", [
    ("docker.io", False, "https://registry-1.docker.io"),
    ("ghcr.io", False, "https://ghcr.io"),
    ("registry.example:5000", False, "https://registry.example:5000"),
    ("registry.example:5000", True, "http://registry.example:5000"),
    ("localhost:5000", False, "http://localhost:5000"),
    ("127.0.0.1:5000", False, "http://127.0.0.1:5000"),
    ("[::1]:5000", False, "http://[::1]:5000"),
    ("10.0.0.1:5000", False, "https://10.0.0.1:5000"),
])
def test_scheme_follows_docker_rules(name: str, insecure: bool, base: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert Registry(name, insecure).base == base


def test_an_unanswered_dns_lookup_fails_within_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import threading
    import time

    from images import registry
    from images.errors import RegistryError

    released = threading.Event()

    def hanging_lookup(*args: object, **kwargs: object) -> list[object]:
        released.wait(30)  # a DNS server that never answers
        raise socket.gaierror(-3, "Temporary failure in name resolution")
    monkeypatch.setattr(registry, "CONNECT_TIMEOUT", 0.3)
    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    began = time.monotonic()
    try:
        with pytest.raises(RegistryError, match="cannot reach registry slow.example at https://slow.example: timed out resolving slow.example"):
            registry.Registry("slow.example").get_manifest("app", "1")
    finally:
        released.set()
    assert time.monotonic() - began < 5
