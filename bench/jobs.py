"""Job benchmark: a Job of N completions at parallelism P on a real node (busybox `true` in runc).

Starts etcd and the kubelet tests' private control plane (apiserver, controller-manager with the Job
controller, scheduler, `pkube kubelet`; tests/support/node.py), runs a one-pod warm-up Job (the bundled busybox
image is built on first use, which is not what is measured), then creates the Job and measures
- the wall time from create to the Job's Complete condition, and completed pods per second;
- the most pods seen active at once (should not exceed the parallelism);
- the same Job with no container behind it (`controller_only`): its pods name a scheduler nobody runs and the
  benchmark writes each one Succeeded as soon as it appears, so the figure is the Job controller's and the API's
  share of the time, the rest being the node's (pod sandbox, runc, conmon).
Prints one JSON document and cleans up (the node fixture checks nothing is left). Figures only. Needs root.

    .venv/bin/python -m bench.jobs [--completions 100] [--parallelism 10]
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

from pklib.client import Client  # noqa: E402
from pklib.resources import JOBS, PODS  # noqa: E402
from tests.support.batch import condition, finish_pod, job_body  # noqa: E402
from tests.support.controlplane import _stop, start_etcd  # noqa: E402
from tests.support.node import BUSYBOX, Node, pod_namespace, private_node  # noqa: E402


NO_SCHEDULER = "pkb-nobody"


async def run_job(c: Client, ns: str, name: str, completions: int, parallelism: int,
                  timeout: float = 900, scheduler: str | None = None) -> dict[str, Any]:
    body = job_body(name, ["true"], image=BUSYBOX, completions=completions, parallelism=parallelism)
    if scheduler:
        body["spec"]["template"]["spec"]["schedulerName"] = scheduler
    start = time.perf_counter()
    await c.create(JOBS, body, ns)
    max_active = 0
    while True:
        job = await c.get(JOBS, name, ns)
        status = job.get("status") or {}
        max_active = max(max_active, int(status.get("active") or 0))
        if condition(job, "Complete") or condition(job, "Failed"):
            break
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"job {name} did not finish in {timeout}s: {status}")
        await asyncio.sleep(0.1)
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 2), "pods_per_s": round(int(status.get("succeeded") or 0) / wall, 2),
            "succeeded": int(status.get("succeeded") or 0), "failed": int(status.get("failed") or 0),
            "complete": bool(condition(job, "Complete")), "max_active_seen": max_active}


async def finish_unscheduled(c: Client, ns: str) -> None:
    """Stand in for a kubelet that runs nothing: every new pod of the namespace is written Succeeded at once."""
    async for event in c.watch(PODS, ns):
        if event.get("type") == "ADDED":
            await finish_pod(c, event["object"])


async def measure(node: Node, completions: int, parallelism: int) -> dict[str, Any]:
    async with node.client() as c:
        async with pod_namespace(c, "bench-jobs") as ns:
            warmup = await run_job(c, ns, "warmup", 1, 1)
            result = await run_job(c, ns, "bench", completions, parallelism)
        async with pod_namespace(c, "bench-jobs-ctl") as ns:
            finisher = asyncio.create_task(finish_unscheduled(c, ns))
            try:
                controller_only = await run_job(c, ns, "bench", completions, parallelism, scheduler=NO_SCHEDULER)
            finally:
                finisher.cancel()
                await asyncio.gather(finisher, return_exceptions=True)
        return {"warmup_wall_s": warmup["wall_s"], **result,
                "controller_only": {k: controller_only[k] for k in ("wall_s", "pods_per_s", "max_active_seen")}}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--completions", type=int, default=100)
    p.add_argument("--parallelism", type=int, default=10)
    args = p.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root (runc, network namespaces)"}))
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="pkb-jobs-"))
    etcd = start_etcd(str(tmp))
    try:
        with private_node(etcd) as node:
            result = asyncio.run(measure(node, args.completions, args.parallelism))
        print(json.dumps({"benchmark": "jobs", "cpus": os.cpu_count(), "completions": args.completions,
                          "parallelism": args.parallelism, **result}, indent=2))
    finally:
        _stop(etcd.proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
