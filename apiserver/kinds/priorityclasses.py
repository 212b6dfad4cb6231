"""PriorityClass (scheduling.k8s.io/v1) and the Priority admission of pods.

A class maps a name to an integer priority (user classes up to 1e9; the `system-` prefix is reserved for the
built-in system-cluster-critical and system-node-critical, which the apiserver creates at startup). At most one
class is the `globalDefault`. A pod's `priorityClassName` (or the global default, or nothing: 0) is resolved
into `spec.priority` and `spec.preemptionPolicy` when the pod is created, as Kubernetes' Priority admission
plugin does; a pod may not set them to anything else itself.
"""
from __future__ import annotations

from typing import Any

from pklib.api.priority import (BUILTIN_CLASSES, DEFAULT_PREEMPTION_POLICY, HIGHEST_USER_DEFINABLE,
                                PREEMPTION_POLICIES, SYSTEM_PREFIX)
from pklib.resources import must_lookup

from ..status import forbidden as forbidden_status
from ..watchcache import resource_prefix
from .base import KindStrategy, Rollback, nothing
from .fields import Cause, Path, forbidden, immutable, invalid, not_supported

PRIORITY_CLASSES = must_lookup("priorityclasses")
_PREFIX = resource_prefix(PRIORITY_CLASSES.group, PRIORITY_CLASSES.plural)
INT32 = (-(2 ** 31), 2 ** 31 - 1)


def _system_class_error(name: str, value: Any, global_default: bool) -> str | None:
    if name not in BUILTIN_CLASSES:
        return f"{name} is not a known system priority class"
    if value != BUILTIN_CLASSES[name]:
        return f"value of {name} PriorityClass must be {BUILTIN_CLASSES[name]}"
    if global_default:
        return f"globalDefault of {name} PriorityClass must be false"
    return None


class PriorityClassStrategy(KindStrategy):
    kind = "PriorityClass"
    namespaced = False

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        obj.setdefault("preemptionPolicy", DEFAULT_PREEMPTION_POLICY)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        causes: list[Cause] = []
        name = (obj.get("metadata") or {}).get("name") or ""
        value = obj["value"]
        if not INT32[0] <= value <= INT32[1]:
            causes.append(invalid(Path("value"), value, "must be a 32-bit integer"))
        if name.startswith(SYSTEM_PREFIX):
            error = _system_class_error(name, value, bool(obj.get("globalDefault")))
            if error:
                causes.append(forbidden(Path("metadata").child("name"),
                                        f"priority class names with '{SYSTEM_PREFIX}' prefix are reserved for "
                                        f"system use only. error: {error}"))
        elif value > HIGHEST_USER_DEFINABLE:
            causes.append(forbidden(Path("value"),
                                    f"maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"))
        policy = obj.get("preemptionPolicy")
        if policy not in PREEMPTION_POLICIES:
            causes.append(not_supported(Path("preemptionPolicy"), policy, PREEMPTION_POLICIES))
        if old is not None:
            if value != old.get("value"):
                causes.append(forbidden(Path("value"), "may not be changed in an update."))
            if policy != old.get("preemptionPolicy"):
                causes.append(immutable(Path("preemptionPolicy"), policy))
        return causes

    async def begin_create(self, obj: dict[str, Any], storage: Any) -> Rollback:
        await _check_single_default(obj, storage)
        return nothing

    async def begin_update(self, obj: dict[str, Any], old: dict[str, Any], storage: Any) -> Rollback:
        await _check_single_default(obj, storage)
        return nothing


async def _classes(storage: Any) -> list[dict[str, Any]]:
    result = await storage.list(_PREFIX)
    return [e.value for e in result.entries]


async def _check_single_default(obj: dict[str, Any], storage: Any) -> None:
    if not obj.get("globalDefault"):
        return
    name = obj["metadata"]["name"]
    for other in await _classes(storage):
        other_name = (other.get("metadata") or {}).get("name")
        if other.get("globalDefault") and other_name != name:
            raise forbidden_status(f'priorityclasses.scheduling.k8s.io "{name}" is forbidden: PriorityClass '
                                   f"{other_name} is already marked as default. Only one default can exist")


async def resolve_pod_priority(pod: dict[str, Any], storage: Any) -> None:
    """The Priority admission plugin: fills spec.priority (and preemptionPolicy) from the pod's class."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    pod_name = (pod.get("metadata") or {}).get("name") or ""
    class_name = spec.get("priorityClassName") or ""
    policy = DEFAULT_PREEMPTION_POLICY
    value = 0
    if class_name:
        entry = await storage.get(f"{_PREFIX}{class_name}")
        if entry is None:
            raise forbidden_status(f'pods "{pod_name}" is forbidden: no PriorityClass with name {class_name} '
                                   "was found")
        value, policy = int(entry.value["value"]), entry.value.get("preemptionPolicy") or policy
    else:
        defaults = [c for c in await _classes(storage) if c.get("globalDefault")]
        if defaults:
            chosen = min(defaults, key=lambda c: int(c["value"]))
            class_name, value = chosen["metadata"]["name"], int(chosen["value"])
            policy = chosen.get("preemptionPolicy") or policy
            spec["priorityClassName"] = class_name
    if "priority" in spec and spec["priority"] != value:
        raise forbidden_status(f'pods "{pod_name}" is forbidden: the integer value of priority ({spec["priority"]}) '
                               f"must not be provided in pod spec; priority admission controller computed {value} "
                               "from the given PriorityClass name")
    if spec.get("preemptionPolicy") not in (None, policy):
        raise forbidden_status(f'pods "{pod_name}" is forbidden: the string value of PreemptionPolicy '
                               f'({spec["preemptionPolicy"]}) must not be provided in pod spec; priority admission '
                               f"controller computed {policy} from the given PriorityClass name")
    spec["priority"] = value
    spec["preemptionPolicy"] = policy
