"""Pure quota and limit range rules (pklib/api/quota.py, pklib/api/limitrange.py)."""
from __future__ import annotations

from typing import Any

from pklib.api import limitrange, quota


def shown(usage: quota.Usage) -> dict[str, str]:
    return {k: str(v) for k, v in usage.items()}


def test_usage_of_each_kind() -> None:
    svc = {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}}
    assert shown(quota.usage("", "services", svc)) == {"services": "1", "services.nodeports": "2",
                                                       "services.loadbalancers": "1", "count/services": "1"}
    claim = {"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}
    assert shown(quota.usage("", "persistentvolumeclaims", claim)) == {
        "persistentvolumeclaims": "1", "requests.storage": "1Gi",
        "fast.storageclass.storage.k8s.io/requests.storage": "1Gi",
        "fast.storageclass.storage.k8s.io/persistentvolumeclaims": "1", "count/persistentvolumeclaims": "1"}
    assert shown(quota.usage("apps", "deployments", {})) == {"count/deployments.apps": "1"}
    assert quota.usage("", "pods", {"status": {"phase": "Failed"}}) == {}
    stuck = {"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30}}
    assert quota.usage("", "pods", stuck) == {}, "stuck deleting past its grace period"
    assert quota.kind_of("count/jobs.batch") == ("batch", "jobs")
    assert quota.kind_of("limits.memory") == ("", "pods")
    assert quota.kind_of("gold.storageclass.storage.k8s.io/requests.storage") == ("", "persistentvolumeclaims")


def test_scopes() -> None:
    q: dict[str, Any] = {"spec": {"scopeSelector": {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}}
    assert quota.covers(q, "", "pods", {"spec": {"priorityClassName": "high"}})
    assert not quota.covers(q, "", "pods", {"spec": {}})
    assert not quota.covers(q, "", "configmaps", {})  # a scoped quota counts pods only
    terminating = {"spec": {"scopes": ["Terminating"]}}
    assert quota.covers(terminating, "", "pods", {"spec": {"activeDeadlineSeconds": 30}})


def test_sums_keep_the_format_and_increase() -> None:
    a, b = quota.usage("", "pods", {"spec": {"containers": [{"resources": {"requests": {"memory": "64Mi"}}}]}}), {}
    assert quota.total([a, a, b], ["requests.memory", "pods", "limits.cpu"]) == {
        "requests.memory": "128Mi", "pods": "2", "limits.cpu": "0"}
    grown = quota.increase(quota.parse_used({"requests.storage": "1Gi", "pods": "1"}),
                           quota.parse_used({"requests.storage": "3Gi", "pods": "1"}))
    assert shown(grown) == {"requests.storage": "2Gi"}


def test_limit_range_pod_and_claim_rules() -> None:
    pod = {"spec": {"initContainers": [{"name": "init", "resources": {"limits": {"cpu": "2"}}}],
                    "containers": [{"name": "a", "resources": {"limits": {"cpu": "500m"}}}]}}
    ranges = [{"spec": {"limits": [{"type": "Pod", "max": {"cpu": "1"}}]}}]
    # The pod needs its biggest init container when that is more than the app containers' sum.
    assert limitrange.pod_violations(ranges, pod) == ["maximum cpu usage per Pod is 1, but limit is 2"]
    claims = [{"spec": {"limits": [{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}}]}}]
    assert limitrange.claim_violations(claims, {"spec": {}}) == [
        "minimum storage usage per PersistentVolumeClaim is 1Gi.  No request is specified"]
    assert limitrange.aggregate(["a", "b"]) == "[a, b]"
