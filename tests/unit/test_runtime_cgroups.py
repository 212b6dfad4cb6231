"""Parsing /proc/<pid>/cgroup and never treating a foreign cgroup as the container's."""
from __future__ import annotations

from kubelet.runtime.cgroups import UNIFIED, owned, parse_proc_cgroup


def test_parse_hybrid_layout() -> None:
    text = "9:name=systemd:/\n4:memory:/process_api/x/pkube/podu/c1\n2:cpu,cpuacct:/pkube/podu/c1\n0::/\n"
    assert parse_proc_cgroup(text) == {"systemd": "/", "memory": "/process_api/x/pkube/podu/c1",
                                       "cpu": "/pkube/podu/c1", "cpuacct": "/pkube/podu/c1", UNIFIED: "/"}


def test_owned_keeps_only_the_container_directories() -> None:
    dirs = {"memory": "/sys/fs/cgroup/memory/x/pkube/podu/c1", "cpu": "/sys/fs/cgroup/cpu/pkube/podu/c1",
            UNIFIED: "/sys/fs/cgroup/unified", "systemd": "/sys/fs/cgroup/systemd/pkube/podu/c10"}
    assert owned(dirs, "pkube/podu/c1") == {"memory": "/sys/fs/cgroup/memory/x/pkube/podu/c1",
                                            "cpu": "/sys/fs/cgroup/cpu/pkube/podu/c1"}
