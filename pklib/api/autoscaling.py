"""HorizontalPodAutoscaler semantics (autoscaling/v2) shared by the API server (defaults) and the controller.

- `default_behavior`: the scale-up / scale-down rules Kubernetes fills in (GenerateHPAScaleUpRules /
  GenerateHPAScaleDownRules): up at once by max(4 pods, 100%) per 15 s, down after a 300 s stabilization window by
  100% per 15 s.
- `resource_replicas`: the replica calculator for resource metrics (Kubernetes' ReplicaCalculator
  GetResourceReplicas / GetRawResourceReplicas): the usage ratio over the ready pods with metrics, a 0.1
  tolerance, pods without metrics counted at the target when scaling down and at 0 when scaling up, not-yet-ready
  pods at 0 when scaling up, and no change when counting them would reverse the direction.
- `stabilize` and `rate_limit`: the behavior of normalizeDesiredReplicasWithBehaviors (stabilization windows over
  past recommendations, then the policies' rate limits over past scale events).
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

TOLERANCE = 0.1
DEFAULT_CPU_UTILIZATION = 80
SCALE_DOWN_WINDOW = 300
MAX_POLICY_PERIOD = 1800
MAX_WINDOW = 3600
SELECT_POLICIES = ("Max", "Min", "Disabled")
POLICY_TYPES = ("Pods", "Percent")
METRIC_TYPES = ("Object", "Pods", "Resource", "ContainerResource", "External")
TARGET_TYPES = ("Utilization", "Value", "AverageValue")


def _scale_up_defaults() -> dict[str, Any]:
    return {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                         {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _scale_down_defaults(window: int = SCALE_DOWN_WINDOW) -> dict[str, Any]:
    return {"stabilizationWindowSeconds": window, "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _fill(rules: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(rules) if isinstance(rules, dict) else {}
    for key, value in defaults.items():
        if out.get(key) is None:
            out[key] = value
    return out


def default_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_HorizontalPodAutoscaler (v2): minReplicas 1, an 80% CPU target when no metric is given, and the
    nil rules of a given behavior filled in."""
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior["scaleUp"] = _fill(behavior.get("scaleUp"), _scale_up_defaults())
        behavior["scaleDown"] = _fill(behavior.get("scaleDown"), _scale_down_defaults())


def effective_behavior(spec: dict[str, Any], scale_down_window: int = SCALE_DOWN_WINDOW) -> dict[str, Any]:
    """The behavior the controller applies: the spec's, or the defaults (the scale-down window from the
    controller-manager's --horizontal-pod-autoscaler-downscale-stabilization when the spec gives none)."""
    behavior = spec.get("behavior") or {}
    return {"scaleUp": _fill(behavior.get("scaleUp"), _scale_up_defaults()),
            "scaleDown": _fill(behavior.get("scaleDown"), _scale_down_defaults(scale_down_window))}


# -- the replica calculator ---------------------------------------------------------------------------------

@dataclass
class PodSample:
    """One pod the scale target selects. `usage` is None without metrics; requests in the metric's units."""
    name: str
    usage: int | None      # milli-units (millicores, millibytes)
    request: int | None    # the pod's request of the resource, milli-units; None when a container has none
    ready: bool = True     # False: pending, or (CPU) not Ready; counted at 0 when scaling up, else left out
    ignored: bool = False  # being deleted or failed
    no_request: str = ""   # the container that requests none of the resource (its name for the error)


@dataclass
class Recommendation:
    replicas: int
    utilization: int | None = None   # percent of requests (Utilization targets)
    average: int | None = None       # milli-units per pod (AverageValue targets)


class MetricError(Exception):
    pass


