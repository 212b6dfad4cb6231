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
