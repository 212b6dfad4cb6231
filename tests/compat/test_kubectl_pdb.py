"""kubectl v1.32 with PodDisruptionBudgets: `create pdb` (a protobuf body), `get pdb` columns once the disruption
controller has counted a Deployment's ready pods (hollow node), `describe pdb`, `apply` of a manifest."""
from __future__ import annotations

import json
import time

from tests.support.kubectl import Kubectl, Workers

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "busybox:1.36"}]
"""
PDB = """
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: half}
spec:
  minAvailable: 50%
  selector: {matchLabels: {app: web}}
"""


def _wait_allowed(kubectl: Kubectl, ns: str, name: str, allowed: int) -> dict:
    deadline = time.monotonic() + 60
    while True:
        pdb = json.loads(kubectl("get", "pdb", name, "-n", ns, "-o", "json").stdout)
        if pdb["status"].get("disruptionsAllowed") == allowed and pdb["status"].get("observedGeneration"):
            return pdb
        assert time.monotonic() < deadline, f"pdb {name}: {pdb['status']}"
        time.sleep(0.2)


def test_create_get_describe_apply(kubectl: Kubectl, workers: Workers, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT)
    kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
    out = kubectl("create", "pdb", "web", "-n", ns, "--selector=app=web", "--max-unavailable=1").stdout
    assert out == "poddisruptionbudget.policy/web created\n"
    kubectl("create", "pdb", "zero", "-n", ns, "--selector=app=none", "--min-available=0")
    zero = json.loads(kubectl("get", "pdb", "zero", "-n", ns, "-o", "json").stdout)
    assert zero["spec"]["minAvailable"] == 0  # a zero that was sent is kept (a pointer in Go)
    kubectl("delete", "pdb", "zero", "-n", ns)
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=PDB).stdout == "poddisruptionbudget.policy/half created\n"
    _wait_allowed(kubectl, ns, "web", 1)
    half = _wait_allowed(kubectl, ns, "half", 1)
    assert (half["status"]["expectedPods"], half["status"]["desiredHealthy"], half["status"]["currentHealthy"]) \
        == (3, 2, 3)

    lines = kubectl("get", "pdb", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert rows == {"half": ["50%", "N/A", "1"], "web": ["N/A", "1", "1"]}

    described = kubectl("describe", "pdb", "web", "-n", ns).stdout
    assert "Max unavailable:  1" in described and "Allowed disruptions:  1" in described
    assert "Selector:         app=web" in described

    explained = kubectl("explain", "pdb.spec").stdout
    assert "minAvailable" in explained and "unhealthyPodEvictionPolicy" in explained

    kubectl("scale", "deployment/web", "-n", ns, "--replicas=5")
    _wait_allowed(kubectl, ns, "half", 2)  # 5 expected, 3 must stay
