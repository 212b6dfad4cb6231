"""Real-client benchmark: `kubectl get pods -A` with 5,000 pods, `kubectl apply -f` of a 50-object file.

Starts its own etcd and a TLS `pkube apiserver` (the test helpers), drives the real kubectl
with the https kubeconfig, prints one JSON document, cleans up. Figures only: nothing here
passes or fails on time (targets from issue 9: <= 1 s and <= 3 s).

    .venv/bin/python -m bench.compat [--pods 5000] [--objects 50] [--runs 3]
"""
from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pklib.client import Client  # noqa: E402
from pklib.resources import must_lookup  # noqa: E402
from bench.common import control_plane, has_kubectl, parse_flags, report  # noqa: E402

PODS, NAMESPACES = must_lookup("pods"), must_lookup("namespaces")


def pod(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i:05d}", "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}


async def create_pods(kubeconfig: str, namespaces: list[str], count: int, workers: int = 32) -> float:
    todo = iter(range(count))
    async with Client.from_kubeconfig(kubeconfig) as c:
        for ns in namespaces:
            await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

        async def worker() -> None:
            for i in todo:
                await c.create(PODS, pod(i), namespace=namespaces[i % len(namespaces)])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return time.perf_counter() - start


def timed(cmd: list[str], stdin: str | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr}")
    return elapsed, r.stdout


def manifest(objects: int) -> str:
    docs = []
    for i in range(objects):
        if i % 2:
            docs.append(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{key: value-{i}}}")
        else:
            docs.append(f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web-{i}}}\nspec:\n"
                        f"  replicas: 1\n  selector: {{matchLabels: {{app: web-{i}}}}}\n  template:\n"
                        f"    metadata: {{labels: {{app: web-{i}}}}}\n    spec:\n"
                        f"      containers: [{{name: web, image: 'busybox:1.36'}}]")
    return "\n---\n".join(docs)


def main() -> int:
    a = parse_flags(__doc__, pods=5000, objects=50, runs=3)
    if not has_kubectl("compat"):
        return 1
    with control_plane("pkb-compat-", tls=True) as cp:
        api = cp.api
        kubectl = ["kubectl", "--kubeconfig", api.kubeconfig]
        created = asyncio.run(create_pods(api.kubeconfig, [f"bench-{i}" for i in range(10)], a.pods))
        get_times = []
        for _ in range(a.runs):
            elapsed, out = timed([*kubectl, "get", "pods", "-A"])
            get_times.append(elapsed)
            assert len(out.splitlines()) == a.pods + 1, "kubectl did not list every pod"
        text = manifest(a.objects)
        first, _ = timed([*kubectl, "apply", "-n", "default", "-f", "-"], text)
        again, out = timed([*kubectl, "apply", "-n", "default", "-f", "-"], text)
        assert out.count("unchanged") == a.objects
        changed, _ = timed([*kubectl, "apply", "-n", "default", "-f", "-"], text.replace("value-", "other-"))
        server_side, _ = timed([*kubectl, "apply", "--server-side", "-n", "default", "-f", "-"],
                               text.replace("value-", "third-"))
        return report({
            "benchmark": "compat",
            "pods": a.pods,
            "create_pods_s": round(created, 2),
            "kubectl_get_pods_all_namespaces_s": {"median": round(statistics.median(get_times), 3),
                                                  "min": round(min(get_times), 3), "runs": a.runs},
            "kubectl_apply_objects": a.objects,
            "kubectl_apply_create_s": round(first, 3),
            "kubectl_apply_unchanged_s": round(again, 3),
            "kubectl_apply_configure_half_s": round(changed, 3),
            "kubectl_apply_server_side_s": round(server_side, 3),
            "targets_s": {"get_pods_all_namespaces": 1.0, "apply_50_objects": 3.0},
        })


if __name__ == "__main__":
    sys.exit(main())
