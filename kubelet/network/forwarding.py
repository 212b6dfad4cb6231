"""`net.ipv4.ip_forward`: turned on by the kubelet (pods reach Services and the uplink through the host),
given back by the node's cleanup (`pkube kubelet --cleanup`, which `pkctl cluster down` runs).

The value from before the first change is recorded per node bridge
(`/run/pkube/kubelet/netns-<inode>/<bridge>.ip_forward`, see pklib/sysctl.py): several local clusters on one
machine each have their own bridge, and the original value comes back only when the last of them is cleaned up
(a bridge that still exists is a node still using forwarding). ip_forward is per network namespace: a worker
node of `cluster up --nodes N` (in its own netns) records and restores its netns' value, not the host's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from pklib.hostnet import link_exists
from pklib.sysctl import RUN_DIR, SharedSysctl

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
STATE_DIR = RUN_DIR / "kubelet"


def setting(sysctl: Path = IP_FORWARD, state_dir: Path = STATE_DIR) -> SharedSysctl:
    """The bookkeeping (its `record(bridge)`, `recorded()` in the caller's netns)."""
    return SharedSysctl(sysctl, state_dir, "ip_forward")


def enable(bridge: str, sysctl: Path = IP_FORWARD, state_dir: Path = STATE_DIR) -> None:
    """Set ip_forward=1, first recording for `bridge`'s node the value the machine had before any pkube node."""
    setting(sysctl, state_dir).enable(bridge)


def restore(bridge: str, sysctl: Path = IP_FORWARD, state_dir: Path = STATE_DIR,
            exists: Callable[[str], bool] = link_exists) -> None:
    """Forget `bridge`'s record; put the original value back when no other recorded node bridge exists."""
    records = setting(sysctl, state_dir)
    records.restore(bridge, lambda: {b for b in records.recorded() if exists(b)})
