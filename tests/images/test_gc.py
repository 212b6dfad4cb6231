"""Removing images and collecting garbage, with containers still using some of it."""
from __future__ import annotations

import os

import pytest

from images.errors import ImageError
from images.store import ImageStore
from tests.images.layers import make_image
from tests.util import unique

pytestmark = pytest.mark.root

BASE = [("etc", "dir", ""), ("etc/os-release", "file", "pkt")]


def _layer_names(store: ImageStore) -> set[str]:
    return set(os.listdir(store.layout.layers)) - {"empty"}


def test_rm_and_gc_keep_shared_layers_and_free_the_rest(store: ImageStore) -> None:
    a = make_image(store, "pkube.local/a:1", [BASE, [("a", "file", "only a")]])
    b = make_image(store, "pkube.local/b:1", [BASE, [("b", "file", "only b")]])
    store.tag("pkube.local/a:1", "pkube.local/a:alias")
    assert store.remove("pkube.local/a:1") == ["pkube.local/a:1"]
    assert store.gc()["blobs"] == 0  # still tagged as a:alias
    store.remove("pkube.local/a:alias")
    freed = store.gc()
    assert freed["layers"] == 1 and freed["blobs"] == 3  # a's top layer, its config and manifest
    assert _layer_names(store) == {layer.diff_id.split(":")[1] for layer in b.layers}
    assert not store.layout.has_blob(a.manifest_digest) and store.layout.has_blob(b.manifest_digest)
    assert [img.name for img in store.list()] == ["pkube.local/b:1"]


def test_image_in_use_by_a_container_is_kept(store: ImageStore) -> None:
    img = make_image(store, "pkube.local/used:1", [BASE])
    cid = unique()
    root = store.prepare_rootfs("pkube.local/used:1", cid)
    try:
        with pytest.raises(ImageError, match=f"in use by container {cid}"):
            store.remove("pkube.local/used:1")
        store.remove("pkube.local/used:1", force=True)
        store.gc()
        assert (root / "etc/os-release").read_text() == "pkt"  # the running container keeps its layers
        assert store.layout.has_blob(img.manifest_digest)
    finally:
        store.release_rootfs(cid)
    assert store.gc()["layers"] == 1
    assert _layer_names(store) == set() and os.listdir(store.layout.blobs) == []


def test_remove_by_image_id_removes_every_name(store: ImageStore) -> None:
    img = make_image(store, "pkube.local/x:1", [BASE])
    store.tag("pkube.local/x:1", "pkube.local/y:2")
    short = img.id.split(":")[1][:12]
    assert sorted(store.remove(short)) == ["pkube.local/x:1", "pkube.local/y:2"]
    assert store.list() == []


def test_gc_clears_leftovers_but_keeps_partial_downloads(store: ImageStore) -> None:
    (store.layout.tmp / "unpack-crashed").mkdir()
    (store.layout.tmp / "unpack-crashed" / "f").write_text("half")
    (store.layout.tmp / "blob-crashed").write_text("half")
    partial = store.layout.tmp / ("download-" + "a" * 64)
    partial.write_text("resume me")
    store.gc()
    assert os.listdir(store.layout.tmp) == [partial.name]
