"""On-disk layout of the store, in OCI image-layout terms.

    <root>/oci-layout            {"imageLayoutVersion": "1.0.0"}
    <root>/index.json            OCI index: one entry per name, annotated with the full name
    <root>/blobs/sha256/<hex>    manifests, configs and layer blobs, content-addressed
    <root>/layers/<diffid hex>/  each layer unpacked once (overlay form: whiteouts as 0/0 char devices)
    <root>/l/<12 hex>            short symlinks to layers, used when long paths would overflow mount options
    <root>/containers/<id>/      per-container upper/work/merged of the overlay rootfs
    <root>/tmp/                  partial downloads and unpacks; renamed into place when complete

Blobs and layers are written to tmp/ and renamed, so a crash never leaves a half
file under its final name. index.json is rewritten whole (temp + rename) under an
exclusive lock so concurrent writers (kubelet pulling, a user running pkctl) do not
lose each other's names. Long operations hold a shared "use" lock; gc takes it
exclusively so it never deletes the blobs of an image that is still being written.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

import orjson

from images.errors import ImageError

NAME_ANNOTATION = "io.containerd.image.name"
TAG_ANNOTATION = "org.opencontainers.image.ref.name"

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_CHUNK = 1 << 20


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ImageError(f"unsupported or malformed digest {digest!r} (only sha256 is supported)")
    return digest


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(doc: Any) -> bytes:
    """Canonical-enough JSON for documents we create (stable key order, no spaces)."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


class Layout:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.layers = self.root / "layers"
        self.links = self.root / "l"
        self.containers = self.root / "containers"
        self.tmp = self.root / "tmp"
        for d in (self.blobs, self.layers, self.links, self.containers, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            self._atomic_write(marker, b'{"imageLayoutVersion":"1.0.0"}')
        self.index_path = self.root / "index.json"

    # ---- blobs -------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest).split(":", 1)[1]

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the store (run `pkctl image pull` again)") from None

    def read_json(self, digest: str) -> dict[str, Any]:
        doc = orjson.loads(self.read_blob(digest))
        if not isinstance(doc, dict):
            raise ImageError(f"blob {digest} is not a JSON object")
        return doc

    def put_blob(self, data: bytes, expected: str | None = None) -> str:
        digest = sha256_digest(data)
        if expected and digest != expected:
            raise ImageError(f"digest mismatch: expected {expected}, content is {digest}")
        path = self.blob_path(digest)
        if not path.exists():
            self._atomic_write(path, data)
        return digest

    def put_blob_stream(self, src: IO[bytes], expected: str | None = None) -> tuple[str, int]:
        """Copy a stream into the store while hashing it; returns (digest, size)."""
        tmp = self.temp_path("blob")
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = "sha256:" + h.hexdigest()
            if expected and digest != expected:
                raise ImageError(f"digest mismatch: expected {expected}, content is {digest}")
            os.replace(tmp, self.blob_path(digest))
            return digest, size
        finally:
            tmp.unlink(missing_ok=True)

    def adopt_blob_file(self, path: Path, digest: str) -> None:
        """Move an already verified file (in tmp/) into place under its digest."""
        os.replace(path, self.blob_path(digest))

    def temp_path(self, prefix: str) -> Path:
        return self.tmp / f"{prefix}-{uuid.uuid4().hex}"

    # ---- index -------------------------------------------------------------
    def read_index(self) -> dict[str, Any]:
        try:
            doc = orjson.loads(self.index_path.read_bytes())
        except FileNotFoundError:
            doc = {}
        doc.setdefault("schemaVersion", 2)
        doc.setdefault("mediaType", MT_OCI_INDEX)
        doc.setdefault("manifests", [])
        return doc

    @contextlib.contextmanager
    def edit_index(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write index.json under the index lock; written only if the block succeeds."""
        with self.lock("index.lock", fcntl.LOCK_EX):
            doc = self.read_index()
            yield doc
            self._atomic_write(self.index_path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))

    def names(self) -> dict[str, dict[str, Any]]:
        """name -> index descriptor."""
        out: dict[str, dict[str, Any]] = {}
        for d in self.read_index()["manifests"]:
            name = (d.get("annotations") or {}).get(NAME_ANNOTATION)
            if name:
                out[name] = d
        return out

    # ---- locks -------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str, mode: int) -> Iterator[None]:
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def using(self) -> contextlib.AbstractContextManager[None]:
        """Held (shared) by writers of new content; gc holds it exclusively."""
        return self.lock("use.lock", fcntl.LOCK_SH)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
