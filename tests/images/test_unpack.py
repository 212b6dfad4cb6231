"""Layer extraction against hostile and unusual archives: real files, real ownership, real device checks."""
from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from images.errors import ImageError, UnsafeArchive
from images.store import ImageStore
from images.unpack import Limits, unpack_layer
from tests.images.layers import make_image, make_tar
from tests.util import unique

pytestmark = pytest.mark.root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the target that a hostile archive would like to write into."""
    d = tmp_path / "outside"
    d.mkdir()
    return d


def _unpack(tmp_path: Path, entries: list, limits: Limits = Limits()) -> Path:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(make_tar(entries))
    target = tmp_path / "target"
    unpack_layer(blob, target, limits)
    return target


@pytest.mark.parametrize("entries, message", [
    ([("../outside/x", "file", "pwned")], r"escapes the target directory"),
    ([("a/../../outside/x", "file", "pwned")], r"escapes the target directory"),
    ([("/outside/x", "file", "pwned")], r"absolute path"),
    ([("evil", "symlink", "{outside}"), ("evil/x", "file", "pwned")], r"written through the symlink 'evil'"),
    ([("evil", "symlink", "../outside"), ("evil/x", "file", "pwned")], r"written through the symlink 'evil'"),
    ([("evil", "symlink", "{outside}"), ("h", "hardlink", "evil/x")], r"written through the symlink"),
    ([("h", "hardlink", "../outside/x")], r"escapes the target"),
    ([("h", "hardlink", "missing")], r"not in the archive"),
    ([("dev/null", "chr", "")], r"device node"),
    ([("a", "file", "x"), ("a/b", "file", "y")], r"not a directory"),
])
def test_hostile_archives_are_rejected_and_leave_nothing(tmp_path: Path, outside: Path, entries: list,
                                                         message: str) -> None:
    (outside / "x").write_text("original")
    entries = [(n, k, d.format(outside=outside) if isinstance(d, str) else d) for n, k, d in entries]
    with pytest.raises(UnsafeArchive, match=message):
        _unpack(tmp_path, entries)
    assert not (tmp_path / "target").exists()  # nothing half-unpacked
    assert sorted(os.listdir(outside)) == ["x"] and (outside / "x").read_text() == "original"


def test_limits_stop_archive_bombs(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="more than 10 bytes"):
        _unpack(tmp_path, [("big", "file", "x" * 11)], Limits(max_bytes=10))
    with pytest.raises(UnsafeArchive, match="more than 3 entries"):
        _unpack(tmp_path, [(f"f{i}", "file", "") for i in range(4)], Limits(max_entries=3))


def test_ownership_modes_and_setuid_are_kept_as_archived(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, mode, uid in (("su", 0o4755, 0), ("plain", 0o640, 1000), ("sticky", 0o1777, 0)):
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid = mode, uid, uid
            if name == "sticky":
                info.type = tarfile.DIRTYPE
            tf.addfile(info, io.BytesIO(b""))
        link = tarfile.TarInfo("abs-link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"  # absolute symlinks are fine: never followed
        tf.addfile(link)
    blob = tmp_path / "l.tar.gz"
    blob.write_bytes(gzip.compress(buf.getvalue()))
    target = tmp_path / "t"
    unpack_layer(blob, target)
    assert stat.S_IMODE(os.stat(target / "su").st_mode) == 0o4755
    st = os.stat(target / "plain")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1000, 1000)
    assert stat.S_IMODE(os.stat(target / "sticky").st_mode) == 0o1777
    assert os.readlink(target / "abs-link") == "/etc/passwd"


def test_corrupt_blob_is_a_clear_error(tmp_path: Path) -> None:
    blob = tmp_path / "bad.tar.gz"
    blob.write_bytes(gzip.compress(make_tar([("f", "file", os.urandom(5000))]))[:3000])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        unpack_layer(blob, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_hostile_image_is_refused_on_import_without_leftovers(store: ImageStore, outside: Path) -> None:
    with pytest.raises(UnsafeArchive):
        make_image(store, "pkube.local/evil:1", [[("evil", "symlink", str(outside)), ("evil/x", "file", "pwned")]])
    assert store.resolve("pkube.local/evil:1") is None
    assert os.listdir(outside) == []
    assert os.listdir(store.layout.layers) == []
    assert os.listdir(store.layout.tmp) == []


def test_zstd_and_xz_layers_unpack(store: ImageStore) -> None:
    import hashlib
    import lzma

    import zstandard

    from images.image import Layer
    raw_z = make_tar([("z.txt", "file", "zstd")])
    raw_x = make_tar([("x.txt", "file", "xz")])
    layers = []
    for raw, blob, media_type in ((raw_z, zstandard.ZstdCompressor().compress(raw_z), "tar+zstd"),
                                  (raw_x, lzma.compress(raw_x), "tar+xz")):
        layers.append(Layer(store.layout.put_blob(blob), f"application/vnd.oci.image.layer.v1.{media_type}",
                            len(blob), "sha256:" + hashlib.sha256(raw).hexdigest()))
    store.commit({"config": {}}, layers, "pkube.local/compressed:1")
    cid = unique()
    root = store.prepare_rootfs("pkube.local/compressed:1", cid)
    try:
        assert (root / "z.txt").read_text() == "zstd" and (root / "x.txt").read_text() == "xz"
    finally:
        store.release_rootfs(cid)
