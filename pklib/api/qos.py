"""A pod's QoS class (Kubernetes' ComputePodQOS, pkg/apis/core/v1/helper/qos).

Only cpu and memory count, and only values above zero. A container's missing request is taken from its limit,
as the API server's defaulting does. Guaranteed: every container limits both cpu and memory, and the pod's
summed requests equal its summed limits; BestEffort: no request or limit anywhere; otherwise Burstable.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from pklib.quantity import QuantityError, parse_quantity

QOS_RESOURCES = ("cpu", "memory")


def _positive(value: Any) -> Fraction | None:
    try:
        v = parse_quantity(value).value
    except QuantityError:
        return None
    return v if v > 0 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def qos_class(spec: dict[str, Any]) -> str:
    """Safe on a spec that has not been validated yet (the API server defaults before it validates)."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in [*_list(spec.get("containers")), *_list(spec.get("initContainers"))]:
        res = _dict(_dict(c).get("resources"))
        c_limits = _dict(res.get("limits"))
        c_requests = {**c_limits, **_dict(res.get("requests"))}
        for name in QOS_RESOURCES:
            req, lim = _positive(c_requests.get(name)), _positive(c_limits.get(name))
            if req is not None:
                requests[name] = requests.get(name, Fraction(0)) + req
            if lim is not None:
                limits[name] = limits.get(name, Fraction(0)) + lim
            else:
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"
