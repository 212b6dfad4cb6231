"""The bundled busybox image, imported into the node's image store so the examples run offline."""
from __future__ import annotations

import time

from images.busybox import BUSYBOX_IMAGE, ensure_busybox
from images.store import ImageStore
from pkctl.cluster.home import Home


def ensure_bundled(home: Home) -> None:
    """Build busybox into <home>/images unless present."""
    began = time.monotonic()
    try:
        ref = ensure_busybox(ImageStore(home.images))
    except Exception as e:  # noqa: BLE001 — the control plane is still useful without the image; say why
        print(f"  ! image {BUSYBOX_IMAGE} could not be built: {e}", flush=True)
        return
    print(f"  ✓ image {ref} ready ({time.monotonic() - began:.1f}s)", flush=True)
