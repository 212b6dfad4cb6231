"""save/load of image archives, in both the OCI layout and the docker-save format."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from images.busybox import BUSYBOX_IMAGE
from images.errors import ImageError
from images.store import ImageStore
from tests.images.layers import make_image, make_tar
from tests.util import unique

pytestmark = pytest.mark.root


def test_save_then_load_into_another_store_keeps_digests(busybox_store: ImageStore, store: ImageStore,
                                                         tmp_path: Path) -> None:
    original = busybox_store.get(BUSYBOX_IMAGE)
    out = tmp_path / "busybox.tar"
    busybox_store.save(BUSYBOX_IMAGE, out)
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        docker_manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"oci-layout", "index.json", "manifest.json"} <= names
    assert docker_manifest[0]["RepoTags"] == ["pkube.local/busybox:latest"]

    loaded = store.load(out)
    assert [img.name for img in loaded] == ["pkube.local/busybox:latest"]
    again = store.get("pkube.local/busybox")
    assert again.manifest_digest == original.manifest_digest and again.id == original.id
    cid = unique()
    root = store.prepare_rootfs(BUSYBOX_IMAGE, cid)
    try:
        assert os.readlink(root / "bin/sh") == "/bin/busybox"
    finally:
        store.release_rootfs(cid)


def test_load_docker_save_archive(store: ImageStore, tmp_path: Path) -> None:
    """The classic `docker save` layout: <id>/layer.tar (uncompressed) + <config>.json + manifest.json."""
    layer1 = make_tar([("etc", "dir", ""), ("etc/hostname", "file", "box\n")])
    layer2 = make_tar([("etc/.wh.hostname", "file", ""), ("hello", "file", "world")])
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in (layer1, layer2)]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": ["example/app:v1"],
                 "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]
    archive = tmp_path / "docker.tar"
    with tarfile.open(archive, "w") as tf:
        for name, data in ((config_name, config), ("aaa/layer.tar", layer1), ("bbb/layer.tar", gzip.compress(layer2)),
                           ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    [img] = store.load(archive)
    assert img.name == "docker.io/example/app:v1"
    assert img.id == "sha256:" + config_name[:-5]  # the image ID (config digest) is preserved
    assert store.config("example/app:v1")["config"]["Cmd"] == ["/hello"]
    cid = unique()
    root = store.prepare_rootfs("example/app:v1", cid)
    try:
        assert (root / "hello").read_text() == "world"
        assert not (root / "etc/hostname").exists()
    finally:
        store.release_rootfs(cid)


def test_load_rejects_bad_archives_without_naming_anything(store: ImageStore, tmp_path: Path) -> None:
    not_tar = tmp_path / "x.tar"
    not_tar.write_text("hello")
    with pytest.raises(ImageError, match="not a tar archive"):
        store.load(not_tar)
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(ImageError, match="neither index.json"):
        store.load(empty)
    with pytest.raises(ImageError, match="no such file"):
        store.load(tmp_path / "missing.tar")

    # A blob whose content does not match its digest is refused.
    make_image(store, "pkube.local/ok:1", [[("f", "file", "x")]])
    good = tmp_path / "good.tar"
    store.save("pkube.local/ok:1", good)
    layer_digest = store.get("pkube.local/ok:1").layers[0].digest
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(good) as src, tarfile.open(tampered, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.endswith(layer_digest.split(":")[1]):
                data = gzip.compress(make_tar([("f", "file", "evil")]))
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    other = ImageStore(store.root.parent / "other")
    with pytest.raises(ImageError, match="digest mismatch"):
        other.load(tampered)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[:1536])
    with pytest.raises(ImageError, match="corrupt or truncated archive"):
        other.load(truncated)
    assert other.list() == []
