"""Helpers that make layer tarballs and images by hand, for tests that need exact layer contents."""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from typing import Iterable

from images.image import Image, Layer
from images.layout import MT_OCI_LAYER_GZIP
from images.store import ImageStore

Entry = tuple[str, str, bytes | str]  # (name, kind: file|dir|symlink|hardlink|chr|fifo, content or link target)


def make_tar(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                payload = data if isinstance(data, bytes) else data.encode()
                info.size = len(payload)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tf.addfile(info)
    return buf.getvalue()


def add_layer(store: ImageStore, entries: Iterable[Entry]) -> Layer:
    raw = make_tar(entries)
    blob = gzip.compress(raw, mtime=0)
    digest = store.layout.put_blob(blob)
    return Layer(digest, MT_OCI_LAYER_GZIP, len(blob), "sha256:" + hashlib.sha256(raw).hexdigest())


def make_image(store: ImageStore, name: str, layers: list[list[Entry]], config: dict | None = None) -> Image:
    return store.commit({"config": config or {}}, [add_layer(store, entries) for entries in layers], name)
