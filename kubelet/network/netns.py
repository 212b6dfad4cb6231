"""A pod's network namespace: named netns under /run/netns, loopback, a veth pair to the node bridge.

The pod end is `eth0` with the pod IP and a default route via the bridge; the host end joins the bridge in
hairpin mode so a pod reaching a Service that is load-balanced back to itself gets the reply.

Network namespaces are per thread. Instead of pyroute2's netns helpers, which fork a child process for each
namespace operation (costly for a big Python process, and the main cost of a sandbox on a loaded node), a
short-lived thread unshares or enters the namespace and talks netlink from inside it.
"""
from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import threading
from typing import Callable, TypeVar

from pyroute2 import IPRoute

from pklib.hostnet import delete_link

from kubelet.network.bridge import ensure_bridge, host_mtu

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


def _in_thread(fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread (whose namespace changes die with it) and return its result or raise."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    t = threading.Thread(target=run, name="netns")
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
        _in_thread(make)
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
    return _in_thread(run)


def inside(name: str, fn: Callable[[IPRoute], T]) -> T:
    """Call fn with a netlink socket opened inside the named namespace."""
    def run() -> T:
        with IPRoute() as ipr:
            return fn(ipr)
    return in_netns(netns_path(name), run)


def setup_pod_network(ns_name: str, host_veth: str, bridge: str, ip: ipaddress.IPv4Interface,
                      gateway: ipaddress.IPv4Interface) -> None:
    """Create and wire the pod's netns. The caller tears down with `teardown_pod_network` on failure."""
    create_netns(ns_name)
    with IPRoute() as ipr:
        br = ensure_bridge(ipr, bridge, gateway)
        mtu = host_mtu(ipr)
        ipr.link("add", ifname=host_veth, kind="veth", mtu=mtu, peer={"ifname": "eth0", "net_ns_fd": ns_name})
        veth = ipr.link_lookup(ifname=host_veth)[0]
        ipr.link("set", index=veth, master=br, state="up")
        ipr.brport("set", index=veth, mode=1)  # IFLA_BRPORT_MODE 1 = hairpin

    def configure(ns: IPRoute) -> None:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        eth0 = ns.link_lookup(ifname="eth0")[0]
        ns.addr("add", index=eth0, address=str(ip.ip), prefixlen=ip.network.prefixlen)
        ns.link("set", index=eth0, state="up", mtu=mtu)
        ns.route("add", dst="0.0.0.0/0", gateway=str(gateway.ip))
    inside(ns_name, configure)


def teardown_pod_network(ns_name: str, host_veth: str) -> None:
    """Delete the veth pair and the netns; each step tolerates a missing object, so this is idempotent."""
    if host_veth:
        delete_link(host_veth)  # deleting one end removes the peer too
    remove_netns(ns_name)


def list_netns(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []
