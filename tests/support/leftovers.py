"""What a runtime left on the machine: used by the fixtures and the teardown test."""
from __future__ import annotations

import os
import subprocess

from kubelet.network.netns import list_netns
from kubelet.runtime.runc import RuncRuntime


def _links(prefix: str) -> list[str]:
    return [name for name in os.listdir("/sys/class/net") if name.startswith(prefix)]


def _cgroup_dirs(name: str) -> list[str]:
    out = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d == name:
                out.append(os.path.join(root, d))
    return out


def processes_mentioning(marker: str) -> list[str]:
    """PIDs of processes whose command line mentions `marker` (conmon monitors name their bundle)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    out.append(pid)
        except OSError:
            continue  # exited meanwhile
    return out


async def leftovers(rt: RuncRuntime, node_too: bool = True,
                    mount_markers: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """`mount_markers`: further strings (image store root, container ids) no mount may mention."""
    cfg = rt.config
    markers = (str(cfg.state_dir), *mount_markers)
    found = {
        "netns": list_netns(cfg.netns_prefix),
        "veth": _links(cfg.veth_prefix),
        "ip allocations": list(rt.network.ipam.allocations()),
        "runc containers": list(await rt.runc.list_states()),
        "mounts": [line.split()[1] for line in open("/proc/mounts") if any(m in line for m in markers)],
        "processes": processes_mentioning(str(cfg.state_dir)),
        "cgroups": [d for d in _cgroup_dirs(cfg.cgroup_parent)
                    if node_too or any(e.is_dir() for e in os.scandir(d))],
    }
    if node_too:
        found["bridge"] = _links(cfg.bridge)
        nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        found["nft"] = [t for t in nft.split() if t == cfg.nat_table]
    return {k: v for k, v in found.items() if v}
