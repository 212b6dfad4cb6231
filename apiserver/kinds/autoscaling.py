"""autoscaling/v2 HorizontalPodAutoscaler: scales a workload's scale subresource between minReplicas and
maxReplicas from metrics (controllers/hpa.py). Defaults and validation as Kubernetes' (pkg/apis/autoscaling)."""
from __future__ import annotations

from typing import Any

from pklib.api import autoscaling as hpa
from pklib.quantity import QuantityError, parse_quantity

from .base import KindStrategy
from .fields import Cause, Path, invalid, not_supported, required
from .meta import as_dict


def _target(target: dict[str, Any], path: Path, resource: bool) -> list[Cause]:
    causes: list[Cause] = []
    kind = target.get("type")
    if kind not in hpa.TARGET_TYPES:
        return [not_supported(path.child("type"), kind, hpa.TARGET_TYPES)]
    if resource and kind == "Value":
        causes.append(invalid(path.child("type"), kind, "must be either Utilization or AverageValue"))
    if kind == "Utilization":
        value = target.get("averageUtilization")
        if value is None:
            causes.append(required(path.child("averageUtilization"),
                                   "must set averageUtilization when target type is Utilization"))
        elif value <= 0:
            causes.append(invalid(path.child("averageUtilization"), value, "must be greater than 0"))
    for field, needed in (("averageValue", "AverageValue"), ("value", "Value")):
        if kind != needed:
            continue
        if field not in target:
            causes.append(required(path.child(field), f"must set {field} when target type is {needed}"))
            continue
        try:
            if parse_quantity(target[field]).value <= 0:
                causes.append(invalid(path.child(field), target[field], "must be positive"))
        except QuantityError as e:
            causes.append(invalid(path.child(field), target[field], str(e)))
    return causes


def _metric(metric: dict[str, Any], path: Path) -> list[Cause]:
    kind = metric.get("type")
    if kind not in hpa.METRIC_TYPES:
        return [not_supported(path.child("type"), kind, hpa.METRIC_TYPES)]
    member = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods", "Object": "object",
              "External": "external"}[kind]
    source = metric.get(member)
    if not isinstance(source, dict):
        return [required(path.child(member), "must populate information for the given metric source")]
    if kind in ("Resource", "ContainerResource"):
        causes = _target(as_dict(source.get("target")), path.child(member).child("target"), True)
        if not source.get("name"):
            causes.append(required(path.child(member).child("name"), "must specify a resource name"))
        return causes
    return []


def _rules(rules: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    window = rules.get("stabilizationWindowSeconds")
    if window is not None and not 0 <= window <= hpa.MAX_WINDOW:
        causes.append(invalid(path.child("stabilizationWindowSeconds"), window,
                              f"must be less than or equal to {hpa.MAX_WINDOW}" if window > 0
                              else "must be greater than or equal to zero"))
    select = rules.get("selectPolicy")
    if select is not None and select not in hpa.SELECT_POLICIES:
        causes.append(not_supported(path.child("selectPolicy"), select, hpa.SELECT_POLICIES))
    policies = rules.get("policies") or []
    if not policies and select != "Disabled":
        causes.append(required(path.child("policies"), "must specify at least one Policy"))
    for i, policy in enumerate(policies):
        p = path.child("policies").index(i)
        if policy["type"] not in hpa.POLICY_TYPES:
            causes.append(not_supported(p.child("type"), policy["type"], hpa.POLICY_TYPES))
        if policy["value"] <= 0:
            causes.append(invalid(p.child("value"), policy["value"], "must be greater than zero"))
        if not 0 < policy["periodSeconds"] <= hpa.MAX_POLICY_PERIOD:
            causes.append(invalid(p.child("periodSeconds"), policy["periodSeconds"],
                                  "must be greater than zero" if policy["periodSeconds"] <= 0 else
                                  f"must be less than or equal to {hpa.MAX_POLICY_PERIOD}"))
    return causes


class HorizontalPodAutoscalerStrategy(KindStrategy):
    kind = "HorizontalPodAutoscaler"
    status_zero = {"currentReplicas": 0, "desiredReplicas": 0}
    storage_version = hpa.V2   # autoscaling/v1 is served by converting (pklib/api/autoscaling.py to_v1/to_v2)

    def convert(self, obj: dict[str, Any], api_version: str) -> None:
        if obj.get("apiVersion") == api_version or api_version not in (hpa.V1, hpa.V2):
            obj["apiVersion"] = api_version
            return
        converted = hpa.to_v1(obj) if api_version == hpa.V1 else hpa.to_v2(obj)
        obj.clear()
        obj.update(converted)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            hpa.default_spec(spec)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        causes: list[Cause] = []
        ref = as_dict(spec.get("scaleTargetRef"))
        if not ref.get("kind"):
            causes.append(required(path.child("scaleTargetRef").child("kind")))
        if not ref.get("name"):
            causes.append(required(path.child("scaleTargetRef").child("name")))
        low, high = spec.get("minReplicas", 1), spec["maxReplicas"]
        if low < 1:
            causes.append(invalid(path.child("minReplicas"), low, "must be greater than or equal to 1"))
        if high < 1:
            causes.append(invalid(path.child("maxReplicas"), high, "must be greater than 0"))
        elif high < low:
            causes.append(invalid(path.child("maxReplicas"), high, "must be greater than or equal to `minReplicas`"))
        for i, metric in enumerate(spec.get("metrics") or []):
            causes += _metric(metric, path.child("metrics").index(i))
        behavior = as_dict(spec.get("behavior"))
        for direction in ("scaleUp", "scaleDown"):
            if isinstance(behavior.get(direction), dict):
                causes += _rules(behavior[direction], path.child("behavior").child(direction))
        return causes
