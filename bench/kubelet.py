"""Kubelet benchmark: pod startup latency on this machine with the real kubelet (runc, busybox).

Starts etcd, an apiserver, the controller-manager, the scheduler and `pkube kubelet` (the same helpers the
kubelet tests use, with unique bridge/nft/cgroup names in a temp dir), then measures
- single pods created one after the other: create → Running and create → Ready, p50/p99;
- N pods created at once: time until all are Running;
- kubelet RSS with those pods running, and its idle CPU (share of one core) once everything settled.
Prints one JSON document and cleans up. Figures only: nothing here passes or fails on time. Needs root.
`--seccomp both` measures twice, the kubelet restarted in between: with its default (seccomp RuntimeDefault for
every container) and with --no-seccomp-default (Unconfined), each after one warm-up pod; both results in the JSON.

    .venv/bin/python -m bench.kubelet [--singles 20] [--burst 30] [--idle-seconds 10] [--seccomp on|off|both]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from images.busybox import ensure_busybox  # noqa: E402
from images.store import ImageStore  # noqa: E402
from pklib.client import Client  # noqa: E402
from bench.common import cpu_times, report, status_mib  # noqa: E402
from tests.support.controlplane import _stop, start_apiserver, start_etcd  # noqa: E402
from tests.support.node import (BUSYBOX, NAMESPACES, PODS, Node, _start, _wait_node,  # noqa: E402
                                    clean_namespace)


@dataclass
class BenchNode(Node):
    """The test node, its kubelet started with extra flags (--no-seccomp-default)."""
    extra_flags: list[str] = field(default_factory=list)

    def node_flags(self) -> list[str]:
        return super().node_flags() + self.extra_flags


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def body(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                {"name": "c", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}}


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


async def watch_pods(c: Client, ns: str, running: dict[str, float], ready: dict[str, float]) -> None:
    """Record when each pod is first seen Running and Ready (watch events, no polling)."""
    async for ev in c.watch(PODS, ns):
        pod = ev.get("object") or {}
        name = pod.get("metadata", {}).get("name")
        if not name:
            continue
        now = time.perf_counter()
        if pod.get("status", {}).get("phase") == "Running":
            running.setdefault(name, now)
        if _ready(pod):
            ready.setdefault(name, now)


async def wait_until(pred: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.01)


async def measure(node: Node, singles: int, burst: int, idle_seconds: float, warmup: bool = False
                  ) -> dict[str, Any]:
    assert node.kubelet is not None
    async with node.client() as c:
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        running: dict[str, float] = {}
        ready: dict[str, float] = {}
        watcher = asyncio.create_task(watch_pods(c, ns, running, ready))
        await asyncio.sleep(0.2)  # let the watch start before the first create (not a synchronisation)
        to_running, to_ready = [], []
        if warmup:  # a fresh kubelet: its first pod also pays for the kubelet's own warm-up
            await c.create(PODS, body("warmup"), ns)
            await wait_until(lambda: "warmup" in ready, 60)
        for i in range(singles):
            name = f"single-{i}"
            t = time.perf_counter()
            await c.create(PODS, body(name), ns)
            await wait_until(lambda: name in ready, 60)
            to_running.append(running[name] - t)
            to_ready.append(ready[name] - t)
        t = time.perf_counter()
        names = [f"burst-{i}" for i in range(burst)]
        await asyncio.gather(*(c.create(PODS, body(n), ns) for n in names))
        await wait_until(lambda: all(n in running for n in names), 120)
        burst_s = max((running[n] for n in names), default=t) - t
        await wait_until(lambda: all(n in ready for n in names), 60)
        pid = node.kubelet.pid
        rss = status_mib(pid)
        await asyncio.sleep(2)  # let the last status writes and events drain before the idle window
        (own0, kids0), t0 = cpu_times(pid), time.monotonic()
        await asyncio.sleep(idle_seconds)
        (own1, kids1), elapsed = cpu_times(pid), time.monotonic() - t0
        idle_cpu, idle_kids = (own1 - own0) / elapsed, (kids1 - kids0) / elapsed
        watcher.cancel()
        await clean_namespace(c, ns)
    return {
        "single_pod_create_to_running_s": {"p50": pct(to_running, 0.5), "p99": pct(to_running, 0.99),
                                           "n": singles},
        "single_pod_create_to_ready_s": {"p50": pct(to_ready, 0.5), "p99": pct(to_ready, 0.99), "n": singles},
        f"{burst}_pods_at_once_to_all_running_s": round(burst_s, 3),
        f"kubelet_rss_mb_with_{singles + burst}_pods": rss,
        f"kubelet_idle_cpu_percent_of_a_core_with_{singles + burst}_pods": round(idle_cpu * 100, 2),
        "kubelet_children_idle_cpu_percent_of_a_core": round(idle_kids * 100, 2),
        "podman": "not installed" if not shutil.which("podman") else "not measured",
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--singles", type=int, default=20)
    p.add_argument("--burst", type=int, default=30)
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--seccomp", choices=("on", "off", "both"), default="on",
                   help="the kubelet's --seccomp-default: on (its default), off, or both one after the other")
    args = p.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root (runc, network namespaces)"}))
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="pkb-kubelet-"))
    etcd = start_etcd(str(tmp))
    api = start_apiserver(str(tmp), etcd.url)
    cidr = f"10.{random.randint(208, 215)}.{random.randint(0, 255)}.0/24"
    node = BenchNode(api, tmp, f"bench-{uuid.uuid4().hex[:6]}", cidr, uuid.uuid4().hex[:6])
    modes = ["on", "off"] if args.seccomp == "both" else [args.seccomp]
    try:
        node.procs.append(_start(api, tmp, "controller-manager", "--cluster-cidr", cidr, "--node-cidr-mask-size",
                                 "24"))
        node.procs.append(_start(api, tmp, "scheduler"))
        ensure_busybox(ImageStore(tmp / "images"))  # built once up front: not part of any pod's startup
        results: dict[str, Any] = {}
        for mode in modes:
            node.extra_flags = [] if mode == "on" else ["--no-seccomp-default"]
            node.start_kubelet(test_timings=False)
            asyncio.run(_wait_node(node))
            results[mode] = asyncio.run(measure(node, args.singles, args.burst, args.idle_seconds,
                                                warmup=len(modes) > 1))
            sandboxes = node.runtime_config().state_dir / "sandboxes"
            deadline = time.monotonic() + 60
            while any(sandboxes.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.1)  # the kubelet removes the deleted pods; bounded wait before the hard teardown
            if len(modes) > 1 and node.kubelet:
                _stop(node.kubelet)
                node.kubelet = None
        if len(modes) == 1:
            out = {"seccomp_default": modes[0], **results[modes[0]]}
        else:
            out = {f"seccomp_{mode}": r for mode, r in results.items()}
            out["single_pod_create_to_running_p50_s"] = {
                f"seccomp_{m}": r["single_pod_create_to_running_s"]["p50"] for m, r in results.items()}
        report({"benchmark": "kubelet", "cpus": os.cpu_count(), **out})
    finally:
        node.stop_processes()
        _stop(etcd.proc)
        asyncio.run(node.runtime().destroy_node())
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
