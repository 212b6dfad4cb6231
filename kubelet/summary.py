"""The kubelet's Summary API (`GET /stats/summary`, Kubernetes' stats/v1alpha1 shape): node, pods and containers
with cumulative CPU time, the CPU rate in nanocores and the memory working set, read from cgroups and /proc.

The rate (`usageNanoCores`) is the CPU time used between two reads of the same counter divided by the time
between them, as cAdvisor computes it from its samples. The kubelet keeps the previous read of every counter; a
counter read for the first time (a new pod, or the first request) is read again after a short window, so every
answer carries a rate. A read replaces the kept one only when at least MIN_WINDOW has passed, so that callers
polling quickly still get a rate over a meaningful window.
"""
from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timezone
from typing import Any

from kubelet.host import PodHost, PodUsage

MIN_WINDOW = 1.0     # seconds between the two reads a rate is computed from
FIRST_WINDOW = 0.5   # the window of a counter read for the first time


class RateTracker:
    """The previous (time, cumulative ns) of each CPU counter, and the rates from it."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def known(self, key: str) -> bool:
        return key in self._last

    def rate(self, key: str, at: float, total_ns: int) -> int | None:
        prev = self._last.get(key)
        if prev is None or at - prev[0] >= MIN_WINDOW or total_ns < prev[1]:
            self._last[key] = (at, total_ns)
        if prev is None or at <= prev[0] or total_ns < prev[1]:
            return None
        return int((total_ns - prev[1]) / (at - prev[0]))

    def forget_except(self, keys: set[str]) -> None:
        for key in set(self._last) - keys:
            del self._last[key]


def node_cpu_ns() -> int:
    """CPU time the machine spent busy (every state but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]   # user nice system idle iowait irq softirq steal
    return busy * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def node_memory() -> dict[str, int]:
    """availableBytes, usageBytes and workingSetBytes of the machine (usage minus inactive file pages)."""
    info: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            info[name] = int(rest.split()[0]) * 1024
    usage = info["MemTotal"] - info["MemFree"]
    return {"availableBytes": info.get("MemAvailable", info["MemFree"]), "usageBytes": usage,
            "workingSetBytes": max(0, usage - info.get("Inactive(file)", 0))}


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Summarizer:
    def __init__(self, host: PodHost, started: datetime | None = None) -> None:
        self.host = host
        self.rates = RateTracker()
        self.started = started or datetime.now(timezone.utc)

    async def summary(self) -> dict[str, Any]:
        usages, node_ns, at = await self._read()
        if not self.rates.known("node") or any(not self.rates.known(_pod_key(u)) for u in usages):
            self._rates(usages, node_ns, at)   # remember the first reads
            await asyncio.sleep(FIRST_WINDOW)
            usages, node_ns, at = await self._read()
        return self._rates(usages, node_ns, at)

    async def _read(self) -> tuple[list[PodUsage], int, float]:
        usages = await self.host.pod_usage()
        return usages, node_cpu_ns(), time.monotonic()

    def _rates(self, usages: list[PodUsage], node_ns: int, at: float) -> dict[str, Any]:
        seen = {"node"}
        now = _iso(datetime.now(timezone.utc))
        node_cpu: dict[str, Any] = {"time": now, "usageCoreNanoSeconds": node_ns}
        rate = self.rates.rate("node", at, node_ns)
        if rate is not None:
            node_cpu["usageNanoCores"] = rate
        node = {"nodeName": self.host.node_name, "startTime": _iso(self.started), "cpu": node_cpu,
                "memory": {"time": now, **node_memory()}}
        pods = []
        for usage in usages:
            pod, stats, names = usage.pod, usage.stats, usage.container_names
            key = _pod_key(usage)
            seen.add(key)
            stamp = _iso(stats.timestamp)
            containers = []
            for c in stats.containers:
                name = names.get(c.container_id, c.container_id)
                ckey = f"{key}/{name}"
                seen.add(ckey)
                containers.append({"name": name, "startTime": (pod.get("status") or {}).get("startTime", stamp),
                                   "cpu": self._cpu(ckey, stamp, at, c.cpu_usage_ns),
                                   "memory": {"time": stamp, "workingSetBytes": c.memory_working_set_bytes,
                                              "usageBytes": c.memory_usage_bytes}})
            pods.append({
                "podRef": {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"],
                           "uid": pod["metadata"]["uid"]},
                "startTime": (pod.get("status") or {}).get("startTime", stamp),
                "containers": containers,
                "cpu": self._cpu(key, stamp, at, stats.cpu_usage_ns),
                "memory": {"time": stamp, "workingSetBytes": stats.memory_working_set_bytes},
            })
        self.rates.forget_except(seen)
        return {"node": node, "pods": pods}

    def _cpu(self, key: str, stamp: str, at: float, total_ns: int) -> dict[str, Any]:
        cpu: dict[str, Any] = {"time": stamp, "usageCoreNanoSeconds": total_ns}
        rate = self.rates.rate(key, at, total_ns)
        if rate is not None:
            cpu["usageNanoCores"] = rate
        return cpu


def _pod_key(usage: PodUsage) -> str:
    return str(usage.pod["metadata"]["uid"])
