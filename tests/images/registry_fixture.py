"""A real Docker Distribution registry (Debian docker-registry) on a free loopback port."""
from __future__ import annotations

import shutil
import subprocess
import time
import warnings
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.util import free_port

BINARY = "/usr/bin/docker-registry"


@dataclass
class RegistryServer:
    host: str          # 127.0.0.1:PORT
    storage: Path      # filesystem storage root
    proc: subprocess.Popen[bytes]


def start_registry(tmp: Path, htpasswd: tuple[str, str] | None = None, auth_config: str = "",
                   tls: tuple[Path, Path] | None = None) -> RegistryServer:
    """`tls`: (certificate, key) to serve https with."""
    if not Path(BINARY).exists():
        pytest.fail("docker-registry is not installed: run ./scripts/install-deps.sh")
    port = free_port()
    storage = tmp / "registry-data"
    storage.mkdir(parents=True)
    auth = auth_config
    if htpasswd:
        user, password = htpasswd
        with warnings.catch_warnings():  # crypt is deprecated but the only stdlib bcrypt (htpasswd needs bcrypt)
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # cheap cost: tests only
        (tmp / "htpasswd").write_text(f"{user}:{hashed}\n")
        auth = f"auth:\n  htpasswd:\n    realm: pkt-realm\n    path: {tmp / 'htpasswd'}\n"
    config = tmp / "registry.yml"
    config.write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{f"  tls:{chr(10)}    certificate: {tls[0]}{chr(10)}    key: {tls[1]}{chr(10)}" if tls else ""}{auth}""")
    log = open(tmp / "registry.log", "wb")
    proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(tmp / 'registry.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()  # https: answers 400
            break
        except urllib.error.HTTPError:
            break  # 401 with auth enabled: it is up
        except OSError:
            time.sleep(0.05)
    else:
        stop_registry(proc)
        raise RuntimeError("docker-registry did not come up in 15 s")
    return RegistryServer(f"127.0.0.1:{port}", storage, proc)


def stop_registry(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path / "reg")
    try:
        yield server
    finally:
        stop_registry(server.proc)
        shutil.rmtree(tmp_path / "reg", ignore_errors=True)
