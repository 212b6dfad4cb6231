"""The HPA's replica calculation and behavior (pklib/api/autoscaling.py), with Kubernetes' replica calculator
cases: tolerance, missing and unready pods, AverageValue, stabilization windows and rate policies."""
from __future__ import annotations

import pytest

from pklib.api import autoscaling as a
from pklib.api.autoscaling import PodSample


def pods(*usages: int | None, request: int = 1000, ready: bool = True) -> list[PodSample]:
    return [PodSample(f"p{i}", u, request, ready) for i, u in enumerate(usages)]


def test_scale_up_by_utilization_ratio() -> None:
    rec = a.resource_replicas(3, pods(800, 900, 1000), target_utilization=30)
    # 90% average against 30% target: 3 × 3 = 9
    assert (rec.replicas, rec.utilization) == (9, 90)


def test_scale_down_by_utilization_ratio() -> None:
    assert a.resource_replicas(5, pods(100, 100, 100, 100, 100), target_utilization=50).replicas == 1


def test_within_tolerance_keeps_the_count() -> None:
    assert a.resource_replicas(3, pods(500, 540, 560), target_utilization=50).replicas == 3  # ratio 1.06
    assert a.resource_replicas(3, pods(500, 540, 560), target_utilization=50, tolerance=0.01).replicas == 4


def test_missing_metrics_count_as_request_when_scaling_down_and_zero_when_up() -> None:
    # down: two pods at 10% and one without metrics taken at 100% → (10+10+100)/3 = 40% of a 50% target
    down = a.resource_replicas(3, pods(100, 100, None), target_utilization=50)
    assert down.replicas == 3  # ceil(0.8 × 3) = 3: the missing pod holds the scale-down back
    # up: 2 pods at 100% and one missing counted at 0 → 66% against 50%: ceil(1.33 × 3) = 4
    up = a.resource_replicas(3, pods(1000, 1000, None), target_utilization=50)
    assert up.replicas == 4


def test_unready_pods_count_as_zero_when_scaling_up() -> None:
    samples = pods(1000, 1000) + [PodSample("new", None, 1000, ready=False)]
    assert a.resource_replicas(3, samples, target_utilization=50).replicas == 4
    # when counting them would bring the ratio under 1, nothing changes
    samples = pods(600) + [PodSample(f"n{i}", None, 1000, ready=False) for i in range(3)]
    assert a.resource_replicas(4, samples, target_utilization=50).replicas == 4


def test_ignored_pods_do_not_count() -> None:
    samples = pods(1000) + [PodSample("gone", 0, 1000, ignored=True)]
    assert a.resource_replicas(2, samples, target_utilization=50).replicas == 2


def test_average_value_target() -> None:
    rec = a.resource_replicas(2, pods(300_000, 500_000, request=0), target_average=200_000, resource="memory")
    assert (rec.replicas, rec.average) == (4, 400_000)


def test_errors_without_pods_metrics_or_requests() -> None:
    with pytest.raises(a.MetricError, match="no pods"):
        a.resource_replicas(1, [], target_utilization=50)
    with pytest.raises(a.MetricError, match="did not receive metrics"):
        a.resource_replicas(1, pods(None), target_utilization=50)
    with pytest.raises(a.MetricError, match="^missing request for cpu in container c of Pod p0$"):
        a.resource_replicas(1, [PodSample("p0", 100, None, no_request="c")], target_utilization=50)


def test_defaults() -> None:
    spec: dict = {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 3,
                  "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}
    a.default_spec(spec)
    assert spec["minReplicas"] == 1
    assert spec["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization",
                                                                         "averageUtilization": 80}}
    assert spec["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 5, "selectPolicy": "Max",
                                             "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert spec["behavior"]["scaleUp"]["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                                       {"type": "Percent", "value": 100, "periodSeconds": 15}]
    assert a.effective_behavior({}, 60)["scaleDown"]["stabilizationWindowSeconds"] == 60


def test_scale_down_waits_for_the_stabilization_window() -> None:
    behavior = a.effective_behavior({}, 300)
    h = a.History()
    assert a.stabilize(h, 0, 5, 5, behavior)[0] == 5
    replicas, reason, _ = a.stabilize(h, 10, 5, 2, behavior)
    assert (replicas, reason) == (5, "ScaleDownStabilized")   # 5 was recommended 10 s ago
    assert a.stabilize(h, 301, 5, 2, behavior)[:2] == (2, "ReadyForNewScale")


def test_scale_up_rate_limit_policies() -> None:
    behavior = a.effective_behavior({})
    h = a.History()
    # from 1: max(1 + 4 pods, 1 × 200%) = 5 per 15 s
    assert a.rate_limit(h, 0, 1, 10, 1, 20, behavior)[:2] == (5, "ScaleUpLimit")
    h.record_scale(0, 1, 5)
    # 10 s later the period still started at 1 replica: no more room
    assert a.rate_limit(h, 10, 5, 10, 1, 20, behavior)[:2] == (5, "ScaleUpLimit")
    assert a.rate_limit(h, 16, 5, 12, 1, 20, behavior)[:2] == (10, "ScaleUpLimit")  # max(5 + 4, 5 × 200%)
    assert a.rate_limit(h, 16, 5, 30, 1, 8, behavior)[:2] == (8, "TooManyReplicas")
    assert a.rate_limit(h, 16, 5, 6, 1, 8, behavior)[:2] == (6, "DesiredWithinRange")


def test_scale_down_policies_and_disabled() -> None:
    behavior = a.effective_behavior({"behavior": {"scaleDown": {"policies": [
        {"type": "Pods", "value": 1, "periodSeconds": 60}]}}})
    h = a.History()
    assert a.rate_limit(h, 0, 5, 1, 1, 10, behavior)[:2] == (4, "ScaleDownLimit")
    h.record_scale(0, 5, 4)
    assert a.rate_limit(h, 30, 4, 1, 1, 10, behavior)[0] == 4
    disabled = a.effective_behavior({"behavior": {"scaleDown": {"selectPolicy": "Disabled"}}})
    assert a.rate_limit(a.History(), 0, 5, 1, 1, 10, disabled)[0] == 5
    assert a.rate_limit(a.History(), 0, 5, 1, 3, 10, a.effective_behavior({}))[:2] == (3, "TooFewReplicas")


def test_v1_conversion_round_trips_what_v1_has_no_field_for() -> None:
    v2 = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 4,
                   "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {
                       "type": "AverageValue", "averageValue": "10Mi"}}},
                               {"type": "Resource", "resource": {"name": "cpu", "target": {
                                   "type": "Utilization", "averageUtilization": 60}}}],
                   "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}},
          "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": [
              {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 30}}}],
              "conditions": [{"type": "AbleToScale", "status": "True"}]}}
    v1 = a.to_v1(v2)
    assert v1["apiVersion"] == "autoscaling/v1" and v1["spec"]["targetCPUUtilizationPercentage"] == 60
    assert "metrics" not in v1["spec"] and "behavior" not in v1["spec"]
    assert v1["status"] == {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 30}
    back = a.to_v2(v1)
    assert back["spec"]["behavior"] == v2["spec"]["behavior"]
    assert sorted(m["resource"]["name"] for m in back["spec"]["metrics"]) == ["cpu", "memory"]
    assert back["status"] == v2["status"] and "annotations" not in back["metadata"]
    plain = a.to_v2({"apiVersion": "autoscaling/v1", "metadata": {"name": "x"},
                     "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 2,
                              "targetCPUUtilizationPercentage": 45}})
    assert plain["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 45}}}]
