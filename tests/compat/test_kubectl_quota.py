"""kubectl v1.32 with ResourceQuotas, LimitRanges, ReplicationControllers and APIServices: `create quota`,
`get quota` columns once the controller wrote the status, the 403 exceeded-quota refusal as kubectl prints it,
`get limits`, `describe limits`, `get rc` and `scale rc` (hollow node), `get apiservices`."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

from tests.support.kubectl import Kubectl, Workers

LIMITS = """
apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec:
  limits:
  - type: Container
    default: {cpu: "1"}
    defaultRequest: {cpu: 200m}
"""
POD = """
apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  containers: [{name: app, image: "busybox:1.36", resources: {requests: {cpu: %s}}}]
"""
RC = """
apiVersion: v1
kind: ReplicationController
metadata: {name: web}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "busybox:1.36"}]
"""
APISERVICE = """
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.%s.example.com}
spec:
  group: %s.example.com
  version: v1beta1
  groupPriorityMinimum: 1000
  versionPriority: 15
  service: {namespace: %s, name: custom-api}
"""


def _until(get: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = get()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _table(kubectl: Kubectl, *args: str) -> list[list[str]]:
    return [line.split() for line in kubectl("get", *args).stdout.splitlines()]


def test_quota_and_limits(kubectl: Kubectl, workers: Workers, ns: str) -> None:
    out = kubectl("create", "quota", "compute", "-n", ns, "--hard=pods=3,requests.cpu=1,limits.cpu=2").stdout
    assert out == "resourcequota/compute created\n"
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=LIMITS).stdout == "limitrange/limits created\n"

    def counted() -> Any:
        q = json.loads(kubectl("get", "quota", "compute", "-n", ns, "-o", "json").stdout)
        return q if (q.get("status") or {}).get("hard") else None
    _until(counted, "the controller wrote the quota's status")
    kubectl("apply", "-n", ns, "-f", "-", stdin=POD % ("small", "600m"))

    lines = kubectl("get", "quota", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert lines[1].split()[0] == "compute"
    assert "pods: 1/3, requests.cpu: 600m/1" in lines[1] and lines[1].endswith("limits.cpu: 1/2")

    r = kubectl("apply", "-n", ns, "-f", "-", stdin=POD % ("big", "500m"), ok=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ('Error from server (Forbidden): error when creating "STDIN": pods "big" is forbidden: '
                                'exceeded quota: compute, requested: requests.cpu=500m, used: requests.cpu=600m, '
                                'limited: requests.cpu=1')
    described = kubectl("describe", "quota", "compute", "-n", ns).stdout
    assert any(line.split() == ["requests.cpu", "600m", "1"] for line in described.splitlines())

    assert "scopeSelector" in kubectl("explain", "quota.spec").stdout
    assert _table(kubectl, "limits", "-n", ns)[0] == ["NAME", "CREATED", "AT"]
    described = kubectl("describe", "limits", "limits", "-n", ns).stdout
    assert any(line.split()[:2] == ["Container", "cpu"] and "1" in line.split() for line in described.splitlines())


def test_replication_controller_scale(kubectl: Kubectl, workers: Workers, ns: str) -> None:
    out = kubectl("apply", "-n", ns, "-f", "-", stdin=RC).stdout
    assert out == "replicationcontroller/web created\n"
    assert kubectl("scale", "rc", "web", "-n", ns, "--replicas=3").stdout == "replicationcontroller/web scaled\n"

    def ready() -> Any:
        rows = _table(kubectl, "rc", "-n", ns)
        return rows if rows[1][:4] == ["web", "3", "3", "3"] else None
    rows = _until(ready, "3 ready replicas")
    assert rows[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    wide = _table(kubectl, "rc", "web", "-n", ns, "-o", "wide")
    assert wide[0][-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"] and wide[1][-3:] == ["web", "busybox:1.36", "app=web"]
    kubectl("delete", "rc", "web", "-n", ns)
    _until(lambda: not kubectl("get", "pods", "-n", ns, "-l", "app=web", "-o", "name").stdout,
           "the RC's pods are collected")


def test_apiservices(kubectl: Kubectl, workers: Workers, ns: str) -> None:
    kubectl("apply", "-f", "-", stdin=APISERVICE % (ns, ns, ns))
    try:
        def shown() -> Any:
            rows = {r[0]: r[1:] for r in _table(kubectl, "apiservices")}
            return rows if rows.get(f"v1beta1.{ns}.example.com", [""])[1:2] == ["False"] else None
        rows = _until(shown, "the user's APIService is shown unavailable")
        assert rows["NAME"] == ["SERVICE", "AVAILABLE", "AGE"]
        assert rows["v1."][:2] == ["Local", "True"] and rows["v1.apps"][:2] == ["Local", "True"]
        assert rows[f"v1beta1.{ns}.example.com"][:3] == [f"{ns}/custom-api", "False", "(ServiceNotFound)"]
    finally:
        kubectl("delete", "apiservice", f"v1beta1.{ns}.example.com")
