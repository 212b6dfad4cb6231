"""The image model: a manifest, its config and its layers, as read from the store."""
from __future__ import annotations

import datetime as dt
import platform
from dataclasses import dataclass, field
from typing import Any

from images.errors import ImageError
from images.layout import MANIFEST_TYPES, MT_OCI_MANIFEST, check_digest

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64", "i686": "386"}


def host_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


@dataclass(frozen=True)
class Layer:
    digest: str       # of the blob as stored/transferred (maybe compressed)
    media_type: str
    size: int
    diff_id: str      # of the uncompressed tar; names the unpacked directory

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass
class Image:
    name: str | None
    manifest_digest: str
    manifest_media_type: str
    manifest: dict[str, Any]
    config_digest: str
    config: dict[str, Any]
    layers: list[Layer] = field(default_factory=list)

    @property
    def id(self) -> str:
        """Like Docker's image ID: the digest of the config."""
        return self.config_digest

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def created(self) -> str | None:
        created = self.config.get("created")
        return created if isinstance(created, str) else None


def parse_manifest(name: str | None, digest: str, manifest: dict[str, Any], config: dict[str, Any]) -> Image:
    media_type = manifest.get("mediaType") or MT_OCI_MANIFEST
    if media_type not in MANIFEST_TYPES or manifest.get("schemaVersion") != 2:
        raise ImageError(f"manifest {digest} has unsupported media type {media_type!r}")
    try:
        cfg = manifest.get("config") or {}
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        descs = manifest.get("layers") or []
        if len(diff_ids) != len(descs):
            raise ImageError(f"image {name or digest}: config lists {len(diff_ids)} layers, manifest {len(descs)}")
        layers = [Layer(check_digest(d["digest"]), d.get("mediaType", ""), int(d.get("size", 0)), check_digest(diff))
                  for d, diff in zip(descs, diff_ids)]
        return Image(name, digest, media_type, manifest, check_digest(cfg.get("digest", "")), config, layers)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ImageError(f"image {name or digest}: malformed manifest or config ({type(e).__name__}: {e})") from None


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
