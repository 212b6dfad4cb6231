"""Registry auth helpers: WWW-Authenticate parsing and Docker config.json lookup."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from images.auth import (Credentials, credentials_for, parse_auths, parse_challenge, remove_login,
                         save_login)
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


def test_login_keeps_other_entries_and_logout_forgets(tmp_path: Path) -> None:
    cfg = tmp_path / "docker" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"auths": {"quay.io": {"auth": "eDp5"}}, "credHelpers": {}}))
    assert save_login("docker.io", Credentials("hub", "pw"), cfg) == cfg
    save_login("http://127.0.0.1:5000/", Credentials("u", "p"), cfg)
    doc = json.loads(cfg.read_text())
    assert doc["auths"]["https://index.docker.io/v1/"] == {"auth": base64.b64encode(b"hub:pw").decode()}
    assert doc["auths"]["127.0.0.1:5000"] == {"auth": base64.b64encode(b"u:p").decode()}
    assert doc["auths"]["quay.io"] == {"auth": "eDp5"} and doc["credHelpers"] == {}
    assert credentials_for("registry-1.docker.io", cfg) == Credentials("hub", "pw")
    assert remove_login("docker.io", cfg) and not remove_login("docker.io", cfg)
    assert credentials_for("docker.io", cfg) is None and credentials_for("127.0.0.1:5000", cfg) is not None


def test_pull_secret_auths_dockerconfigjson_and_legacy_dockercfg() -> None:
    entry = {"auth": base64.b64encode(b"u:p").decode()}
    assert parse_auths({"auths": {"https://reg.example:5000/v1/": entry}}, "s") == {
        "reg.example:5000": Credentials("u", "p")}
    assert parse_auths({"index.docker.io": {"username": "a", "password": "b"}}, "s") == {
        "docker.io": Credentials("a", "b")}
    with pytest.raises(RegistryError, match="s: not a JSON object"):
        parse_auths([], "s")
