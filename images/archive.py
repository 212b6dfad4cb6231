"""Image archives: `docker save`/`podman save` tarballs and OCI image-layout tarballs.

`save` writes one tarball that is both: an OCI layout (oci-layout, index.json,
blobs/sha256/...) and a docker-save manifest.json pointing into the same blobs, so
Docker, Podman, containerd and pkube can all load it. Manifests are copied byte for
byte, so a save → load round trip keeps every digest.
"""
from __future__ import annotations

import io
import os
import tarfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import orjson

from images import reference
from images.errors import ImageError, InvalidReference
from images.image import Image, Layer, host_arch
from images.layout import (INDEX_TYPES, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_LAYER_GZIP, NAME_ANNOTATION,
                                   TAG_ANNOTATION, check_digest)
from images.unpack import diff_id_of, is_compressed

if TYPE_CHECKING:
    from images.store import ImageStore

Progress = Callable[[str], None]


def save(store: "ImageStore", refs: list[str], out: Path) -> None:
    images = [store.get(r) for r in refs]
    tmp = out.with_name(f".{out.name}.partial")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            _add_bytes(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            seen: set[str] = set()
            index: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
            docker: list[dict[str, Any]] = []
            for img in images:
                for digest in (img.manifest_digest, img.config_digest, *(layer.digest for layer in img.layers)):
                    if digest not in seen:
                        seen.add(digest)
                        tf.add(store.layout.blob_path(digest), arcname=_blob_name(digest), recursive=False)
                desc: dict[str, Any] = {"mediaType": img.manifest_media_type, "digest": img.manifest_digest,
                                        "size": store.layout.blob_path(img.manifest_digest).stat().st_size}
                tags: list[str] = []
                if img.name and "@" not in img.name:
                    ref = reference.parse(img.name)
                    desc["annotations"] = {NAME_ANNOTATION: str(ref), TAG_ANNOTATION: ref.tag or "latest"}
                    tags = [f"{ref.familiar_name}:{ref.tag}"]
                index["manifests"].append(desc)
                docker.append({"Config": _blob_name(img.config_digest), "RepoTags": tags,
                               "Layers": [_blob_name(layer.digest) for layer in img.layers]})
            _add_bytes(tf, "index.json", orjson.dumps(index))
            _add_bytes(tf, "manifest.json", orjson.dumps(docker))
        os.replace(tmp, out)
    except OSError as e:
        raise ImageError(f"cannot write {out}: {e.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


def load(store: "ImageStore", path: Path, progress: Progress = lambda _: None) -> list[Image]:
    try:
        tf = tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a directory, not an image archive") from None
    except (tarfile.TarError, OSError):
        raise ImageError(f"{path} is not a tar archive (plain, gzip, bzip2 or xz)") from None
    with tf, store.layout.using():
        try:
            members = {m.name.removeprefix("./"): m for m in tf.getmembers()}
            reader = _ArchiveReader(store, tf, members, path)
            if "index.json" in members:
                return reader.load_oci(progress)
            if "manifest.json" in members:
                return reader.load_docker(progress)
        except (tarfile.TarError, EOFError, zlib.error, KeyError) as e:
            # KeyError: tarfile's way of saying a link member points at nothing in the archive.
            raise ImageError(f"{path} is a corrupt or truncated archive: {e}") from None
        except (AttributeError, TypeError) as e:
            raise ImageError(f"{path}: malformed image metadata ({e})") from None
        raise ImageError(f"{path} is not an image archive: it has neither index.json (OCI) nor manifest.json "
                         "(docker save)")


class _ArchiveReader:
    def __init__(self, store: "ImageStore", tf: tarfile.TarFile, members: dict[str, tarfile.TarInfo], path: Path):
        self.store, self.tf, self.members, self.path = store, tf, members, path

    def _open(self, name: str):  # type: ignore[no-untyped-def]
        member = self.members.get(name.removeprefix("./"))
        f = self.tf.extractfile(member) if member is not None else None
        if f is None:
            raise ImageError(f"{self.path}: the archive lacks {name!r}")
        return f

    def _json(self, name: str) -> Any:
        try:
            return orjson.loads(self._open(name).read())
        except orjson.JSONDecodeError as e:
            raise ImageError(f"{self.path}: {name} is not valid JSON: {e}") from None

    def _blob(self, digest: str, progress: Progress) -> None:
        if not self.store.layout.has_blob(digest):
            progress(f"Copying blob {digest.split(':', 1)[1][:12]}")
            self.store.layout.put_blob_stream(self._open(_blob_name(check_digest(digest))), expected=digest)

    def _docker_names(self) -> dict[str, list[str]]:
        """config blob name → RepoTags, from a docker manifest.json next to index.json (Docker ≥ 25 writes both)."""
        if "manifest.json" not in self.members:
            return {}
        return {e.get("Config", ""): e.get("RepoTags") or [] for e in self._json("manifest.json")}

    def load_oci(self, progress: Progress) -> list[Image]:
        index = self._json("index.json")
        docker_names = self._docker_names()
        loaded = []
        for desc in _platform_manifests(self, index, progress):
            self._blob(desc["digest"], progress)
            manifest = self.store.layout.read_json(desc["digest"])
            self._blob(manifest.get("config", {}).get("digest", ""), progress)
            for layer in manifest.get("layers") or []:
                self._blob(layer.get("digest", ""), progress)
            img = self.store.store_manifest(self.store.layout.read_blob(desc["digest"]), desc["digest"])
            annotations = desc.get("annotations") or {}
            names = [annotations[NAME_ANNOTATION]] if NAME_ANNOTATION in annotations else []
            ref_name = annotations.get(TAG_ANNOTATION, "")
            if not names and ("/" in ref_name or ":" in ref_name):
                names = [ref_name]  # some tools put the full name in ref.name
            names = names or docker_names.get(_blob_name(img.config_digest), [])
            loaded.append(self._name(img, names, progress))
        return loaded

    def load_docker(self, progress: Progress) -> list[Image]:
        entries = self._json("manifest.json")
        if not isinstance(entries, list):
            raise ImageError(f"{self.path}: manifest.json is not a list")
        loaded = []
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("Config") or not isinstance(entry.get("Layers"), list):
                raise ImageError(f"{self.path}: manifest.json entries need Config and Layers")
            config_bytes = self._open(entry["Config"]).read()
            config_digest = self.store.layout.put_blob(config_bytes)
            config = orjson.loads(config_bytes)
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
            if len(diff_ids) != len(entry.get("Layers") or []):
                raise ImageError(f"{self.path}: config lists {len(diff_ids)} layers, manifest.json "
                                 f"{len(entry.get('Layers') or [])}")
            layers = [self._docker_layer(name, expected, progress) for name, expected in zip(entry["Layers"], diff_ids)]
            img = self.store.commit_manifest(config_digest, layers, None)
            loaded.append(self._name(img, entry.get("RepoTags") or [], progress))
        return loaded

    def _docker_layer(self, name: str, expected_diff_id: str, progress: Progress) -> Layer:
        progress(f"Copying blob {expected_diff_id.split(':', 1)[1][:12]}")
        digest, size = self.store.layout.put_blob_stream(self._open(name))
        blob = self.store.layout.blob_path(digest)
        compressed = is_compressed(blob)
        diff_id = diff_id_of(blob) if compressed else digest
        if diff_id != expected_diff_id:
            raise ImageError(f"{self.path}: layer {name} has diff ID {diff_id}, the config says {expected_diff_id}")
        return Layer(digest, MT_OCI_LAYER_GZIP if compressed else MT_OCI_LAYER, size, diff_id)

    def _name(self, img: Image, names: list[str], progress: Progress) -> Image:
        valid = []
        for n in names:
            try:
                valid.append(str(reference.parse(n)))
            except InvalidReference:
                progress(f"ignoring invalid image name {n!r} in the archive")
        if not valid:
            # The store is keyed by names; an unnamed image gets one derived from its ID, as `podman load` does.
            valid = [f"pkube.local/loaded:{img.id.split(':', 1)[1][:12]}"]
        for n in valid:
            img.name = self.store.set_name(n, img.manifest_digest)
            progress(f"Loaded image: {img.name}")
        return img


def _platform_manifests(reader: _ArchiveReader, index: dict[str, Any], progress: Progress) -> list[dict[str, Any]]:
    """Flatten nested indexes; pick the linux/<host arch> entry of each multi-platform index."""
    out = []
    for desc in index.get("manifests") or []:
        if desc.get("mediaType") in INDEX_TYPES:
            reader._blob(desc["digest"], progress)
            child = reader.store.layout.read_json(desc["digest"])
            chosen = select_platform(child.get("manifests") or [])
            if chosen is None:
                raise ImageError(f"{reader.path}: no linux/{host_arch()} image in index {desc['digest']}")
            if desc.get("annotations"):
                chosen = {**chosen, "annotations": desc["annotations"]}
            out.append(chosen)
        else:
            out.append(desc)
    return out


def select_platform(manifests: list[dict[str, Any]]) -> dict[str, Any] | None:
    for m in manifests:
        p = m.get("platform") or {}
        if p.get("os") == "linux" and p.get("architecture") == host_arch():
            return m
    return None


def _blob_name(digest: str) -> str:
    algo, hexdigest = digest.split(":", 1)
    return f"blobs/{algo}/{hexdigest}"


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tf.addfile(info, io.BytesIO(data))
