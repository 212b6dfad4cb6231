"""Turning an overlay upper directory into a layer (the reverse of unpack.py).

The upper dir already is a layer in overlay form, so it is kept as the unpacked
layer directory (no second unpack), and a gzip tar of it — with overlay whiteouts
written back as OCI `.wh.` entries — becomes the layer blob.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO, cast

from images.errors import BuildError
from images.image import Layer
from images.layout import MT_OCI_LAYER_GZIP, Layout
from images.unpack import _KEPT_XATTRS, OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX

_CHUNK = 1 << 20


class _HashingWriter:
    def __init__(self, out: IO[bytes]):
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def is_empty(upper: Path) -> bool:
    return not any(upper.iterdir())


def _entries(root: Path) -> list[Path]:
    """Every path under root, parents before children, in a stable order."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        # os.walk lists symlinks to directories among dirnames; they are entries, not places to descend.
        out.extend(base / name for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]))
        out.extend(base / d for d in dirnames if not (base / d).is_symlink())
    return sorted(out, key=lambda p: p.relative_to(root).parts)


def write_layer(layout: Layout, upper: Path) -> Layer:
    """Tar+gzip `upper` into a blob, then keep `upper` itself as the unpacked layer dir (it is moved)."""
    tmp = layout.temp_path("layer")
    try:
        with open(tmp, "wb") as raw:
            compressed = _HashingWriter(raw)
            with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=1, mtime=0) as gz:  # type: ignore[arg-type]
                uncompressed = _HashingWriter(gz)  # type: ignore[arg-type]
                with tarfile.open(fileobj=cast(IO[bytes], uncompressed), mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    for path in _entries(upper):
                        _add(tf, upper, path)
        digest = "sha256:" + compressed.hash.hexdigest()
        diff_id = "sha256:" + uncompressed.hash.hexdigest()
        layout.adopt_blob_file(tmp, digest)
    finally:
        tmp.unlink(missing_ok=True)
    final = layout.layers / diff_id.split(":", 1)[1]
    if not final.exists():
        _strip_overlay_xattrs(upper)
        try:
            os.rename(upper, final)
        except OSError:
            if not final.exists():
                raise
            # A concurrent build produced the same layer first; its copy is as good as ours.
    if upper.exists():
        shutil.rmtree(upper)
    return Layer(digest, MT_OCI_LAYER_GZIP, compressed.size, diff_id)


def _add(tf: tarfile.TarFile, root: Path, path: Path) -> None:
    rel = path.relative_to(root).as_posix()
    st = os.lstat(path)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0):
        info = tarfile.TarInfo(_sibling(rel, WHITEOUT_PREFIX + path.name))
        info.mtime = int(st.st_mtime)
        tf.addfile(info)
        return
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        raise BuildError(f"the build created {'/' + rel}, a device node or socket, which images may not contain")
    info = tf.gettarinfo(str(path), rel)
    info.uname = info.gname = ""
    xattrs = {}
    for attr in _KEPT_XATTRS:
        try:
            xattrs[f"SCHILY.xattr.{attr}"] = os.getxattr(path, attr, follow_symlinks=False).decode(
                "utf-8", "surrogateescape")
        except OSError:
            pass
    if xattrs:
        info.pax_headers = xattrs
    if info.isreg():
        with open(path, "rb") as f:
            tf.addfile(info, f)
    else:
        tf.addfile(info)
    if info.isdir() and _xattr(path, OPAQUE_XATTR) == b"y":
        marker = tarfile.TarInfo(f"{rel}/{OPAQUE_MARKER}")
        marker.mtime = int(st.st_mtime)
        tf.addfile(marker)


def _sibling(rel: str, name: str) -> str:
    parent = os.path.dirname(rel)
    return f"{parent}/{name}" if parent else name


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _strip_overlay_xattrs(root: Path) -> None:
    """overlayfs leaves bookkeeping xattrs (origin, impure) in the upper dir; only `opaque` means anything
    to a lowerdir, and stale origin handles must not follow the layer into other mounts."""
    for path in [root, *_entries(root)]:
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            continue
        for name in names:
            if name.startswith("trusted.overlay.") and name != OPAQUE_XATTR:
                os.removexattr(path, name, follow_symlinks=False)
