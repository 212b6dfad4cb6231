"""Path resolution inside an image rootfs, as a chroot would do it (no mounts needed)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from images.context import makedirs_in_root, resolve_in_root
from images.errors import BuildError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr/lib").mkdir(parents=True)
    (r / "etc").mkdir()
    os.symlink("/usr/lib", r / "lib")            # absolute: relative to the rootfs, not the host
    os.symlink("../../..", r / "usr/lib/up")     # climbs past the root: clamped
    os.symlink("/etc", r / "etc-abs")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    return r


def test_symlinks_resolve_inside_the_root(root: Path) -> None:
    assert resolve_in_root(root, "/lib/x.so") == root / "usr/lib/x.so"
    assert resolve_in_root(root, "lib/up/etc") == root / "etc"
    assert resolve_in_root(root, "/../../../etc/passwd") == root / "etc/passwd"
    assert resolve_in_root(root, "/etc-abs") == root / "etc"
    assert resolve_in_root(root, "/etc-abs", follow_last=False) == root / "etc-abs"


def test_symlink_loops_are_an_error(root: Path) -> None:
    with pytest.raises(BuildError, match="too many levels of symbolic links"):
        resolve_in_root(root, "/loop1/x")


def test_makedirs_follows_links_inside_the_root_only(root: Path, tmp_path: Path) -> None:
    made = makedirs_in_root(root, "/lib/new/deeper", os.getuid(), os.getgid())
    assert made == root / "usr/lib/new/deeper" and made.is_dir()
    os.symlink(str(tmp_path / "host-target"), root / "dangling")
    made = makedirs_in_root(root, "/dangling/sub", os.getuid(), os.getgid())
    assert made == root / str(tmp_path / "host-target" / "sub").lstrip("/")
    assert not (tmp_path / "host-target").exists()
    (root / "afile").write_text("x")
    with pytest.raises(BuildError, match="not a directory"):
        makedirs_in_root(root, "/afile/sub")
