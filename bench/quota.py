"""ResourceQuota admission benchmark: pod creates/s in a namespace without a quota, with a LimitRange, and with a
ResourceQuota (each create's revision-checked charge of status.used), at a given concurrency; and a contended
round where many more creates race for the quota's last places than it has (how many get in must equal the
quota).

Starts its own etcd and `pkube apiserver` (the test helpers) in a temporary directory, prints one JSON document,
cleans up. Figures only.

    .venv/bin/python -m bench.quota [--pods 300] [--concurrency 16]
"""
from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import control_plane, parse_flags, report  # noqa: E402
from pklib.client import Client  # noqa: E402
from pklib.errors import ApiError  # noqa: E402
from pklib.resources import LIMITRANGES, NAMESPACES, PODS, RESOURCEQUOTAS  # noqa: E402

CONTAINER = {"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "10m", "memory": "8Mi"},
                                                                  "limits": {"cpu": "10m", "memory": "8Mi"}}}


async def creates(c: Client, ns: str, count: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    refused = 0
    names = iter(range(count))

    async def worker() -> None:
        nonlocal refused
        for i in names:
            t = time.perf_counter()
            try:
                await c.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{i:05d}"},
                                      "spec": {"containers": [CONTAINER]}}, ns)
            except ApiError as e:
                if e.code != 403:
                    raise
                refused += 1
            latencies.append(time.perf_counter() - t)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"creates": count, "refused_403": refused, "seconds": round(seconds, 3),
            "per_s": round(count / seconds), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2)}


async def namespace(c: Client, name: str, *objects: tuple[Any, dict[str, Any]]) -> str:
    await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    for res, body in objects:
        await c.create(res, body, name)
    return name


async def run(url: str, token: str, pods: int, concurrency: int) -> dict[str, Any]:
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
             "spec": {"hard": {"pods": str(pods * 10), "requests.cpu": "1000", "limits.memory": "100Gi"}}}
    limits = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "l"},
              "spec": {"limits": [{"type": "Container", "max": {"cpu": "1", "memory": "1Gi"}}]}}
    async with Client(url, token) as c:
        out: dict[str, Any] = {"pods": pods, "concurrency": concurrency}
        out["no_quota"] = await creates(c, await namespace(c, "plain"), pods, concurrency)
        out["limit_range"] = await creates(c, await namespace(c, "limited", (LIMITRANGES, limits)), pods, concurrency)
        out["resource_quota"] = await creates(c, await namespace(c, "quota", (RESOURCEQUOTAS, quota)), pods,
                                              concurrency)
        used = (await c.get(RESOURCEQUOTAS, "q", "quota"))["status"]["used"]
        out["resource_quota"]["status_used_pods"] = used["pods"]
        small = dict(quota, spec={"hard": {"pods": "50"}})
        contended = await creates(c, await namespace(c, "contended", (RESOURCEQUOTAS, small)), 200, concurrency)
        contended["admitted"] = contended["creates"] - contended["refused_403"]
        contended["quota_pods"] = 50
        out["contended_quota_of_50"] = contended
        return out


def main() -> int:
    args = parse_flags(__doc__, pods=300, concurrency=16)
    with control_plane("pkube-bench-quota-") as cp:
        return report(asyncio.run(run(cp.api.url, cp.api.token, int(args.pods), int(args.concurrency))))


if __name__ == "__main__":
    sys.exit(main())
