"""CPU and memory usage of a container and of a pod, from their cgroups (for `pkctl top`)."""
from __future__ import annotations

import os
from datetime import datetime, timezone

from kubelet.runtime import cgroups
from kubelet.runtime.interface import ContainerStats


def container_stats(cid: str, dirs: dict[str, str]) -> ContainerStats:
    usage, working_set = cgroups.memory_usage(dirs)
    return ContainerStats(container_id=cid, timestamp=datetime.now(timezone.utc),
                          cpu_usage_ns=cgroups.cpu_usage_ns(dirs), memory_usage_bytes=usage,
                          memory_working_set_bytes=working_set,
                          cpu_throttled_periods=cgroups.cpu_throttled_periods(dirs))


def pod_dirs(container_dirs: list[dict[str, str]], pod_relative: str) -> dict[str, str]:
    """The pod's parent cgroup: the parent of its containers' cgroups when known, else where this process
    would have runc create it. The parent's counters include every container, exited ones as well."""
    for dirs in container_dirs:
        if dirs:
            return cgroups.owned({c: os.path.dirname(d) for c, d in dirs.items()}, pod_relative)
    return cgroups.owned(cgroups.nested_dirs(pod_relative), pod_relative)
