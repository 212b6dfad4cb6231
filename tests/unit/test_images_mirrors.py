"""registries.yaml (k3s's format): mirrors, per-host auth and TLS, and clear errors for a bad file."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from images.auth import Credentials
from images.errors import RegistryError
from images.mirrors import Endpoint, load


def test_mirrors_and_configs(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    path = tmp_path / "registries.yaml"
    path.write_text(f"""mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:5000", "mirror.example.com/v2"]
  "*":
    endpoint: ["https://cache.example.com/"]
configs:
  "127.0.0.1:5000":
    auth: {{username: u, password: p}}
  mirror.example.com:
    auth: {{auth: {base64.b64encode(b"a:b").decode()}}}
    tls: {{ca_file: {ca}, insecure_skip_verify: true}}
""")
    cfg = load(path)
    assert cfg.endpoints("index.docker.io") == [Endpoint("127.0.0.1:5000", "http://127.0.0.1:5000"),
                                                Endpoint("mirror.example.com", "https://mirror.example.com"),
                                                Endpoint("index.docker.io", None)]
    assert cfg.endpoints("quay.io") == [Endpoint("cache.example.com", "https://cache.example.com"),
                                        Endpoint("quay.io", None)]
    assert cfg.host("127.0.0.1:5000").credentials == Credentials("u", "p")
    assert cfg.host("mirror.example.com").credentials == Credentials("a", "b")
    assert cfg.host("mirror.example.com").insecure_skip_verify and cfg.host("other").credentials is None
    assert load(tmp_path / "missing.yaml").endpoints("docker.io") == [Endpoint("docker.io", None)]


@pytest.mark.parametrize("text, error", [
    ("mirrors: [a]", "mirrors: expected a mapping of registry names"),
    ("mirrors:\n  docker.io:\n    endpoint: http://x\n", "mirrors.docker.io.endpoint: expected a list of URLs"),
    ("mirrors:\n  docker.io:\n    endpoint: ['ftp://x']\n", r"mirrors.docker.io.endpoint\[0\]: invalid endpoint"),
    ("configs:\n  r:\n    tls: {ca_file: /nonexistent/ca.pem}\n", "configs.r.tls.ca_file: no such file"),
    ("configs:\n  r:\n    auth: {auth: '!!'}\n", "configs.r.auth.auth: not base64 user:password"),
    ("mirror: {}\n", "mirror: unknown field"),
    ("mirrors: {a: [\n", "invalid YAML"),
])
def test_bad_files_name_the_field(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=error):
        load(path)
