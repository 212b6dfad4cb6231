"""Object model benchmark: the per-request CPU cost of defaulting + validation, patches, quantities.

Every write to the API server pays default() + validate(); pkctl apply pays the 3-way patch.
Pure CPU, no servers. Prints one JSON document; figures only, nothing passes or fails on time.

    .venv/bin/python -m bench.objectmodel [--seconds 1.0]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from apiserver.kinds import strategy_for  # noqa: E402
from pklib.patch import strategic_merge_patch, three_way_strategic_patch  # noqa: E402
from pklib.quantity import canonical  # noqa: E402
from pklib.resources import must_lookup  # noqa: E402

CONTAINER = {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http"}],
             "env": [{"name": f"VAR_{i}", "value": str(i)} for i in range(5)],
             "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
             "readinessProbe": {"httpGet": {"port": "http"}}}
POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
    "spec": {"containers": [CONTAINER]}}
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [CONTAINER]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}


def rate(fn: Callable[[], Any], seconds: float) -> dict[str, float]:
    fn()  # warm caches (compiled schemas)
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fn()
        n += 1
    elapsed = time.perf_counter() - start
    return {"ops_per_s": round(n / elapsed), "us_per_op": round(elapsed / n * 1e6, 1)}


def admit(kind: str, body: dict[str, Any]) -> Callable[[], Any]:
    strategy = strategy_for(must_lookup(kind))

    def run() -> Any:
        obj = copy.deepcopy(body)
        strategy.default(obj)
        causes = strategy.validate(obj, None)
        assert not causes, causes
        return obj
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    a = p.parse_args()
    bad = copy.deepcopy(POD)
    bad["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    pods = strategy_for(must_lookup("pods"))

    modified = copy.deepcopy(DEPLOYMENT)
    modified["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    del modified["spec"]["template"]["spec"]["containers"][0]["env"][0]
    current = admit("deployments", DEPLOYMENT)()
    patch = three_way_strategic_patch(DEPLOYMENT, modified, current)
    results = {
        "default_validate_pod": rate(admit("pods", POD), a.seconds),
        "default_validate_deployment": rate(admit("deployments", DEPLOYMENT), a.seconds),
        "default_validate_service": rate(admit("services", SERVICE), a.seconds),
        "validate_invalid_pod_full_report": rate(lambda: pods.validate(bad, None), a.seconds),
        "three_way_patch_deployment": rate(lambda: three_way_strategic_patch(DEPLOYMENT, modified, current),
                                           a.seconds),
        "strategic_merge_patch_deployment": rate(lambda: strategic_merge_patch(current, patch), a.seconds),
        "quantity_canonical": rate(lambda: canonical("1.5Gi"), a.seconds),
    }
    print(json.dumps({"benchmark": "objectmodel", "python": sys.version.split()[0], "results": results}, indent=2))


if __name__ == "__main__":
    main()
