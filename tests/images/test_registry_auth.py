"""Private registries as Docker users know them, against a real docker-registry with htpasswd auth on loopback
(plain http: like Docker, the client treats loopback registries as insecure): `pkctl image login/logout`,
push/pull with the stored credentials, a pull secret's keychain, and registries.yaml mirrors."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from images.auth import Credentials
from images.busybox import BUSYBOX_IMAGE
from images.errors import RegistryError
from images.registry import Registry
from images.store import ImageStore
from tests.images.registry_fixture import RegistryServer, start_registry, stop_registry
from tests.util import unique

pytestmark = pytest.mark.root
USER, PASSWORD = "alice", "s3cret"


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("privreg"), htpasswd=(USER, PASSWORD))
    try:
        yield server
    finally:
        stop_registry(server.proc)


def pkctl(*args: str | Path, stdin: str = "", docker_config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
    return subprocess.run([sys.executable, "-m", "pkctl.main", *map(str, args)], input=stdin, capture_output=True,
                          text=True, timeout=120, env=env)


def test_login_push_pull_logout(busybox_store: ImageStore, store: ImageStore, tmp_path: Path,
                                private_registry: RegistryServer) -> None:
    host = private_registry.host
    docker = tmp_path / "docker"
    docker.mkdir()
    # an existing Docker config keeps its other entries
    (docker / "config.json").write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}},
                                                   "credsStore": ""}))
    name = f"{host}/pkt/{unique('login')}:1"
    busybox_store.save(BUSYBOX_IMAGE, tmp_path / "bb.tar")
    root = tmp_path / "cli-store" / "images"
    r = pkctl("image", "load", "--root", root, tmp_path / "bb.tar", docker_config=docker)  # docker load's FILE
    assert r.returncode == 0 and f"Loaded image: {BUSYBOX_IMAGE}" in r.stdout, r.stderr
    cli_store = ImageStore(root)
    cli_store.tag(BUSYBOX_IMAGE, name)

    r = pkctl("image", "push", "--root", root, name, docker_config=docker)
    assert r.returncode == 1 and "requires authentication" in r.stderr, r.stderr

    r = pkctl("image", "login", "--root", root, host, "-u", USER, "--password-stdin", stdin="wrong\n",
              docker_config=docker)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "incorrect username or password" in r.stderr, \
        r.stderr
    r = pkctl("image", "login", "--root", root, host, "-u", USER, "--password-stdin", stdin=PASSWORD + "\n",
              docker_config=docker)
    assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr
    doc = json.loads((docker / "config.json").read_text())
    assert base64.b64decode(doc["auths"][host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert doc["auths"]["other.example"] == {"auth": "eDp5"} and doc["credsStore"] == ""
    assert (docker / "config.json").stat().st_mode & 0o077 == 0

    r = pkctl("image", "push", "--root", root, name, docker_config=docker)
    assert r.returncode == 0 and "Pushed" in r.stdout, r.stderr
    cli_store.remove(name)
    r = pkctl("image", "pull", "--root", root, name, docker_config=docker)
    assert r.returncode == 0 and f"Pulled {name}" in r.stdout, r.stderr

    r = pkctl("image", "logout", host, docker_config=docker)
    assert r.returncode == 0 and f"Removing login credentials for {host}" in r.stdout
    assert host not in json.loads((docker / "config.json").read_text())["auths"]
    assert "Not logged in" in pkctl("image", "logout", host, docker_config=docker).stdout


def test_pull_with_a_keychain_and_through_a_mirror(busybox_store: ImageStore, store: ImageStore, tmp_path: Path,
                                                   private_registry: RegistryServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    host = private_registry.host
    tag = unique("m")
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {host: {"username": USER,
                                                                                   "password": PASSWORD}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    digest = busybox_store.push(BUSYBOX_IMAGE, f"{host}/library/busybox:{tag}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))

    with pytest.raises(RegistryError, match="requires authentication"):
        store.pull(f"{host}/library/busybox:{tag}")
    pulled = store.pull(f"{host}/library/busybox:{tag}", keychain={host: Credentials(USER, PASSWORD)})
    assert pulled.image.manifest_digest == digest

    # `busybox:<tag>` is docker.io/library/busybox: resolved through the mirror, with its credentials
    mirror_store = ImageStore(tmp_path / "mirrored" / "images")
    mirror_store.registries_config.write_text(f"""mirrors:
  docker.io:
    endpoint:
      - "http://{host}"
configs:
  "{host}":
    auth:
      username: {USER}
      password: {PASSWORD}
""")
    through = mirror_store.pull(f"busybox:{tag}")
    assert through.image.manifest_digest == digest and through.image.name == f"docker.io/library/busybox:{tag}"

    mirror_store.registries_config.write_text("mirrors:\n  docker.io:\n    endpoint: http://x\n")
    with pytest.raises(RegistryError, match=r"registries.yaml: mirrors.docker.io.endpoint: expected a list"):
        mirror_store.pull(f"busybox:{tag}")


def test_tls_registry_with_a_ca_from_registries_yaml(busybox_store: ImageStore, store: ImageStore,
                                                     tmp_path: Path) -> None:
    from tests.support.controlplane import make_test_pki
    pki = make_test_pki(str(tmp_path))   # its kubelet serving certificate is for 127.0.0.1
    server = start_registry(tmp_path / "tlsreg", tls=(pki.cert("kubelet"), pki.key("kubelet")))
    try:
        name = f"{server.host}/pkt/tls:1"
        with pytest.raises(RegistryError, match="answered HTTP 400"):  # plain http to an https registry
            busybox_store.push(BUSYBOX_IMAGE, name)
        for s in (busybox_store, store):
            s.registries_config.write_text(f'configs:\n  "{server.host}":\n    tls: {{ca_file: {pki.ca_cert}}}\n')
        try:
            digest = busybox_store.push(BUSYBOX_IMAGE, name)
            assert store.pull(name).image.manifest_digest == digest
            store.registries_config.write_text(f'configs:\n  "{server.host}":\n    tls: {{insecure_skip_verify: true}}\n')
            store.remove(name)
            assert store.pull(name).image.manifest_digest == digest
            # https without trusting the test CA: the certificate is refused
            with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                Registry(server.host, url=f"https://{server.host}").get_manifest("pkt/tls", "1")
        finally:
            busybox_store.registries_config.unlink()
    finally:
        stop_registry(server.proc)
