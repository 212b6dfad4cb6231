"""The bundled busybox image (manifests/images/busybox), built on demand from the host's busybox-static."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from images.build import build
from images.errors import ImageError
from images.store import ImageStore

BUSYBOX_IMAGE = "pkube.local/busybox:latest"
BUSYBOX_BINARY = Path("/bin/busybox")
DOCKERFILE_DIR = Path(__file__).resolve().parents[1] / "manifests" / "images" / "busybox"


def ensure_busybox(store: ImageStore, name: str = BUSYBOX_IMAGE, quiet: bool = True) -> str:
    """Build the busybox image into `store` unless it is already there; returns its normalised name."""
    img = store.resolve(name)
    if img is not None:
        return str(img.name)
    if not BUSYBOX_BINARY.is_file():
        raise ImageError(f"{BUSYBOX_BINARY} is missing: install the busybox-static package")
    # The context is the Dockerfile directory plus the host binary, assembled in the store's tmp dir.
    with tempfile.TemporaryDirectory(dir=store.layout.tmp, prefix="busybox-ctx-") as ctx:
        shutil.copytree(DOCKERFILE_DIR, ctx, dirs_exist_ok=True)
        shutil.copy2(BUSYBOX_BINARY, Path(ctx) / "busybox")
        img = build(store, Path(ctx), tag=name, progress=(lambda _line: None) if quiet else print, network="none")
    return str(img.name)
