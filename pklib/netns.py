"""Named network namespaces (like `ip netns add/del`), for the kubelet's pods and the image builder's RUN sandboxes.

Network namespaces are per thread. Instead of pyroute2's netns helpers, which fork a child process for each
namespace operation (costly for a big Python process, and the main cost of a sandbox on a loaded node), a
short-lived thread unshares or enters the namespace and talks netlink from inside it.
"""
from __future__ import annotations

import ctypes
import errno
import os
import threading
from typing import Callable, TypeVar

from pyroute2 import IPRoute

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 1 << 20
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def in_thread(fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread (whose namespace changes die with it) and return its result or raise."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    t = threading.Thread(target=run, name="namespaces")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")  # type: ignore[return-value]


def _ensure_netns_dir() -> None:
    """/run/netns as a shared mount (as iproute2 makes it), so namespaces mounted there show in every mount ns."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    if _libc.mount(b"none", NETNS_DIR.encode(), None, MS_SHARED | MS_REC, None) != 0:
        if ctypes.get_errno() != errno.EINVAL:  # EINVAL: not a mount point yet
            _check(-1, f"make {NETNS_DIR} shared")
        _check(_libc.mount(NETNS_DIR.encode(), NETNS_DIR.encode(), b"none", MS_BIND | MS_REC, None),
               f"bind {NETNS_DIR}")
        _check(_libc.mount(b"none", NETNS_DIR.encode(), None, MS_SHARED | MS_REC, None), f"make {NETNS_DIR} shared")


def create_netns(name: str) -> str:
    """A new named network namespace (like `ip netns add`); FileExistsError if the name is taken."""
    _ensure_netns_dir()
    path = netns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))

    def make() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None), f"mount {path}")

    try:
        in_thread(make)
    except BaseException:
        os.unlink(path)
        raise
    return path


def remove_netns(name: str) -> None:
    """Unmount and delete (idempotent); the kernel frees the namespace when its last user is gone."""
    path = netns_path(name)
    if _libc.umount2(path.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        _check(-1, f"umount {path}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """Call fn in a fresh thread that entered the network namespace at `path`; what fn creates there (a
    netlink or TCP socket) stays in that namespace after the thread is gone."""
    def run() -> T:
        fd = os.open(path, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"enter network namespace {path}")
        finally:
            os.close(fd)
        return fn()
    return in_thread(run)


def inside(name: str, fn: Callable[[IPRoute], T]) -> T:
    """Call fn with a netlink socket opened inside the named namespace."""
    def run() -> T:
        with IPRoute() as ipr:
            return fn(ipr)
    return in_netns(netns_path(name), run)


def list_netns(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []
