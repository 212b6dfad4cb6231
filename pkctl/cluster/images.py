"""The bundled busybox image, imported into the node's image store so the examples run offline."""
from __future__ import annotations

import importlib
import importlib.util
import time

from pkctl.cluster.home import Home

BUSYBOX = "pkube.local/busybox:latest"


def _available(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ModuleNotFoundError:
        return False


def ensure_bundled(home: Home) -> None:
    """Build busybox into <home>/images unless present; a note instead when the image store has not landed."""
    # Imported by name: the image store is optional in this build, and `up` must work without it.
    if not _available("kubelet.images.store", "kubelet.images.busybox"):
        print(f"  - {BUSYBOX}: image store not available in this build", flush=True)
        return
    store_mod = importlib.import_module("kubelet.images.store")
    busybox = importlib.import_module("kubelet.images.busybox")
    began = time.monotonic()
    try:
        ref = busybox.ensure_busybox(store_mod.ImageStore(home.images))
    except Exception as e:  # noqa: BLE001 — the control plane is still useful without the image; say why
        print(f"  ! image {BUSYBOX} could not be built: {e}", flush=True)
        return
    print(f"  ✓ image {ref} ready ({time.monotonic() - began:.1f}s)", flush=True)
