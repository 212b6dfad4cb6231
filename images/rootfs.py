"""Overlay mounts for container root filesystems, and reading a file of an image from the host.

mount(2) is called through libc directly: one syscall (~1 ms) instead of forking
mount(8), which is what keeps prepare_rootfs within its 20 ms budget.

`read_in_root` is how the host reads a file of an image (its /etc/passwd, /etc/group): an image is
hostile input, and such a file may be a symlink to the host's /etc/shadow, to /dev/zero, or a FIFO.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

from pklib.safeopen import IN_ROOT, open_inside

from images.errors import ImageError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MNT_DETACH = 2
MAX_IMAGE_FILE = 1 << 20  # /etc/passwd and /etc/group of real images are a few KiB
_MAX_MOUNT_DATA = 4095  # the kernel copies at most one page of mount options


def _escape(path: Path) -> str:
    # overlay splits lowerdir on ':' and the option string on ','; both can be escaped.
    return str(path).replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _options(lowers: list[Path], upper: Path, work: Path) -> str:
    return f"lowerdir={':'.join(_escape(p) for p in lowers)},upperdir={_escape(upper)},workdir={_escape(work)}"


def short_links(lowers: list[Path], link_dir: Path) -> list[Path]:
    """Short symlinks (link_dir/<12 chars>) to the layer dirs, so that many layers fit in one page of
    mount options — the trick Docker's overlay2 driver plays with its l/ directory."""
    link_dir.mkdir(exist_ok=True)
    out = []
    for lower in lowers:
        link = link_dir / lower.name[:12]
        if not link.is_symlink():
            try:
                os.symlink(lower, link)
            except FileExistsError:
                pass  # created concurrently
        if os.readlink(link) != str(lower):
            raise ImageError(f"layer link {link} points to {os.readlink(link)}, not {lower}")
        out.append(link)
    return out


def mount_overlay(lowers: list[Path], upper: Path, work: Path, merged: Path, link_dir: Path | None = None) -> None:
    """Mount an overlay at `merged`; `lowers` are ordered top-most first."""
    if not lowers:
        raise ImageError("an overlay needs at least one lower layer")
    data = _options(lowers, upper, work)
    if len(data) > _MAX_MOUNT_DATA and link_dir is not None:
        data = _options(short_links(lowers, link_dir), upper, work)
    if len(data) > _MAX_MOUNT_DATA:
        raise ImageError(f"image has too many layers ({len(lowers)}) for one overlay mount")
    if _libc.mount(b"overlay", os.fsencode(merged), b"overlay", 0, data.encode()) != 0:
        err = ctypes.get_errno()
        raise ImageError(f"cannot mount overlay at {merged}: {os.strerror(err)}")


def unmount(path: Path) -> None:
    """Unmount; a busy mount is detached lazily so that cleanup always makes progress."""
    if _libc.umount2(os.fsencode(path), 0) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
        return
    if err == errno.EBUSY and _libc.umount2(os.fsencode(path), MNT_DETACH) == 0:
        return
    raise ImageError(f"cannot unmount {path}: {os.strerror(err)}")


def is_mountpoint(path: Path) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def read_in_root(root: Path, path: str, limit: int = MAX_IMAGE_FILE) -> str | None:
    """The text of the regular file `path` of the root filesystem `root`, as a process chrooted there would see it.

    None if it does not exist. Symlinks are followed inside `root` only (an absolute one is relative to it, as
    in the container). Anything but a regular file of at most `limit` bytes raises ImageError, promptly: a FIFO
    is opened non-blocking, a device or a huge file is never read to its end."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_inside(root_fd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, IN_ROOT)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if e.errno == errno.ELOOP:
            raise ImageError(f"the image's {path} is a symlink loop") from None
        raise ImageError(f"cannot read the image's {path}: {e.strerror}") from None
    finally:
        os.close(root_fd)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise ImageError(f"the image's {path} is {kind}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ImageError(f"the image's {path} is larger than {limit} bytes")
    return data.decode(errors="replace")
