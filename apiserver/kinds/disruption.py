"""policy/v1 PodDisruptionBudget: how many pods of a set may be down at once by voluntary disruption.

Either minAvailable or maxUnavailable (an integer or a percentage) over the pods a selector picks. The disruption
controller writes the status; the Eviction subresource (apiserver/eviction.py) reads and decrements it.
"""
from __future__ import annotations

from typing import Any

from pklib.api.disruption import UNHEALTHY_POD_EVICTION_POLICIES

from .base import KindStrategy
from .fields import Cause, Path, invalid, not_supported
from .meta import as_dict
from .workloads import int_or_percent, validate_selector


class PodDisruptionBudgetStrategy(KindStrategy):
    kind = "PodDisruptionBudget"
    status_zero = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        causes: list[Cause] = []
        if "minAvailable" in spec and "maxUnavailable" in spec:
            causes.append(invalid(path, spec, "minAvailable and maxUnavailable cannot be both set"))
        for field in ("minAvailable", "maxUnavailable"):
            if field in spec:
                causes += int_or_percent(spec[field], path.child(field))[0]
        if isinstance(spec.get("selector"), dict):
            causes += validate_selector(spec["selector"], path.child("selector"))
        policy = spec.get("unhealthyPodEvictionPolicy")
        if policy is not None and policy not in UNHEALTHY_POD_EVICTION_POLICIES:
            causes.append(not_supported(path.child("unhealthyPodEvictionPolicy"), policy,
                                        UNHEALTHY_POD_EVICTION_POLICIES))
        return causes