def resource_replicas(current: int, pods: list[PodSample], *, target_utilization: int | None = None,
                      target_average: int | None = None, resource: str = "cpu",
                      tolerance: float = TOLERANCE) -> Recommendation:
    """The replica count one resource metric asks for; exactly one of the targets is given. MetricError when
    there is nothing to compute from (no pods, no metrics, a missing request)."""
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    counted = [p for p in pods if not p.ignored]
    with_metrics = [p for p in counted if p.ready and p.usage is not None]
    unready = [p for p in counted if not p.ready]
    missing = [p for p in counted if p.ready and p.usage is None]
    if not with_metrics:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    if target_utilization is not None:
        for p in with_metrics:
            if not p.request:
                where = f"container {p.no_request} of Pod {p.name}" if p.no_request else f"Pod {p.name}"
                raise MetricError(f"missing request for {resource} in {where}")

    def ratio(samples: list[tuple[int, int]]) -> tuple[float, int]:
        """(usage ratio, current utilization % or average) over (usage, request) pairs."""
        total = sum(u for u, _ in samples)
        if target_utilization is not None:
            requests = sum(r for _, r in samples)
            utilization = int(total * 100 / requests) if requests else 0
            return utilization / target_utilization, utilization
        assert target_average is not None
        return (total / len(samples)) / target_average, total // len(samples)

    base = [(p.usage or 0, p.request or 0) for p in with_metrics]
    usage_ratio, current_value = ratio(base)

    def recommendation(replicas: int) -> Recommendation:
        if target_utilization is not None:
            return Recommendation(replicas, utilization=current_value)
        return Recommendation(replicas, average=current_value)

    scale_up_with_unready = bool(unready) and usage_ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - usage_ratio) <= tolerance:
            return recommendation(current)
        return recommendation(math.ceil(usage_ratio * len(base)))
    samples = list(base)
    for p in missing:
        # scaling down: a pod without metrics counts as using all its request (or the target when above 100%);
        # scaling up: as using nothing
        if usage_ratio < 1.0:
            if target_utilization is not None:
                samples.append(((p.request or 0) * max(100, target_utilization) // 100, p.request or 0))
            else:
                samples.append((target_average or 0, 0))
        else:
            samples.append((0, p.request or 0))
    if scale_up_with_unready:
        samples += [(0, p.request or 0) for p in unready]
    new_ratio, _ = ratio(samples)
    if abs(1.0 - new_ratio) <= tolerance or (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio):
        return recommendation(current)
    replicas = math.ceil(new_ratio * len(samples))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return recommendation(current)
    return recommendation(replicas)


# -- behavior: stabilization windows and rate limits ------------------------------------------------------

@dataclass
class History:
    """What the controller remembers of one HPA: past recommendations and past scale changes (time, count)."""
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[tuple[float, int]] = field(default_factory=list)
    scale_down_events: list[tuple[float, int]] = field(default_factory=list)

    def record_scale(self, now: float, old: int, new: int) -> None:
        if new > old:
            self.scale_up_events.append((now, new - old))
        elif new < old:
            self.scale_down_events.append((now, old - new))
        horizon = now - MAX_POLICY_PERIOD
        self.scale_up_events = [e for e in self.scale_up_events if e[0] > horizon]
        self.scale_down_events = [e for e in self.scale_down_events if e[0] > horizon]


def stabilize(history: History, now: float, current: int, desired: int,
              behavior: dict[str, Any]) -> tuple[int, str, str]:
    """stabilizeRecommendationWithBehaviors: the lowest recommendation of the scale-up window and the highest of
    the scale-down window bound the change; the new recommendation is remembered."""
    up_window = int(behavior["scaleUp"]["stabilizationWindowSeconds"])
    down_window = int(behavior["scaleDown"]["stabilizationWindowSeconds"])
    up = down = desired
    for at, replicas in history.recommendations:
        if at > now - up_window:
            up = min(up, replicas)
        if at > now - down_window:
            down = max(down, replicas)
    recommendation = max(current, up)
    recommendation = min(recommendation, down)
    keep = now - max(up_window, down_window)
    history.recommendations = [r for r in history.recommendations if r[0] > keep] + [(now, desired)]
    if recommendation == desired:
        return recommendation, "ReadyForNewScale", "recommended size matches current size"
    if recommendation < desired:
        return recommendation, "ScaleUpStabilized", ("recent recommendations were lower than current one, "
                                                     "applying the lowest recent recommendation")
    return recommendation, "ScaleDownStabilized", ("recent recommendations were higher than current one, "
                                                   "applying the highest recent recommendation")


def _changed_in(events: list[tuple[float, int]], now: float, period: int) -> int:
    return sum(n for at, n in events if at > now - period)


def scale_up_limit(history: History, now: float, current: int, rules: dict[str, Any]) -> int:
    if rules.get("selectPolicy") == "Disabled":
        return current
    pick = min if rules.get("selectPolicy") == "Min" else max
    result: int | None = None
    for policy in rules.get("policies") or []:
        period = int(policy["periodSeconds"])
        start = (current - _changed_in(history.scale_up_events, now, period)
                 + _changed_in(history.scale_down_events, now, period))
        proposed = (start + int(policy["value"]) if policy["type"] == "Pods"
                    else math.ceil(start * (1 + int(policy["value"]) / 100)))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def scale_down_limit(history: History, now: float, current: int, rules: dict[str, Any]) -> int:
    if rules.get("selectPolicy") == "Disabled":
        return current
    # "Max" picks the policy that allows the biggest change, i.e. the fewest replicas
    pick = max if rules.get("selectPolicy") == "Min" else min
    result: int | None = None
    for policy in rules.get("policies") or []:
        period = int(policy["periodSeconds"])
        start = (current - _changed_in(history.scale_up_events, now, period)
                 + _changed_in(history.scale_down_events, now, period))
        proposed = (start - int(policy["value"]) if policy["type"] == "Pods"
                    else int(start * (1 - int(policy["value"]) / 100)))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def rate_limit(history: History, now: float, current: int, desired: int, min_replicas: int, max_replicas: int,
               behavior: dict[str, Any]) -> tuple[int, str, str]:
    """convertDesiredReplicasWithBehaviorRate: the policies' limit and min/max, with the ScalingLimited reason."""
    if desired > current:
        limit = max(current, scale_up_limit(history, now, current, behavior["scaleUp"]))
        if max_replicas > limit:
            allowed, reason, message = limit, "ScaleUpLimit", ("the desired replica count is increasing faster "
                                                               "than the maximum scale rate")
        else:
            allowed, reason, message = max_replicas, "TooManyReplicas", ("the desired replica count is more than "
                                                                         "the maximum replica count")
        if desired > allowed:
            return allowed, reason, message
    elif desired < current:
        limit = min(current, scale_down_limit(history, now, current, behavior["scaleDown"]))
        if min_replicas < limit:
            allowed, reason, message = limit, "ScaleDownLimit", ("the desired replica count is decreasing faster "
                                                                 "than the maximum scale rate")
        else:
            allowed, reason, message = min_replicas, "TooFewReplicas", ("the desired replica count is less than "
                                                                        "the minimum replica count")
        if desired < allowed:
            return allowed, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


# -- autoscaling/v1: stored as v2, converted on the way in and out -----------------------------------------

V1, V2 = "autoscaling/v1", "autoscaling/v2"
# What v1 has no field for travels in annotations, as Kubernetes' conversion keeps it (round trips lose nothing).
ANNOTATION_METRICS = "autoscaling.alpha.kubernetes.io/metrics"
ANNOTATION_BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"
ANNOTATION_CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
ANNOTATION_CURRENT_METRICS = "autoscaling.alpha.kubernetes.io/current-metrics"


def _cpu_utilization(metric: dict[str, Any]) -> bool:
    source = metric.get("resource") or {}
    return bool(metric.get("type") == "Resource" and source.get("name") == "cpu"
                and (source.get("target") or {}).get("type") == "Utilization")


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    annotations: dict[str, Any] = dict(meta.get("annotations") or {})
    meta["annotations"] = annotations
    return annotations


def _tidy(obj: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    if "annotations" in meta and not meta["annotations"]:
        del meta["annotations"]


def to_v1(obj: dict[str, Any]) -> dict[str, Any]:
    """A stored (v2) HorizontalPodAutoscaler as autoscaling/v1 shows it."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = V1
    annotations = _annotations(out)
    spec = out.get("spec")
    if isinstance(spec, dict):
        metrics = spec.pop("metrics", None) or []
        cpu = next((m for m in metrics if _cpu_utilization(m)), None)
        if cpu is not None:
            spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"].get("averageUtilization")
        others = [m for m in metrics if m is not cpu]
        if others:
            annotations[ANNOTATION_METRICS] = json.dumps(others)
        if spec.get("behavior"):
            annotations[ANNOTATION_BEHAVIOR] = json.dumps(spec.pop("behavior"))
        spec.pop("behavior", None)
    status = out.get("status")
    if isinstance(status, dict):
        current = status.pop("currentMetrics", None) or []
        cpu_now = next((m for m in current if m.get("type") == "Resource"
                        and (m.get("resource") or {}).get("name") == "cpu"), None)
        utilization = ((cpu_now or {}).get("resource") or {}).get("current", {}).get("averageUtilization")
        if utilization is not None:
            status["currentCPUUtilizationPercentage"] = utilization
        if current:
            annotations[ANNOTATION_CURRENT_METRICS] = json.dumps(current)
        if status.get("conditions"):
            annotations[ANNOTATION_CONDITIONS] = json.dumps(status.pop("conditions"))
        status.pop("conditions", None)
    _tidy(out)
    return out


def to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    """An autoscaling/v1 HorizontalPodAutoscaler in the stored (v2) form."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = V2
    annotations = _annotations(out)
    spec = out.get("spec")
    if isinstance(spec, dict):
        metrics: list[Any] = []
        target = spec.pop("targetCPUUtilizationPercentage", None)
        if target is not None:
            metrics.append({"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}})
        metrics += _loads(annotations.pop(ANNOTATION_METRICS, None), [])
        if metrics:
            spec["metrics"] = metrics
        behavior = _loads(annotations.pop(ANNOTATION_BEHAVIOR, None), None)
        if behavior:
            spec["behavior"] = behavior
    current = _loads(annotations.pop(ANNOTATION_CURRENT_METRICS, None), [])
    conditions = _loads(annotations.pop(ANNOTATION_CONDITIONS, None), [])
    status = out.get("status")
    if isinstance(status, dict):
        utilization = status.pop("currentCPUUtilizationPercentage", None)
        if not current and utilization is not None:
            current = [{"type": "Resource", "resource": {"name": "cpu",
                                                         "current": {"averageUtilization": utilization}}}]
        if current:
            status["currentMetrics"] = current
        if conditions:
            status["conditions"] = conditions
    _tidy(out)
    return out


def _loads(text: Any, default: Any) -> Any:
    if not isinstance(text, str):
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default
