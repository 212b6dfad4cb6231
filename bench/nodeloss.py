"""Node loss benchmark: on `pkctl cluster up --nodes 3`, a worker node running replicas of a Deployment dies as a
machine dies (tests/e2e/helpers.py NodeLoss: kubelet and proxy frozen, pods' processes killed, link unplugged);
how long until the node is Ready=Unknown, its pods are evicted, and all replicas run (Ready) on the other nodes.
Then it comes back: how long until it is Ready again and the evicted pods are gone.

    .venv/bin/python bench/nodeloss.py [--replicas 6] [--grace 40] [--toleration 5]

--grace is `cluster up --node-monitor-grace-period` (Kubernetes' default 40 s), --toleration
`--default-unreachable-toleration-seconds` (Kubernetes' 300 s, shortened by default here). Prints one JSON
document. The node goes Unknown up to one Lease renewal (grace / 4) before `grace` after its death: the
silence counts from its last renewal. Figures only; nothing passes or fails on time.
Uses a temporary home with its own ports and removes it (`cluster down --purge`) at the end.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import local_cluster, parse_flags, pkctl, report  # noqa: E402
from pkctl.cluster.components import api_get  # noqa: E402
from pkctl.cluster.home import ClusterConfig, Home  # noqa: E402
from tests.e2e.helpers import NodeLoss  # noqa: E402

APP = "nodeloss"


def deployment(replicas: int) -> dict[str, Any]:
    labels = {"app": APP}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1,
                         "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                             {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": labels},
                                                                 "topologyKey": "kubernetes.io/hostname"}}]}},
                         "containers": [{"name": "main", "image": "pkube.local/busybox:latest",
                                         "command": ["sleep", "3600"]}]}}}}


def until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def main() -> int:
    args = parse_flags(__doc__, replicas=6, grace=40.0, toleration=5.0)
    result: dict[str, Any] = {"nodes": 3, "replicas": args.replicas, "grace_s": args.grace,
                              "toleration_s": args.toleration}
    with local_cluster("pkbench-nodeloss-") as home:
        pkctl("cluster", "up", "--home", str(home.root), "--nodes", "3", "--wait-timeout", "180",
              "--node-monitor-grace-period", f"{args.grace:g}",
              "--default-unreachable-toleration-seconds", f"{args.toleration:g}")
        cfg = home.load_config()
        manifest = home.root / "nodeloss.json"
        manifest.write_text(json.dumps(deployment(args.replicas)))
        pkctl("--kubeconfig", str(home.kubeconfig), "apply", "-f", str(manifest))

        def pods() -> list[dict[str, Any]]:
            path = f"/api/v1/namespaces/default/pods?labelSelector=app%3D{APP}"
            items: list[dict[str, Any]] = (api_get(home, cfg, path) or {}).get("items", [])
            return items

        def ready_elsewhere(node: str | None) -> list[dict[str, Any]] | None:
            ready = [p for p in pods() if not p["metadata"].get("deletionTimestamp") and p["spec"].get("nodeName")
                     != node and any(c["type"] == "Ready" and c["status"] == "True"
                                     for c in p["status"].get("conditions") or [])]
            return ready if len(ready) == args.replicas else None

        running = until("all replicas Ready", lambda: ready_elsewhere(None), 180)
        per_node: dict[str, int] = {}
        for p in running:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        workers = {w.name for w in cfg.workers}
        victim = max((n for n in per_node if n in workers), key=lambda n: per_node[n], default=None)
        if victim is None:
            raise SystemExit(f"no replica landed on a worker node: {per_node}")
        result["replicas_on_lost_node"] = per_node[victim]
        loss = NodeLoss(home.root, victim)
        began = time.monotonic()
        try:
            loss.die()
            until("the node Ready=Unknown", lambda: node_ready(home, cfg, victim) == "Unknown", args.grace + 60)
            result["to_node_unknown_s"] = round(time.monotonic() - began, 2)
            until("its pods evicted", lambda: all(p["metadata"].get("deletionTimestamp") for p in pods()
                                                  if p["spec"].get("nodeName") == victim), args.toleration + 60)
            result["to_pods_evicted_s"] = round(time.monotonic() - began, 2)
            until("all replicas Ready elsewhere", lambda: ready_elsewhere(victim), 120)
            result["to_all_replicas_ready_elsewhere_s"] = round(time.monotonic() - began, 2)
            result["evicted_to_all_replicas_ready_s"] = round(result["to_all_replicas_ready_elsewhere_s"]
                                                              - result["to_pods_evicted_s"], 2)
            back = time.monotonic()
            loss.come_back()
            until("the node Ready again", lambda: node_ready(home, cfg, victim) == "True", 120)
            result["comeback_to_node_ready_s"] = round(time.monotonic() - back, 2)
            until("the evicted pods removed", lambda: not [p for p in pods() if p["spec"].get("nodeName") == victim],
                  120)
            result["comeback_to_evicted_pods_removed_s"] = round(time.monotonic() - back, 2)
        finally:
            loss.come_back()
    return report(result, indent=1)


def node_ready(home: Home, cfg: ClusterConfig, node: str) -> str | None:
    doc = api_get(home, cfg, f"/api/v1/nodes/{node}") or {}
    return next((c["status"] for c in (doc.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"),
                None)


if __name__ == "__main__":
    sys.exit(main())
