"""`pkctl rollout status` benchmark, side by side with kubectl v1.32 on the same cluster.

Starts its own etcd, an HTTPS `pkube apiserver` (kubectl sends its token only over TLS) and the
replicaset + deployment controllers, and stands in for the kubelet by writing pod status through the
API. Measures:
  - the wall time of `rollout status` on a finished rollout (process start, connect, read, print);
  - the detection latency: from the moment the last pod is marked ready to the moment each client
    prints "successfully rolled out" (controller reaction + watch delivery + printing);
  - how many status lines each client printed while waiting.
Prints one JSON document and cleans up; nothing passes or fails on time.

    .venv/bin/python -m bench.rollout [--replicas 5] [--runs 5]
"""
from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pklib.client import Client  # noqa: E402
from pklib.resources import must_lookup  # noqa: E402
from bench.common import control_plane, has_kubectl, parse_flags, report  # noqa: E402
from tests.controllers.helpers import set_pod_ready  # noqa: E402
from tests.util import unique  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEPLOY, PODS, NAMESPACES = must_lookup("deployments"), must_lookup("pods"), must_lookup("namespaces")


def ms(x: float) -> float:
    return round(x * 1000, 1)


def clients(kubeconfig: str, ns: str) -> dict[str, list[str]]:
    return {"pkctl": [sys.executable, "-m", "pkctl.main", "--kubeconfig", kubeconfig, "-n", ns],
            "kubectl": ["kubectl", "--kubeconfig", kubeconfig, "-n", ns]}


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


async def wait_until(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark setup timed out")
        await asyncio.sleep(0.05)


async def ready_all(client: Client, ns: str) -> None:
    for pod in (await client.list(PODS, ns))["items"]:
        await set_pod_ready(client, pod)


async def finished_wall_time(cmds: dict[str, list[str]], runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool, base in cmds.items():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(*base, "rollout", "status", "deployment/web", cwd=ROOT,
                                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{tool} rollout status failed: {err.decode().strip()}")
            times.append(time.perf_counter() - start)
        out[tool] = {"median_ms": ms(statistics.median(times)), "min_ms": ms(min(times))}
    return out


async def detection(client: Client, cmds: dict[str, list[str]], ns: str, name: str, replicas: int) -> dict[str, Any]:
    """Both clients wait on a rollout whose pods are not ready; then every pod becomes ready at once."""
    await client.create(DEPLOY, deployment(name, replicas), ns)

    async def pods_created() -> bool:
        return len((await client.list(PODS, ns, label_selector=f"app={name}"))["items"]) == replicas
    await wait_until(pods_created)
    procs = {tool: await asyncio.create_subprocess_exec(*base, "rollout", "status", f"deployment/{name}",
                                                        "--timeout=120s", cwd=ROOT, stdout=subprocess.PIPE,
                                                        stderr=subprocess.PIPE)
             for tool, base in cmds.items()}
    for proc in procs.values():  # both are watching once they printed their first line
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 60)
    for pod in (await client.list(PODS, ns, label_selector=f"app={name}"))["items"]:
        await set_pod_ready(client, pod)
    ready_at = time.perf_counter()

    async def until_done(proc: asyncio.subprocess.Process) -> tuple[float, int]:
        assert proc.stdout is not None
        lines = 1
        while line := await asyncio.wait_for(proc.stdout.readline(), 120):
            lines += 1
            if b"successfully rolled out" in line:
                return time.perf_counter() - ready_at, lines
        assert proc.stderr is not None
        raise RuntimeError(f"rollout status ended without success: {(await proc.stderr.read()).decode()}")
    results = {tool: await until_done(proc) for tool, proc in procs.items()}
    for proc in procs.values():
        await proc.wait()
    return {tool: {"latency_ms": ms(latency), "lines": lines} for tool, (latency, lines) in results.items()}


async def run(kubeconfig: str, replicas: int, runs: int) -> dict[str, Any]:
    from controllers.main import build_parser, run as run_controllers
    client = Client.from_kubeconfig(kubeconfig)
    ns = unique("bench")
    ready = asyncio.Event()
    manager = asyncio.create_task(run_controllers(
        build_parser().parse_args(["--kubeconfig", kubeconfig, "--controllers", "replicaset,deployment"]), ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        cmds = clients(kubeconfig, ns)
        await client.create(DEPLOY, deployment("web", replicas), ns)

        async def web_done() -> bool:
            await ready_all(client, ns)
            s = (await client.get(DEPLOY, "web", ns)).get("status") or {}
            return s.get("availableReplicas") == replicas
        await wait_until(web_done)
        finished = await finished_wall_time(cmds, runs)
        rounds = [await detection(client, cmds, ns, f"slow-{i}", replicas) for i in range(runs)]
        latency = {tool: {"median_ms": ms(statistics.median(r[tool]["latency_ms"] / 1000 for r in rounds)),
                          "max_ms": max(r[tool]["latency_ms"] for r in rounds),
                          "status_lines_median": statistics.median(r[tool]["lines"] for r in rounds)}
                   for tool in cmds}
        return {"replicas": replicas, "runs": runs, "finished_rollout_wall_time": finished,
                "last_pod_ready_to_success_line": latency}
    finally:
        manager.cancel()
        await asyncio.gather(manager, return_exceptions=True)
        await client.close()


def main() -> int:
    args = parse_flags(__doc__, replicas=5, runs=5)
    if not has_kubectl("rollout"):
        return 1
    with control_plane("pkb-rollout-", tls=True) as cp:
        result = asyncio.run(run(cp.api.kubeconfig, args.replicas, args.runs))
    return report({"benchmark": "rollout", **result})


if __name__ == "__main__":
    sys.exit(main())
