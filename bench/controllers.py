"""Controller-manager benchmark (prints one JSON document; never pass/fail).

    .venv/bin/python -m bench.controllers [--replicas 1000]

Real etcd + apiserver + `pkube controller-manager` processes, no nodes (pods stay
Pending, so this isolates the controllers from scheduling and kubelets). Measures:
- Deployment of REPLICAS: seconds from create until the Deployment reports all
  replicas (Deployment -> ReplicaSet -> pods, status written back), and pods/s;
- scale to half: seconds until the ReplicaSet reports the lower count;
- cascading delete (background): seconds until the garbage collector removed the
  ReplicaSet and every pod;
- peak RSS (VmHWM) and CPU seconds of the controller-manager.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable

from pklib.resources import must_lookup
from pklib.client import Client
from bench.common import control_plane, cpu_times, parse_flags, report, status_mib
from tests.support.controlplane import ROOT, _stop

PODS = must_lookup("pods")
NAMESPACES = must_lookup("namespaces")
DEPLOYMENTS = must_lookup("deployments")
REPLICASETS = must_lookup("replicasets")


def proc_stats(pid: int) -> dict[str, float | None]:
    return {"peak_rss_mib": status_mib(pid, "VmHWM"), "cpu_seconds": round(cpu_times(pid)[0], 2)}


async def timed(check: Callable[[], Awaitable[bool]], timeout: float) -> float | None:
    """Seconds until check() is true (polled every 50 ms), None if it never was within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await check():
            return round(time.monotonic() - start, 2)
        await asyncio.sleep(0.05)
    return None


async def measure(url: str, token: str, replicas: int, timeout: float) -> dict[str, Any]:
    c = Client(url, token)
    ns = "bench-controllers"
    try:
        await c.create(NAMESPACES, {"metadata": {"name": ns}})
        labels = {"app": "bench"}
        await c.create(DEPLOYMENTS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}, ns)

        async def deployment_has(n: int) -> bool:
            d = await c.get(DEPLOYMENTS, "bench", ns)
            return (d.get("status") or {}).get("replicas") == n

        create_s = await timed(lambda: deployment_has(replicas), timeout)
        pods = len((await c.list(PODS, ns))["items"])
        await c.patch(DEPLOYMENTS, "bench", {"spec": {"replicas": replicas // 2}}, ns)
        scale_s = await timed(lambda: deployment_has(replicas // 2), timeout)
        await c.delete(DEPLOYMENTS, "bench", ns, propagation_policy="Background")

        async def all_gone() -> bool:
            return not (await c.list(REPLICASETS, ns))["items"] and not (await c.list(PODS, ns, limit=1))["items"]
        gc_s = await timed(all_gone, timeout)
        return {"replicas": replicas, "pods_created": pods,
                "create_to_all_replicas_s": create_s,
                "pods_per_s": round(replicas / create_s, 1) if create_s else None,
                "scale_down_half_s": scale_s, "cascading_delete_s": gc_s}
    finally:
        await c.close()


def main() -> None:
    args = parse_flags(__doc__, replicas=1000, timeout=300.0)
    with control_plane("pkb-") as cp:
        api = cp.api
        cm = subprocess.Popen([sys.executable, "-m", "launcher", "controller-manager", "--server", api.url,
                               "--token", api.token, "--controllers", "replicaset,deployment,garbagecollector"],
                              cwd=ROOT, stdout=open(os.path.join(cp.tmp, "cm.log"), "wb"), stderr=subprocess.STDOUT)
        try:
            result = asyncio.run(measure(api.url, api.token, args.replicas, args.timeout))
            result["controller_manager"] = proc_stats(cm.pid)
            result["note"] = "shared 2-core machine, apiserver + etcd + controller-manager on it; figures pessimistic"
            report(result)
        finally:
            _stop(cm)


if __name__ == "__main__":
    main()
