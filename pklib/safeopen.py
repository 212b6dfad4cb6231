"""Opening a path inside a directory that untrusted code can write to, without ever leaving that directory.

Host code running as root must never follow a link a container (or an image) planted. openat2(2) (Linux 5.6+)
resolves the whole path in the kernel under one rule:
- BENEATH: a symlink is followed only while it stays under the directory; an absolute one, or `..` out of it,
  fails with EXDEV (subPaths of a volume).
- IN_ROOT: the directory acts as `/`: absolute symlinks and `..` resolve inside it, which is what a process
  chrooted there sees (files of an image's root filesystem).
Magic links (/proc/self/fd/...) are never followed. Without openat2, a walk one component at a time with
O_NOFOLLOW refuses every symlink (ELOOP): safe, and stricter.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat

BENEATH = 0x08
IN_ROOT = 0x10
_NO_MAGICLINKS = 0x02
_SYS_OPENAT2 = 437  # the same number on every architecture (allocated after the syscall tables were unified)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_state = {"openat2": True}


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int | None:
    how = _OpenHow(flags, 0, resolve | _NO_MAGICLINKS)
    err = 0
    for _ in range(16):  # EAGAIN: a concurrent rename raced the kernel's `..` check; the man page says retry
        fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(os.fsencode(path)),
                           ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            break
    if err == errno.ENOSYS:
        _state["openat2"] = False
        return None
    raise OSError(err, os.strerror(err), path)


def _walk_nofollow(dir_fd: int, path: str, flags: int) -> int:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EXDEV, "'..' is not allowed here", path)
    fd = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                raise OSError(errno.ELOOP, "symbolic links are not followed on this kernel (no openat2)", path)
            # O_NOFOLLOW: a link swapped in after the check fails with ENOTDIR instead of being followed.
            nxt = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        if not parts:
            return os.open(".", flags, dir_fd=fd)
        last = os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
        if flags & os.O_PATH and stat.S_ISLNK(os.fstat(last).st_mode):
            os.close(last)  # O_PATH|O_NOFOLLOW opens the link itself rather than failing
            raise OSError(errno.ELOOP, "symbolic links are not followed on this kernel (no openat2)", path)
        return last
    finally:
        os.close(fd)


def open_inside(dir_fd: int, path: str, flags: int, resolve: int = BENEATH) -> int:
    """An fd of `path` resolved inside `dir_fd` under `resolve` (BENEATH or IN_ROOT). OSError as open(2) gives
    it; EXDEV or ELOOP when the path leads out of the directory."""
    if resolve == IN_ROOT:
        path = path.lstrip("/") or "."
    if _state["openat2"]:
        fd = _openat2(dir_fd, path, flags | os.O_CLOEXEC, resolve)
        if fd is not None:
            return fd
    return _walk_nofollow(dir_fd, path, flags | os.O_CLOEXEC)
