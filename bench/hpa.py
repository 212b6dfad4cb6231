"""HPA benchmark: time from load start to the new replicas Ready, on a real node (busybox in runc).

Starts etcd and the kubelet tests' private control plane (apiserver, controller-manager with the HPA controller
at --sync-period, scheduler, `pkube kubelet`; tests/support/node.py). A one-replica Deployment whose pods wait
idle for /tmp/go, then spin (20m requested, held to 50m by a limit: 250% of the request), and an HPA at 50% CPU,
1..N replicas. Once the HPA has valid metrics (ScalingActive True at 1 replica), the benchmark creates /tmp/go in
the pod (exec through the runtime) and measures
- `to_scale_decision_s`: until the Deployment's spec.replicas grows (metrics window + HPA sync period);
- `to_ready_s`: until N replicas are Ready (plus scheduling, sandbox and container start).
The load starts just after a sync (the one that found the first valid metrics), so the decision time is the
worst case of the sync period; Kubernetes' default period is 15 s.
Prints one JSON document and cleans up. Figures only. Needs root.

    .venv/bin/python -m bench.hpa [--sync-period 15] [--max-replicas 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pklib.resources import DEPLOYMENTS, HPAS, PODS  # noqa: E402
from tests.support.controlplane import _stop, start_etcd  # noqa: E402
from tests.support.node import BUSYBOX, Node, exec_in, pod_namespace, private_node  # noqa: E402


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    script = "while [ ! -f /tmp/go ]; do sleep 0.2; done; while :; do :; done"
    container = {"name": "spin", "image": BUSYBOX, "command": ["sh", "-c", script],
                 "resources": {"requests": {"cpu": "20m"}, "limits": {"cpu": "50m"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container], "terminationGracePeriodSeconds": 1}}}}


def hpa(name: str, high: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": 1, "maxReplicas": high, "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}}


async def poll(check: Any, timeout: float, what: str) -> Any:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


async def measure(node: Node, high: int, sync_period: float) -> dict[str, Any]:
    async with node.client() as c:
        async with pod_namespace(c, "bench-hpa") as ns:
            await c.create(DEPLOYMENTS, deployment("load"), ns)

            async def ready(want: int) -> bool:
                d = await c.get(DEPLOYMENTS, "load", ns)
                return bool((d.get("status") or {}).get("readyReplicas") == want and d["spec"]["replicas"] == want)
            await poll(lambda: ready(1), 120, "the first replica Ready")
            await c.create(HPAS, hpa("load", high), ns)

            async def active() -> bool:
                conditions = ((await c.get(HPAS, "load", ns)).get("status") or {}).get("conditions") or []
                return any(x["type"] == "ScalingActive" and x["status"] == "True" for x in conditions)
            await poll(active, 60 + 2 * sync_period, "the HPA's first valid metrics")
            pod = (await c.list(PODS, ns))["items"][0]
            start = time.perf_counter()
            await exec_in(node, pod, "spin", ["touch", "/tmp/go"])

            async def grew() -> bool:
                return bool((await c.get(DEPLOYMENTS, "load", ns))["spec"]["replicas"] > 1)
            await poll(grew, 120 + 2 * sync_period, "a scale-out decision")
            decided = time.perf_counter() - start
            await poll(lambda: ready(high), 180, f"{high} replicas Ready")
            done = time.perf_counter() - start
            return {"to_scale_decision_s": round(decided, 2), "to_ready_s": round(done, 2)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sync-period", type=float, default=15.0, help="the HPA controller's sync period (s)")
    p.add_argument("--max-replicas", type=int, default=3)
    args = p.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root (runc, network namespaces)"}))
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="pkb-hpa-"))
    etcd = start_etcd(str(tmp))
    try:
        flags = ("--horizontal-pod-autoscaler-sync-period", str(args.sync_period))
        with private_node(etcd, controller_flags=flags) as node:
            result = asyncio.run(measure(node, args.max_replicas, args.sync_period))
        print(json.dumps({"benchmark": "hpa", "cpus": os.cpu_count(), "sync_period_s": args.sync_period,
                          "max_replicas": args.max_replicas, **result}, indent=2))
    finally:
        _stop(etcd.proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
