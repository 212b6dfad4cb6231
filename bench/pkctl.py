"""pkctl benchmark: what a user waits for, end to end (process start, request, printing).

Starts its own etcd and `pkube apiserver` (the helpers the tests use) in a temporary
directory, runs the real `pkctl` as a subprocess, prints one JSON document and cleans up.
Figures only: nothing here passes or fails on time.

    .venv/bin/python -m bench.pkctl [--objects 200] [--list 1000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import control_plane, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def pkctl(kubeconfig: str, *args: str, stdin: str | None = None) -> float:
    """Seconds one pkctl invocation takes; fails loudly if the command does."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pkctl.main", "--kubeconfig", kubeconfig, *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"pkctl {' '.join(args)} failed: {proc.stderr.strip()}")
    return elapsed


def deployments(n: int, namespace: str, env: str = "1") -> str:
    docs = []
    for i in range(n):
        docs.append(f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web-{i}, namespace: {namespace}, labels: {{app: web-{i}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web-{i}}}}}
  template:
    metadata: {{labels: {{app: web-{i}}}}}
    spec:
      containers:
      - name: main
        image: busybox
        env: [{{name: MODE, value: "{env}"}}]
""")
    return "---\n".join(docs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=200, help="deployments in the applied file")
    parser.add_argument("--list", type=int, default=1000, help="configmaps listed by `pkctl get`")
    opts = parser.parse_args()
    with control_plane("pkbench-") as cp:
        kc = cp.api.kubeconfig
        ns = "bench"
        pkctl(kc, "create", "namespace", ns)
        startup = [pkctl(kc, "get", "namespaces") for _ in range(5)]
        create = pkctl(kc, "apply", "-f", "-", stdin=deployments(opts.objects, ns))
        unchanged = pkctl(kc, "apply", "-f", "-", stdin=deployments(opts.objects, ns))
        configured = pkctl(kc, "apply", "-f", "-", stdin=deployments(opts.objects, ns, env="2"))
        cms = "---\n".join(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {ns}}}\n"
                           f"data: {{k: v}}\n" for i in range(opts.list))
        pkctl(kc, "create", "-f", "-", stdin=cms)
        get_table = [pkctl(kc, "-n", ns, "get", "configmaps") for _ in range(3)]
        get_yaml = pkctl(kc, "-n", ns, "get", "configmaps", "-o", "yaml")
        delete = pkctl(kc, "-n", ns, "delete", "configmaps", "--all")
        report({
            "pkctl_get_namespaces_median_s": round(statistics.median(startup), 3),
            "apply_create": {"objects": opts.objects, "seconds": round(create, 2),
                             "objects_per_s": round(opts.objects / create, 1)},
            "apply_unchanged": {"objects": opts.objects, "seconds": round(unchanged, 2),
                                "objects_per_s": round(opts.objects / unchanged, 1)},
            "apply_configured": {"objects": opts.objects, "seconds": round(configured, 2),
                                 "objects_per_s": round(opts.objects / configured, 1)},
            "get_table": {"objects": opts.list, "median_s": round(statistics.median(get_table), 3)},
            "get_yaml": {"objects": opts.list, "seconds": round(get_yaml, 3)},
            "delete_all": {"objects": opts.list, "seconds": round(delete, 2)},
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
