"""The node's image store: names → manifests → configs and layers, plus container rootfs mounts.

`ImageStore` is the interface other parts use (docs/DEVELOPING.md "Image store"). The
heavy lifting lives in sibling modules: archive.py (load/save), registry.py
(pull/push), build.py (Dockerfile builds); this module keeps the names, the layers
and the mounts.
"""
from __future__ import annotations

import builtins
import fcntl
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from pklib.kubeconfig import pkube_home

from images import archive, mirrors, reference, registry, rootfs
from images import build as builder
from images.auth import Keychain
from images.errors import ImageError, ImageNotFound, InvalidReference
from images.image import Image, Layer, host_arch, parse_manifest
from images.layout import (MANIFEST_TYPES, MT_OCI_CONFIG, MT_OCI_MANIFEST, NAME_ANNOTATION, TAG_ANNOTATION,
                                   Layout, dumps)
from images.unpack import Limits, unpack_layer

log = logging.getLogger("images")
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_HEX_PREFIX = re.compile(r"(?:sha256:)?([a-f0-9]{4,64})")


def default_root() -> Path:
    return pkube_home() / "images"


class ImageStore:
    def __init__(self, root: Path | str | None = None, limits: Limits = Limits()):
        self.root = Path(root) if root else default_root()
        self.layout = Layout(self.root)
        self.registries_config = self.root.parent / mirrors.FILE_NAME   # <pkube home>/registries.yaml
        self.limits = limits

    # ---- names -------------------------------------------------------------
    def resolve(self, ref: str) -> Image | None:
        """Find an image by name, name@digest, or (a unique prefix of) its image ID."""
        try:
            parsed = reference.parse(ref)
        except InvalidReference:
            parsed = None
        names = self.layout.names()
        if parsed is not None:
            if str(parsed) in names:  # includes repo@<index digest> recorded by a pull of a multi-arch image
                return self._load(str(parsed), names[str(parsed)])
            if parsed.digest:
                for name, desc in names.items():
                    if desc["digest"] == parsed.digest and reference.parse(name).name == parsed.name:
                        return self._load(str(parsed), desc)
        m = _HEX_PREFIX.fullmatch(ref)
        if m:
            found = {img.id: img for img in self.list() if img.id.split(":", 1)[1].startswith(m.group(1))}
            if len(found) > 1:
                raise ImageError(f"image ID prefix {ref!r} is ambiguous")
            if found:
                return next(iter(found.values()))
        if parsed is None:
            reference.parse(ref)  # re-raise the parse error: the name is neither a reference nor an ID
        return None

    def get(self, ref: str) -> Image:
        img = self.resolve(ref)
        if img is None:
            raise ImageNotFound(f"image {ref!r} not found in the local store")
        return img

    def config(self, ref: str) -> dict[str, Any]:
        """The image's full OCI config document; runtime settings are under "config"."""
        return self.get(ref).config

    def list(self) -> builtins.list[Image]:
        images = []
        for name, desc in sorted(self.layout.names().items()):
            try:
                images.append(self._load(name, desc))
            except ImageError as e:  # one damaged entry must not hide the others
                log.warning("image=%s action=list error=%s", name, e)
        return images

    def _load(self, name: str | None, desc: dict[str, Any]) -> Image:
        manifest = self.layout.read_json(desc["digest"])
        config = self.layout.read_json(manifest.get("config", {}).get("digest", ""))
        return parse_manifest(name, desc["digest"], manifest, config)

    def set_name(self, name: str, manifest_digest: str, allow_digest: bool = False) -> str:
        """Point `name` (normalised) at a stored manifest; replaces what the name pointed at before.

        Digest names (repo@sha256:...) are recorded for images pulled by digest.
        """
        ref = reference.parse(name)
        if ref.digest and not allow_digest:
            raise InvalidReference(f"cannot tag with a digest reference {name!r}; use NAME:TAG")
        manifest_bytes = self.layout.read_blob(manifest_digest)
        manifest = self.layout.read_json(manifest_digest)
        desc = {"mediaType": manifest.get("mediaType") or MT_OCI_MANIFEST, "digest": manifest_digest,
                "size": len(manifest_bytes),
                "annotations": {NAME_ANNOTATION: str(ref), TAG_ANNOTATION: ref.tag or ref.digest or reference.DEFAULT_TAG}}
        with self.layout.edit_index() as index:
            index["manifests"] = [d for d in index["manifests"]
                                  if (d.get("annotations") or {}).get(NAME_ANNOTATION) != str(ref)]
            index["manifests"].append(desc)
        return str(ref)

    def tag(self, src: str, dst: str) -> str:
        reference.parse(dst)  # a bad new name is reported before a missing source
        return self.set_name(dst, self.get(src).manifest_digest)

    def remove(self, ref: str, force: bool = False) -> builtins.list[str]:
        """Untag `ref` (or every name of an image ID). Refuses while a container uses the image, unless force."""
        img = self.get(ref)
        names = self.layout.names()
        # A name removes just that name; an image ID or name@digest removes every name of the image.
        try:
            as_name: str | None = str(reference.parse(ref))
        except InvalidReference:
            as_name = None
        targets = [as_name] if as_name in names else [n for n, d in names.items()
                                                        if d["digest"] == img.manifest_digest]
        remaining = [n for n, d in names.items() if d["digest"] == img.manifest_digest and n not in targets]
        if not remaining and not force:
            users = [cid for cid, digest in self._container_images().items() if digest == img.manifest_digest]
            if users:
                raise ImageError(f"image {ref!r} is in use by container {users[0]}; stop it first or force")
        with self.layout.edit_index() as index:
            index["manifests"] = [d for d in index["manifests"]
                                  if (d.get("annotations") or {}).get(NAME_ANNOTATION) not in targets]
        log.info("image=%s action=untag names=%s", ref, ",".join(targets))
        return targets

    # ---- creating images ---------------------------------------------------
    def commit(self, config: dict[str, Any], layers: builtins.list[Layer], name: str | None) -> Image:
        """Write a config + OCI manifest for layers already in the blob store, and name it."""
        config = dict(config)
        config.setdefault("architecture", host_arch())
        config.setdefault("os", "linux")
        config["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
        config_digest = self.layout.put_blob(dumps(config))
        return self.commit_manifest(config_digest, layers, name)

    def commit_manifest(self, config_digest: str, layers: builtins.list[Layer], name: str | None) -> Image:
        """Write an OCI manifest for a stored config (kept byte for byte, so the image ID is preserved)."""
        config_size = self.layout.blob_path(config_digest).stat().st_size
        manifest: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [layer.descriptor() for layer in layers]}
        manifest_digest = self.layout.put_blob(dumps(manifest))
        img = parse_manifest(None, manifest_digest, manifest, self.layout.read_json(config_digest))
        self.layer_dirs(img.layers)  # unpack (and so validate) before the image gets a name
        if name:
            img.name = self.set_name(name, manifest_digest)
        return img

    def store_manifest(self, manifest_bytes: bytes, expected: str | None = None) -> Image:
        """Store a manifest whose config and layer blobs are already present; checks that they are."""
        digest = self.layout.put_blob(manifest_bytes, expected)
        manifest = self.layout.read_json(digest)
        if (manifest.get("mediaType") or MT_OCI_MANIFEST) not in MANIFEST_TYPES:
            raise ImageError(f"manifest {digest} has unsupported media type {manifest.get('mediaType')!r}")
        img = self._load(None, {"digest": digest})
        for layer in img.layers:
            if not self.layout.has_blob(layer.digest):
                raise ImageError(f"layer {layer.digest} of manifest {digest} is missing")
        self.layer_dirs(img.layers)  # unpack (and so validate) before the image gets a name
        return img

    # ---- layers and root filesystems ---------------------------------------
    def layer_dir(self, diff_id: str) -> Path:
        return self.layout.layers / diff_id.split(":", 1)[1]

    def ensure_layer(self, layer: Layer) -> Path:
        """Unpack a layer blob once (temp dir + rename); verifies its diff ID."""
        final = self.layer_dir(layer.diff_id)
        if final.exists():
            return final
        tmp = self.layout.temp_path("unpack")
        diff_id = unpack_layer(self.layout.blob_path(layer.digest), tmp, self.limits)
        if diff_id != layer.diff_id:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ImageError(f"layer {layer.digest}: content has diff ID {diff_id}, the image config says "
                             f"{layer.diff_id}")
        try:
            os.rename(tmp, final)
        except OSError:  # another process unpacked it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.exists():
                raise
        return final

    def layer_dirs(self, layers: builtins.list[Layer]) -> builtins.list[Path]:
        """The unpacked dirs of these layers, top-most first (the order overlay wants)."""
        dirs = [self.ensure_layer(layer) for layer in layers]
        dirs.reverse()
        if not dirs:
            empty = self.layout.layers / "empty"
            empty.mkdir(exist_ok=True)
            dirs = [empty]
        return dirs

    def container_dir(self, container_id: str) -> Path:
        if not _CONTAINER_ID.fullmatch(container_id):
            raise ImageError(f"invalid container id {container_id!r}")
        return self.layout.containers / container_id

    def prepare_rootfs(self, ref: str, container_id: str) -> Path:
        """Mount a fresh writable rootfs for a container (idempotent: an existing mount is returned)."""
        cdir = self.container_dir(container_id)
        merged = cdir / "merged"
        with self.layout.using():
            img = self.get(ref)
            if rootfs.is_mountpoint(merged):
                return merged
            lowers = self.layer_dirs(img.layers)
            for sub in ("upper", "work", "merged"):
                (cdir / sub).mkdir(parents=True, exist_ok=True)
            (cdir / "image").write_text(img.manifest_digest)
            try:
                rootfs.mount_overlay(lowers, cdir / "upper", cdir / "work", merged, self.layout.links)
            except BaseException:
                shutil.rmtree(cdir, ignore_errors=True)
                raise
        return merged

    def release_rootfs(self, container_id: str) -> None:
        """Unmount and delete a container's rootfs (idempotent)."""
        cdir = self.container_dir(container_id)
        if not cdir.exists():
            return
        rootfs.unmount(cdir / "merged")
        shutil.rmtree(cdir)

    def images_in_use(self) -> set[str]:
        """Manifest digests of the images some container (running or not) has its root filesystem from."""
        return set(self._container_images().values())

    def _container_images(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for cdir in self.layout.containers.iterdir():
            try:
                out[cdir.name] = (cdir / "image").read_text().strip()
            except OSError:
                continue
        return out

    # ---- getting images in and out (implemented in sibling modules) --------
    def load(self, tar: Path | str, progress: Callable[[str], None] = lambda _: None) -> builtins.list[Image]:
        return archive.load(self, Path(tar), progress)

    def save(self, refs: str | builtins.list[str], tar: Path | str) -> None:
        archive.save(self, [refs] if isinstance(refs, str) else refs, Path(tar))

    def pull(self, ref: str, keychain: Keychain | None = None, **kwargs: Any) -> "registry.PullResult":
        return registry.pull(self, ref, keychain=keychain, **kwargs)

    def push(self, ref: str, dest: str | None = None, **kwargs: Any) -> str:
        return registry.push(self, ref, dest, **kwargs)

    def build(self, context: Path | str, **kwargs: Any) -> Image:
        return builder.build(self, Path(context), **kwargs)

    # ---- garbage collection ------------------------------------------------
    def gc(self, progress: Callable[[str], None] | None = None) -> dict[str, int]:
        """Delete blobs and unpacked layers no named image or container uses. Returns counts and bytes freed."""
        freed = {"blobs": 0, "layers": 0, "bytes": 0}
        with self.layout.lock("use.lock", fcntl.LOCK_EX):
            live_blobs: set[str] = set()
            live_layers: set[str] = {"empty"}
            manifests = {d["digest"] for d in self.layout.names().values()}
            manifests |= set(self._container_images().values())
            for digest in manifests:
                try:
                    img = self._load(None, {"digest": digest})
                except ImageError:
                    continue
                live_blobs |= {digest, img.config_digest, *(layer.digest for layer in img.layers)}
                live_layers |= {layer.diff_id.split(":", 1)[1] for layer in img.layers}
            for blob in self.layout.blobs.iterdir():
                if f"sha256:{blob.name}" not in live_blobs:
                    freed["bytes"] += blob.stat().st_size
                    blob.unlink()
                    freed["blobs"] += 1
            for layer_dir in self.layout.layers.iterdir():
                if layer_dir.name not in live_layers:
                    shutil.rmtree(layer_dir)
                    freed["layers"] += 1
                    if progress:
                        progress(f"deleted layer {layer_dir.name[:12]}")
            for link in self.layout.links.iterdir():
                if not link.exists():  # its layer is gone
                    link.unlink()
            self._clean_tmp()
            builder.prune_cache(self)
        log.info("action=gc blobs_deleted=%d layers_deleted=%d bytes_freed=%d", freed["blobs"], freed["layers"],
                 freed["bytes"])
        return freed

    def _clean_tmp(self) -> None:
        """Leftovers of interrupted work; nobody else is working (gc holds the use lock exclusively)."""
        for tmp in self.layout.tmp.iterdir():
            if tmp.name.startswith("download-"):
                continue  # partial downloads are kept so a later pull resumes them
            if tmp.is_dir():
                rootfs.unmount(tmp / "rootfs")  # an interrupted build step may have left its mount
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
