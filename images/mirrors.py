"""Registry mirrors and per-registry settings: k3s's `registries.yaml`, one per cluster (<pkube home>/registries.yaml,
next to the image store), read by the kubelet and by `pkctl image pull/push`.

    mirrors:
      docker.io:
        endpoint: ["http://127.0.0.1:5000", "https://mirror.example.com"]
      "*":                                  # every registry without a mirror of its own
        endpoint: ["https://cache.example.com"]
    configs:
      "127.0.0.1:5000":                     # a mirror or registry host
        auth: {username: alice, password: secret}      # or auth: <base64 user:password>
        tls: {ca_file: ..., cert_file: ..., key_file: ..., insecure_skip_verify: false}

A pull tries the mirror endpoints in order, then the registry itself (as containerd does).
"""
from __future__ import annotations

import base64
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from images.auth import Credentials, registry_key
from images.errors import RegistryError

FILE_NAME = "registries.yaml"


@dataclass(frozen=True)
class HostConfig:
    credentials: Credentials | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.ca_file or self.cert_file or self.insecure_skip_verify):
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass(frozen=True)
class Endpoint:
    host: str                 # for messages, credentials and configs: 127.0.0.1:5000
    url: str | None           # scheme://host[/prefix], None: the registry's own (https, or http on loopback)


@dataclass
class RegistriesConfig:
    mirrors: dict[str, list[str]] = field(default_factory=dict)
    configs: dict[str, HostConfig] = field(default_factory=dict)

    def endpoints(self, registry: str) -> list[Endpoint]:
        """Where to pull `registry`'s images from: its mirrors in order, then the registry itself."""
        urls = self.mirrors.get(registry_key(registry), self.mirrors.get("*", []))
        out = [Endpoint(registry_key(urllib.parse.urlsplit(u).netloc), u) for u in urls]
        return [*out, Endpoint(registry, None)]

    def host(self, host: str) -> HostConfig:
        return self.configs.get(registry_key(host), HostConfig())


def _error(path: Path, field_path: str, what: str) -> RegistryError:
    return RegistryError(f"{path}: {field_path}: {what}")


def _endpoint_url(path: Path, field_path: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _error(path, field_path, "an endpoint must be a URL string")
    url = value if "://" in value else f"https://{value}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _error(path, field_path, f"invalid endpoint {value!r} (expected http(s)://HOST[:PORT])")
    prefix = parts.path.rstrip("/")
    prefix = prefix[:-3] if prefix.endswith("/v2") else prefix
    return f"{parts.scheme}://{parts.netloc}{prefix}"


def _credentials(path: Path, field_path: str, auth: Any) -> Credentials | None:
    if auth is None:
        return None
    if not isinstance(auth, dict):
        raise _error(path, field_path, "expected a mapping with username/password or auth")
    if auth.get("auth"):
        try:
            user, sep, password = base64.b64decode(str(auth["auth"]), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise _error(path, f"{field_path}.auth", "not base64 user:password")
        return Credentials(user, password)
    if auth.get("username"):
        return Credentials(str(auth["username"]), str(auth.get("password") or ""))
    return None


def parse(doc: Any, path: Path) -> RegistriesConfig:
    if doc is None:
        return RegistriesConfig()
    if not isinstance(doc, dict):
        raise _error(path, "<root>", "expected a mapping with mirrors and configs")
    unknown = set(doc) - {"mirrors", "configs"}
    if unknown:
        raise _error(path, sorted(unknown)[0], "unknown field (expected mirrors, configs)")
    for key in ("mirrors", "configs"):
        if not isinstance(doc.get(key) or {}, dict):
            raise _error(path, key, "expected a mapping of registry names")
    cfg = RegistriesConfig()
    for name, mirror in (doc.get("mirrors") or {}).items():
        endpoints = (mirror or {}).get("endpoint") if isinstance(mirror, dict) else None
        if not isinstance(endpoints, list):
            raise _error(path, f"mirrors.{name}.endpoint", "expected a list of URLs")
        key = "*" if name == "*" else registry_key(str(name))
        cfg.mirrors[key] = [_endpoint_url(path, f"mirrors.{name}.endpoint[{i}]", e) for i, e in enumerate(endpoints)]
    for name, conf in (doc.get("configs") or {}).items():
        if not isinstance(conf, dict):
            raise _error(path, f"configs.{name}", "expected a mapping with auth and/or tls")
        tls = conf.get("tls") or {}
        if not isinstance(tls, dict):
            raise _error(path, f"configs.{name}.tls", "expected a mapping")
        for key in ("ca_file", "cert_file", "key_file"):
            if tls.get(key) and not Path(tls[key]).is_file():
                raise _error(path, f"configs.{name}.tls.{key}", f"no such file {tls[key]}")
        cfg.configs[registry_key(str(name))] = HostConfig(
            _credentials(path, f"configs.{name}.auth", conf.get("auth")), tls.get("ca_file"), tls.get("cert_file"),
            tls.get("key_file"), bool(tls.get("insecure_skip_verify")))
    return cfg


def load(path: Path) -> RegistriesConfig:
    """The file's settings; none when it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return RegistriesConfig()
    except OSError as e:
        raise RegistryError(f"cannot read {path}: {e}") from None
    try:
        return parse(yaml.safe_load(text), path)
    except yaml.YAMLError as e:
        raise RegistryError(f"{path}: invalid YAML: {e}") from None
