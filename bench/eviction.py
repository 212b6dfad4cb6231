"""Eviction benchmark: evictions/s through a PodDisruptionBudget vs plain DELETEs, and a contended round.

Starts its own etcd and `pkube apiserver` (the tests' helpers) in a temporary directory, prints one JSON
document, and cleans up. Pods are made Running and Ready through /status (no kubelet), so each eviction
pays for the budget check, the budget's status write, the pod's DisruptionTarget condition and its deletion.
Figures only: nothing here passes or fails on time.

    .venv/bin/python -m bench.eviction [--pods 300] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pklib.client import Client  # noqa: E402
from pklib.errors import ApiError  # noqa: E402
from pklib.resources import NAMESPACES, PODDISRUPTIONBUDGETS, PODS  # noqa: E402
from tests.support.controlplane import _stop, start_apiserver, start_etcd  # noqa: E402

POD_SPEC = {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}


async def ready_pods(c: Client, ns: str, count: int) -> list[str]:
    await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> str:
        async with sem:
            pod = await c.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                        "metadata": {"name": f"p-{i:05d}", "labels": {"app": "b"}},
                                        "spec": {**POD_SPEC, "nodeName": "bench-node"}}, ns)
            pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
            await c.update_status(PODS, pod)
            return str(pod["metadata"]["name"])
    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def budget(c: Client, ns: str, allowed: int, healthy: int) -> None:
    pdb = await c.create(PODDISRUPTIONBUDGETS, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                                                "metadata": {"name": "b"},
                                                "spec": {"maxUnavailable": allowed,
                                                         "selector": {"matchLabels": {"app": "b"}}}}, ns)
    pdb["status"] = {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": healthy,
                     "desiredHealthy": healthy - allowed, "expectedPods": healthy}
    await c.update_status(PODDISRUPTIONBUDGETS, pdb)


async def timed(names: list[str], concurrency: int, call: Callable[[str], Awaitable[Any]]) -> dict[str, Any]:
    latencies: list[float] = []
    refused = 0
    queue = iter(names)

    async def worker() -> None:
        nonlocal refused
        for name in queue:
            t = time.perf_counter()
            try:
                await call(name)
            except ApiError as e:
                if e.code != 429:
                    raise
                refused += 1
            latencies.append(time.perf_counter() - t)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"requests": len(names), "refused_429": refused, "seconds": round(seconds, 3),
            "per_s": round(len(names) / seconds), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2)}


async def bench(url: str, token: str, pods: int, concurrency: int) -> dict[str, Any]:
    async with Client(url, token) as c:
        def evict(ns: str) -> Callable[[str], Awaitable[Any]]:
            return lambda name: c.request("POST", PODS.path(ns, name, "eviction"), body={
                "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name},
                "deleteOptions": {"gracePeriodSeconds": 0}})

        names = await ready_pods(c, "bench-delete", pods)
        deletes = await timed(names, concurrency,
                              lambda name: c.delete(PODS, name, "bench-delete", grace_period_seconds=0))
        names = await ready_pods(c, "bench-evict", pods)
        await budget(c, "bench-evict", pods, pods)
        evictions = await timed(names, concurrency, evict("bench-evict"))
        # Contended: every pod asked for at once, the budget allows one.
        names = await ready_pods(c, "bench-contended", concurrency)
        await budget(c, "bench-contended", 1, concurrency)
        contended = await timed(names, concurrency, evict("bench-contended"))
    return {"pods": pods, "concurrency": concurrency, "delete": deletes, "evict_through_budget": evictions,
            "contended_one_allowed": contended,
            "evict_vs_delete_rate": round(evictions["per_s"] / deletes["per_s"], 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="pkt-bench-")
    etcd = start_etcd(tmp)
    try:
        server = start_apiserver(tmp, etcd.url)
        try:
            result = asyncio.run(bench(server.url, server.token, args.pods, args.concurrency))
        finally:
            _stop(server.proc)
    finally:
        _stop(etcd.proc)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
