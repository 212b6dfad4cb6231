"""Container root filesystems: overlay mounts over unpacked layers, with real mounts and runc."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from images import buildrun
from images.busybox import BUSYBOX_IMAGE
from images.errors import ImageError, ImageNotFound
from images.store import ImageStore
from tests.images.layers import make_image
from tests.util import unique

pytestmark = pytest.mark.root


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def test_busybox_image_runs_its_shell_in_runc(busybox_store: ImageStore, tmp_path: Path) -> None:
    cfg = busybox_store.config(BUSYBOX_IMAGE)["config"]
    assert cfg["Cmd"] == ["sh"]
    cid = unique()
    root = busybox_store.prepare_rootfs("pkube.local/busybox", cid)
    try:
        assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
        assert "nobody:x:65534:65534" in (root / "etc" / "passwd").read_text()
        assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
        assert (root / "var" / "www").is_dir()
        lines: list[str] = []
        buildrun.run(tmp_path / "bundle", root, ["/bin/sh", "-c", "echo hello from $(id -u nobody); ls /bin | wc -l"],
                     buildrun.environment({}), "/", "nobody", lines.append)
        assert lines[0] == "hello from 65534"
        assert int(lines[1]) > 200  # the applet links
    finally:
        busybox_store.release_rootfs(cid)
    assert not _mounted(root)
    assert not root.parent.exists()


def test_two_containers_of_one_image_are_isolated(busybox_store: ImageStore) -> None:
    a, b = unique(), unique()
    root_a = busybox_store.prepare_rootfs(BUSYBOX_IMAGE, a)
    try:
        root_b = busybox_store.prepare_rootfs(BUSYBOX_IMAGE, b)
        try:
            (root_a / "tmp" / "mine").write_text("a")
            (root_a / "bin" / "ls").unlink()
            (root_a / "etc" / "passwd").write_text("changed\n")
            assert not (root_b / "tmp" / "mine").exists()
            assert os.path.lexists(root_b / "bin" / "ls")
            assert "root:x:0:0" in (root_b / "etc" / "passwd").read_text()
            # The shared, unpacked layers are untouched: a third container sees the pristine image.
            c = unique()
            root_c = busybox_store.prepare_rootfs(BUSYBOX_IMAGE, c)
            try:
                assert os.path.lexists(root_c / "bin" / "ls")
                assert "root:x:0:0" in (root_c / "etc" / "passwd").read_text()
            finally:
                busybox_store.release_rootfs(c)
        finally:
            busybox_store.release_rootfs(b)
    finally:
        busybox_store.release_rootfs(a)
    assert not _mounted(root_a) and not _mounted(root_b)


def test_prepare_rootfs_is_idempotent_and_release_twice_is_harmless(busybox_store: ImageStore) -> None:
    cid = unique()
    first = busybox_store.prepare_rootfs(BUSYBOX_IMAGE, cid)
    try:
        (first / "tmp" / "state").write_text("kept")
        again = busybox_store.prepare_rootfs(BUSYBOX_IMAGE, cid)
        assert again == first
        assert (again / "tmp" / "state").read_text() == "kept"
    finally:
        busybox_store.release_rootfs(cid)
    busybox_store.release_rootfs(cid)
    assert not _mounted(first)


def test_whiteouts_and_opaque_dirs_hide_lower_files(store: ImageStore) -> None:
    make_image(store, "pkube.local/wh:1", [
        [("a", "dir", ""), ("a/gone", "file", "x"), ("a/kept", "file", "k"),
         ("d", "dir", ""), ("d/old", "file", "o"), ("d/sub", "dir", ""), ("d/sub/deep", "file", "o")],
        [("a/.wh.gone", "file", ""), ("d", "dir", ""), ("d/.wh..wh..opq", "file", ""), ("d/new", "file", "n")],
    ])
    cid = unique()
    root = store.prepare_rootfs("pkube.local/wh:1", cid)
    try:
        assert sorted(os.listdir(root / "a")) == ["kept"]
        assert sorted(os.listdir(root / "d")) == ["new"]
        assert (root / "d" / "new").read_text() == "n"
    finally:
        store.release_rootfs(cid)


def test_errors_are_clear(store: ImageStore) -> None:
    with pytest.raises(ImageNotFound, match="'nosuch:1' not found"):
        store.prepare_rootfs("nosuch:1", unique())
    make_image(store, "pkube.local/x:1", [[("f", "file", "x")]])
    with pytest.raises(ImageError, match="invalid container id"):
        store.prepare_rootfs("pkube.local/x:1", "../escape")
    assert os.listdir(store.layout.containers) == []



def test_many_layers_fit_one_mount_through_short_links(tmp_path: Path) -> None:
    # 40 full layer paths (~140 characters each here) would overflow the one page of mount options.
    store = ImageStore(tmp_path / "store")
    make_image(store, "pkube.local/tall:1", [[(f"f{i:02d}", "file", str(i))] for i in range(40)])
    cid = unique()
    root = store.prepare_rootfs("pkube.local/tall:1", cid)
    try:
        assert sorted(os.listdir(root)) == [f"f{i:02d}" for i in range(40)]
        assert (root / "f00").read_text() == "0" and (root / "f39").read_text() == "39"
    finally:
        store.release_rootfs(cid)
    assert len(os.listdir(store.layout.links)) == 40
    store.remove("pkube.local/tall:1")
    store.gc()
    assert os.listdir(store.layout.links) == []
