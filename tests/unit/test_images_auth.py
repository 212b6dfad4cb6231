"""Registry auth helpers: WWW-Authenticate parsing and Docker config.json lookup."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from images.auth import credentials_for, parse_challenge
from images.errors import RegistryError


def test_bearer_challenge() -> None:
    c = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                        'scope="repository:library/busybox:pull"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull"}
    assert parse_challenge('Basic realm="r"').scheme == "basic"


def test_credentials_from_docker_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw:with:colons").decode()},
        "localhost:5000": {"username": "u", "password": "p"},
        "bad.example": {"auth": "!!!"},
    }}))
    hub = credentials_for("docker.io", cfg)
    assert hub is not None and (hub.username, hub.password) == ("hub", "pw:with:colons")
    local = credentials_for("localhost:5000", cfg)
    assert local is not None and local.basic_header() == "Basic " + base64.b64encode(b"u:p").decode()
    assert credentials_for("quay.io", cfg) is None
    assert credentials_for("quay.io", tmp_path / "missing.json") is None
    with pytest.raises(RegistryError, match="not base64"):
        credentials_for("bad.example", cfg)
