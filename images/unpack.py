"""Safe extraction of layer tarballs.

tarfile's `filter='data'` is not enough here: it clears setuid bits and ownership
(images need both, exactly as archived) and knows nothing about OCI whiteouts. So
each member is checked by hand:

- names must be relative and must not contain `..` (rejected, not clamped: a layer
  that tries is hostile or broken, and the user should know);
- no member may be written *through* a symlink: every parent component is lstat'ed
  and must be a real directory (symlinks themselves may point anywhere — they are
  resolved inside the container later, never by us);
- hardlink targets must be earlier, non-directory members inside the target;
- device nodes are refused; the only devices we create are overlay whiteouts (0/0);
- byte and entry limits stop archive bombs;
- only `security.capability` and `user.*` xattrs are restored (a layer must not be able
  to set `trusted.overlay.*` or `user.overlay.*` and so steer the overlay mount).

In overlay mode `.wh.NAME` becomes a 0/0 character device NAME and `.wh..wh..opq`
marks its directory opaque (`trusted.overlay.opaque=y`), which is the form overlayfs
reads directly from a lowerdir.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

from images.errors import ImageError, UnsafeArchive

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_KEPT_XATTRS = ("security.capability",)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 32 * 1024**3
    max_entries: int = 2_000_000


class _HashingReader(io.RawIOBase):
    """Wraps the decompressed stream so the diff ID is computed while extracting."""

    def __init__(self, src: IO[bytes]):
        self.src = src
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b: "bytearray | memoryview") -> int:  # type: ignore[override]
        data = self.src.read(len(b))
        n = len(data)
        b[:n] = data
        self.hash.update(data)
        return n

    def drain(self) -> str:
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.hash.hexdigest()


def decompressed(raw: IO[bytes]) -> IO[bytes]:
    """Detect gzip/zstd/xz/bzip2 by magic bytes (media types lie more often than magic does)."""
    buf = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, _CHUNK)  # type: ignore[arg-type,type-var]
    head = buf.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=buf, mode="rb")  # type: ignore[return-value]
    if head.startswith(b"\xfd7zXZ"):
        return lzma.LZMAFile(buf)  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(buf)  # type: ignore[return-value]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdDecompressor().stream_reader(buf, read_across_frames=True)  # type: ignore[return-value]
    return buf


def is_compressed(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6).startswith((b"\x1f\x8b", b"\xfd7zXZ", b"BZh", b"\x28\xb5\x2f\xfd"))


def diff_id_of(path: Path) -> str:
    """sha256 of the uncompressed content of a layer blob."""
    with open(path, "rb") as f:
        src = decompressed(f)
        h = hashlib.sha256()
        while chunk := src.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def unpack_layer(blob: Path, target: Path, limits: Limits = Limits()) -> str:
    """Extract a (possibly compressed) layer blob into `target` (created, must not exist).

    Returns the diff ID. On any error `target` is removed, so nothing half-unpacked remains.
    """
    target.mkdir(mode=0o755)
    try:
        with open(blob, "rb") as f:
            reader = _HashingReader(decompressed(f))
            extract(io.BufferedReader(reader, _CHUNK), target, limits, whiteouts=True)  # type: ignore[arg-type]
            return reader.drain()
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def extract(stream: IO[bytes], target: Path, limits: Limits = Limits(), whiteouts: bool = True) -> None:
    """Extract a tar stream into the existing directory `target` (see module doc for the rules)."""
    total = entries = 0
    dir_times: list[tuple[Path, float]] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for m in tf:
                entries += 1
                if entries > limits.max_entries:
                    raise UnsafeArchive(f"archive has more than {limits.max_entries} entries")
                if m.isreg():
                    total += m.size
                    if total > limits.max_bytes:
                        raise UnsafeArchive(f"archive unpacks to more than {limits.max_bytes} bytes")
                _extract_member(tf, m, target, whiteouts, dir_times)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, zstandard.ZstdError) as e:
        raise ImageError(f"corrupt or truncated layer archive: {e}") from None
    # Directory mtimes last: creating their children changed them.
    for path, mtime in reversed(dir_times):
        os.utime(path, (mtime, mtime), follow_symlinks=False)


def member_parts(name: str) -> list[str]:
    if name.startswith("/"):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path")
    if "\x00" in name:
        raise UnsafeArchive(f"archive member {name!r} has a NUL byte in its name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"archive member {name!r} escapes the target directory (..)")
    return parts


def _parent_dir(target: Path, parts: list[str], name: str) -> Path:
    """Walk (creating as needed) the parent directories; refuse to pass through a symlink."""
    cur = target
    for p in parts:
        cur = cur / p
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeArchive(f"archive member {name!r} would be written through the symlink {p!r}")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeArchive(f"archive member {name!r} has a parent {p!r} that is not a directory")
    return cur


def _clear(path: Path, keep_dir: bool) -> bool:
    """Remove what is at path (never following a symlink). Returns True if a directory was kept."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return False


def _extract_member(tf: tarfile.TarFile, m: tarfile.TarInfo, target: Path, whiteouts: bool,
                    dir_times: list[tuple[Path, float]]) -> None:
    parts = member_parts(m.name)
    if not parts:  # the layer's root directory entry
        if m.isdir():
            _apply_meta(target, m)
        return
    parent = _parent_dir(target, parts[:-1], m.name)
    base = parts[-1]
    if whiteouts and base.startswith(WHITEOUT_PREFIX):
        if base == OPAQUE_MARKER:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        hidden = base[len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT_PREFIX):
            raise UnsafeArchive(f"archive member {m.name!r} is a malformed whiteout")
        path = parent / hidden
        _clear(path, keep_dir=False)
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return
    path = parent / base
    if m.isdir():
        if not _clear(path, keep_dir=True):
            os.mkdir(path, 0o700)
        _apply_meta(path, m)
        dir_times.append((path, m.mtime))
        return
    if m.ischr() or m.isblk():
        raise UnsafeArchive(f"archive member {m.name!r} is a device node, which images may not contain")
    _clear(path, keep_dir=False)
    if m.isreg():
        src = tf.extractfile(m)
        assert src is not None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
    elif m.issym():
        os.symlink(m.linkname, path)
    elif m.islnk():
        link_parts = member_parts(m.linkname)
        if not link_parts:
            raise UnsafeArchive(f"archive member {m.name!r} is a hardlink to the target directory itself")
        src_path = _parent_dir(target, link_parts[:-1], m.name) / link_parts[-1]
        try:
            st = os.lstat(src_path)
        except FileNotFoundError:
            raise UnsafeArchive(f"archive member {m.name!r} links to {m.linkname!r}, which is not in the archive") from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeArchive(f"archive member {m.name!r} is a hardlink to a directory")
        os.link(src_path, path, follow_symlinks=False)
        return  # a hardlink shares its target's metadata
    elif m.isfifo():
        os.mkfifo(path)
    else:
        raise UnsafeArchive(f"archive member {m.name!r} has an unsupported type {m.type!r}")
    _apply_meta(path, m)


def _apply_meta(path: Path, m: tarfile.TarInfo) -> None:
    os.lchown(path, m.uid, m.gid)
    if not m.issym():
        # chmod after chown: chown clears setuid/setgid, and we keep exactly what the archive says.
        os.chmod(path, m.mode & 0o7777)
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if attr in _KEPT_XATTRS or (attr.startswith("user.") and not attr.startswith("user.overlay.")):
                os.setxattr(path, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
    if not m.isdir():
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
