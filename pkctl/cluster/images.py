"""The nodes' image stores: the bundled busybox imported into them so the examples run offline, and where an
image built or loaded by `pkctl image` / `pkctl compose` must go for the cluster's pods to run it."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

from images.busybox import BUSYBOX_IMAGE, ensure_busybox
from images.store import ImageStore
from pkctl.cluster.home import Home
from pklib.kubeconfig import default_kubeconfig_path


def ensure_bundled(home: Home) -> None:
    """Build busybox into <home>/images unless present."""
    began = time.monotonic()
    try:
        ref = ensure_busybox(ImageStore(home.images))
    except Exception as e:  # noqa: BLE001 — the control plane is still useful without the image; say why
        print(f"  ! image {BUSYBOX_IMAGE} could not be built: {e}", flush=True)
        return
    print(f"  ✓ image {ref} ready ({time.monotonic() - began:.1f}s)", flush=True)


def kubeconfig_home(kubeconfig: str | Path | None = None) -> Home | None:
    """The local cluster (`pkctl cluster up`) a kubeconfig belongs to: its home holds both; None for another's.
    No kubeconfig given: $KUBECONFIG, then <pkube home>/kubeconfig, ... as every command connects."""
    path = Path(kubeconfig) if kubeconfig else default_kubeconfig_path()
    if path is None:
        return None
    home = Home(path.expanduser().resolve().parent)
    return home if home.exists() and home.kubeconfig.resolve() == path.expanduser().resolve() else None


def node_image_stores(home: Home) -> dict[Path, list[str]]:
    """Each distinct image store of the home's nodes -> the nodes reading it, the first node's store first."""
    out: dict[Path, list[str]] = {}
    for node, root in home.node_image_roots(home.load_config()).items():
        out.setdefault(root.resolve(), []).append(node)
    return out


def cluster_image_roots(kubeconfig: str | Path | None = None) -> list[Path] | None:
    """The distinct image stores of the nodes of the local cluster the kubeconfig belongs to (the first node's
    first), None when it is not a local cluster's. Raises HomeError for a home whose config is unreadable."""
    home = kubeconfig_home(kubeconfig)
    return list(node_image_stores(home)) if home is not None else None


def copy_images(refs: list[str], source: ImageStore, roots: list[Path],
                progress: Callable[[str], None] = lambda _: None) -> None:
    """Put the images of `source` into the stores at `roots` that lack them (each node of a cluster that has its
    own store)."""
    def lacks(root: Path) -> bool:
        store = ImageStore(root)
        return any((have := store.resolve(ref)) is None or have.id != source.get(ref).id for ref in refs)
    others = [r for r in roots if r.resolve() != source.root.resolve() and lacks(r)]
    if not others or not refs:
        return
    with tempfile.TemporaryDirectory(dir=source.layout.tmp, prefix="copy-") as d:
        tar = Path(d) / "images.tar"
        source.save(refs, tar)
        for root in others:
            ImageStore(root).load(tar)
            progress(f"{', '.join(refs)} copied to {root}")
