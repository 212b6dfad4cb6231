"""Registry credentials (Docker's config.json) and the WWW-Authenticate challenge format."""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import orjson

from images.errors import RegistryError

_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str                  # "bearer" or "basic"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """Parse `Bearer realm="...",service="...",scope="..."` (or `Basic realm=...`)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


Keychain = Mapping[str, Credentials]   # registry host (docker.io for Docker Hub) -> credentials


def registry_key(key: str) -> str:
    """The registry a config.json `auths` key names: `https://index.docker.io/v1/` -> docker.io, `http://h:5000` -> h:5000."""
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB_KEYS else host


def parse_auths(doc: Any, source: str, only: str | None = None) -> dict[str, Credentials]:
    """The credentials of a Docker config.json (`{"auths": {...}}`, also a pull secret's .dockerconfigjson)
    or of the legacy .dockercfg (the `auths` map alone); `only`: just that registry's (others are not checked)."""
    if not isinstance(doc, dict):
        raise RegistryError(f"{source}: not a JSON object")
    auths = doc.get("auths") if "auths" in doc else doc
    out: dict[str, Credentials] = {}
    for key, entry in (auths or {}).items():
        if not isinstance(entry, dict) or (only is not None and registry_key(key) != only):
            continue
        creds: Credentials | None = None
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if not sep:
                raise RegistryError(f"{source}: the auth entry for {key} is not base64 user:password")
            creds = Credentials(user, password)
        elif entry.get("username"):
            creds = Credentials(entry["username"], entry.get("password", ""))
        if creds is not None:
            out.setdefault(registry_key(key), creds)
    return out


def read_docker_config(path: Path | None = None) -> dict[str, Any]:
    path = path or docker_config_path()
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as e:
        raise RegistryError(f"cannot read registry credentials from {path}: {e}") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"cannot read registry credentials from {path}: not a JSON object")
    return doc


def credentials_for(registry: str, path: Path | None = None) -> Credentials | None:
    """Look up `auths` in a Docker config.json (auth = base64 user:password, or username/password)."""
    path = path or docker_config_path()
    key = registry_key(registry)
    return parse_auths(read_docker_config(path), str(path), key).get(key)


def _write_docker_config(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)


def _auths_key(registry: str) -> str:
    return "https://index.docker.io/v1/" if registry_key(registry) == "docker.io" else registry_key(registry)


def save_login(registry: str, creds: Credentials, path: Path | None = None) -> Path:
    """Store credentials as `docker login` does (auths.<registry>.auth, base64 user:password); other keys kept."""
    path = path or docker_config_path()
    doc = read_docker_config(path)
    auths = doc.setdefault("auths", {})
    for key in [k for k in auths if registry_key(k) == registry_key(registry)]:
        del auths[key]
    auths[_auths_key(registry)] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
    _write_docker_config(path, doc)
    return path


def remove_login(registry: str, path: Path | None = None) -> bool:
    """Forget the credentials of a registry; False when there were none."""
    path = path or docker_config_path()
    doc = read_docker_config(path)
    auths = doc.get("auths") or {}
    keys = [k for k in auths if registry_key(k) == registry_key(registry)]
    for key in keys:
        del auths[key]
    if keys:
        _write_docker_config(path, doc)
    return bool(keys)
