"""What a local cluster needs from the machine, and how to get what is missing."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pkctl.cluster.home import port_free


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str
    package: str | None = None  # Debian package that fixes it, for --install-deps


# executable → Debian package providing it
BINARIES = {"etcd": "etcd-server", "runc": "runc", "conmon": "conmon", "nft": "nftables", "setpriv": "util-linux"}


def check(which: Callable[[str], str | None] = shutil.which, euid: int | None = None,
          filesystems: str | None = None, mounts: str | None = None) -> list[Problem]:
    """Everything missing on this machine. The parameters let tests describe a machine."""
    problems = []
    if (os.geteuid() if euid is None else euid) != 0:
        problems.append(Problem("not running as root (pods need runc, network namespaces, cgroups and mounts)",
                                "run it as root, e.g. `sudo pkctl cluster up`"))
    for binary, package in BINARIES.items():
        if which(binary) is None:
            problems.append(Problem(f"`{binary}` not found on PATH",
                                    f"`./scripts/install-deps.sh`, `apt-get install {package}` "
                                    f"or `pkctl cluster up --install-deps`", package))
    fs = Path("/proc/filesystems").read_text() if filesystems is None else filesystems
    if "overlay" not in fs.split():
        problems.append(Problem("the overlay filesystem is not available (container root filesystems use it)",
                                "`modprobe overlay`"))
    mt = Path("/proc/mounts").read_text() if mounts is None else mounts
    if not any(line.split()[2:3] in (["cgroup"], ["cgroup2"]) for line in mt.splitlines() if line.strip()):
        problems.append(Problem("no cgroup filesystem is mounted (container limits use cgroups)",
                                "mount cgroup2 on /sys/fs/cgroup: `mount -t cgroup2 none /sys/fs/cgroup`"))
    return problems


def busy_ports(ports: dict[str, int], free: Callable[[int], bool] = port_free) -> list[Problem]:
    return [Problem(f"port {port} ({what}) is already in use on 127.0.0.1",
                    "stop what listens there (`ss -ltnp sport = :%d`), or use another `--home`" % port)
            for what, port in ports.items() if not free(port)]


def install(problems: list[Problem]) -> None:
    """apt-get the packages that fix problems; raises CalledProcessError if apt fails."""
    packages = sorted({p.package for p in problems if p.package})
    if not packages:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)
