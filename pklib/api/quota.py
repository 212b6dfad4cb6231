"""ResourceQuota semantics, pure: what an object uses, which quotas cover it, and Kubernetes' words for a refusal.

Shared by the apiserver's quota admission (charges a create against `status.used`) and the resourcequota
controller (recomputes `status.used` from the objects). Resource names as Kubernetes counts them:
`pods`, `services`, `configmaps`, `secrets`, `persistentvolumeclaims`, `replicationcontrollers`,
`resourcequotas`, `services.nodeports`, `services.loadbalancers`, `count/<plural>[.<group>]` for any kind,
the compute resources of pods (`requests.cpu`, `cpu`, `limits.memory`, ...) and PVCs' `requests.storage` (also per
storage class: `<class>.storageclass.storage.k8s.io/requests.storage` and `.../persistentvolumeclaims`).
"""
from __future__ import annotations

from datetime import timedelta
from fractions import Fraction
from typing import Any, Iterable

from pklib.api.podresources import pod_amounts
from pklib.api.qos import qos_class
from pklib.api.timefmt import now, parse_time
from pklib.quantity import Quantity, QuantityError, parse_quantity

Obj = dict[str, Any]
Usage = dict[str, Quantity]

# Kinds with a legacy object-count name (besides count/<plural>).
_LEGACY_COUNTS = {("", "pods"): "pods", ("", "services"): "services", ("", "configmaps"): "configmaps",
                  ("", "secrets"): "secrets", ("", "persistentvolumeclaims"): "persistentvolumeclaims",
                  ("", "replicationcontrollers"): "replicationcontrollers", ("", "resourcequotas"): "resourcequotas"}
# Compute resources of pods a quota may require every container to state (Kubernetes' pod evaluator).
_MUST_SPECIFY = {"cpu": ("requests", "cpu"), "requests.cpu": ("requests", "cpu"),
                 "memory": ("requests", "memory"), "requests.memory": ("requests", "memory"),
                 "limits.cpu": ("limits", "cpu"), "limits.memory": ("limits", "memory")}
SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
          "CrossNamespacePodAffinity")
_STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"


def count_name(group: str, plural: str) -> str:
    return f"count/{plural}.{group}" if group else f"count/{plural}"


def _one() -> Quantity:
    return Quantity(Fraction(1))


def _pod_counts(pod: Obj) -> bool:
    """Kubernetes' QuotaV1Pod: a finished pod holds nothing, nor one stuck deleting past its grace period (a lost
    node must not keep its owner from replacing it)."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    deleting, grace = parse_time(meta.get("deletionTimestamp")), meta.get("deletionGracePeriodSeconds")
    return deleting is None or grace is None or now() <= deleting + timedelta(seconds=int(grace))


def _pod_usage(pod: Obj) -> Usage:
    if not _pod_counts(pod):
        return {}
    spec = pod.get("spec") or {}
    out: Usage = {"pods": _one()}
    for part, amounts in (("requests", pod_amounts(spec, "requests")), ("limits", pod_amounts(spec, "limits"))):
        for name, q in amounts.items():
            out[f"{part}.{name}"] = q
            if part == "requests" and name in ("cpu", "memory", "ephemeral-storage"):
                out[name] = q
    return out


def _service_usage(svc: Obj) -> Usage:
    spec = svc.get("spec") or {}
    out: Usage = {"services": _one()}
    kind = spec.get("type") or "ClusterIP"
    if kind in ("NodePort", "LoadBalancer"):
        out["services.nodeports"] = Quantity(Fraction(len(spec.get("ports") or [])))
    if kind == "LoadBalancer":
        out["services.loadbalancers"] = _one()
    return out


def _claim_usage(claim: Obj) -> Usage:
    spec = claim.get("spec") or {}
    out: Usage = {"persistentvolumeclaims": _one()}
    storage_class = spec.get("storageClassName") or ""
    try:
        storage = parse_quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage", 0))
    except QuantityError:
        storage = Quantity(Fraction(0))
    out["requests.storage"] = storage
    if storage_class:
        out[f"{storage_class}{_STORAGE_CLASS_SUFFIX}requests.storage"] = storage
        out[f"{storage_class}{_STORAGE_CLASS_SUFFIX}persistentvolumeclaims"] = _one()
    return out


def usage(group: str, plural: str, obj: Obj) -> Usage:
    """Everything a quota may count that `obj` (of the kind group/plural) uses."""
    if group == "" and plural == "pods":
        out = _pod_usage(obj)
        if not out:
            return {}
    elif group == "" and plural == "services":
        out = _service_usage(obj)
    elif group == "" and plural == "persistentvolumeclaims":
        out = _claim_usage(obj)
    else:
        out = {}
        legacy = _LEGACY_COUNTS.get((group, plural))
        if legacy:
            out[legacy] = _one()
    out[count_name(group, plural)] = _one()
    return out


def _terminating(pod: Obj) -> bool:
    return (pod.get("spec") or {}).get("activeDeadlineSeconds") is not None


def _scope_matches(scope: str, operator: str, values: list[str], pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    if scope == "Terminating":
        return _terminating(pod)
    if scope == "NotTerminating":
        return not _terminating(pod)
    if scope == "BestEffort":
        return qos_class(spec) == "BestEffort"
    if scope == "NotBestEffort":
        return qos_class(spec) != "BestEffort"
    if scope == "PriorityClass":
        name = spec.get("priorityClassName") or ""
        if operator == "Exists":
            return bool(name)
        if operator == "DoesNotExist":
            return not name
        if operator == "In":
            return name in values
        if operator == "NotIn":
            return name not in values
    if scope == "CrossNamespacePodAffinity":
        affinity = spec.get("affinity") or {}
        terms = [t for kind in ("podAffinity", "podAntiAffinity") for part in (affinity.get(kind) or {}).values()
                 for t in (part or [])]
        return any((t.get("podAffinityTerm") or t).get("namespaceSelector") is not None
                   or (t.get("podAffinityTerm") or t).get("namespaces") for t in terms)
    return False


def _scopes(quota: Obj) -> list[tuple[str, str, list[str]]]:
    spec = quota.get("spec") or {}
    out: list[tuple[str, str, list[str]]] = [(s, "Exists", []) for s in spec.get("scopes") or []]
    for expr in (spec.get("scopeSelector") or {}).get("matchExpressions") or []:
        out.append((expr.get("scopeName", ""), expr.get("operator", ""), list(expr.get("values") or [])))
    return out


def covers(quota: Obj, group: str, plural: str, obj: Obj) -> bool:
    """Whether `quota` counts `obj`: a quota with scopes counts only the pods they all match."""
    scopes = _scopes(quota)
    if not scopes:
        return True
    if (group, plural) != ("", "pods"):
        return False
    return all(_scope_matches(s, op, values, obj) for s, op, values in scopes)


def hard(quota: Obj) -> Usage:
    out: Usage = {}
    for name, text in ((quota.get("spec") or {}).get("hard") or {}).items():
        try:
            out[name] = parse_quantity(text)
        except QuantityError:
            continue
    return out


def parse_used(values: Any) -> Usage:
    out: Usage = {}
    for name, text in (values or {}).items() if isinstance(values, dict) else ():
        try:
            out[name] = parse_quantity(text)
        except QuantityError:
            continue
    return out


def total(items: Iterable[Usage], names: Iterable[str]) -> dict[str, str]:
    """The sum of `items` for each of `names` ("0" when nothing uses it), as the strings status.used holds."""
    sums: dict[str, Quantity | None] = {name: None for name in names}
    for item in items:
        for name, q in item.items():
            if name in sums:
                prev = sums[name]
                # Quantity.Add: the sum keeps the first operand's format, unless that is zero
                sums[name] = q if prev is None or prev.value == 0 else Quantity(prev.value + q.value, prev.format)
    return {name: str(q) if q is not None else "0" for name, q in sums.items()}


def missing_requirements(quota_hard: Iterable[str], pod: Obj) -> str | None:
    """Kubernetes' pod evaluator constraint: when a quota limits cpu or memory requests/limits, every container
    must state them. The refusal's text (`must specify limits.cpu for: app; ...`) or None."""
    required = [name for name in quota_hard if name in _MUST_SPECIFY]
    if not required:
        return None
    spec = pod.get("spec") or {}
    missing: dict[str, set[str]] = {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = (c or {}).get("resources") or {}
        for name in required:
            part, resource = _MUST_SPECIFY[name]
            if resource not in (resources.get(part) or {}):
                missing.setdefault(name, set()).add(str(c.get("name")))
    if not missing:
        return None
    return "must specify " + "; ".join(f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing))


def _pretty(values: dict[str, Quantity]) -> str:
    return ",".join(f"{name}={values[name]}" for name in sorted(values))


def exceeded(name: str, limits: Usage, used: Usage, delta: Usage) -> str | None:
    """Kubernetes' refusal text when adding `delta` to `used` breaks `limits`, else None."""
    over = [n for n in delta if n in limits and
            (used.get(n, Quantity(Fraction(0))).value + delta[n].value) > limits[n].value]
    if not over:
        return None
    zero = Quantity(Fraction(0))
    return (f"exceeded quota: {name}, requested: {_pretty({n: delta[n] for n in over})}, "
            f"used: {_pretty({n: used.get(n, zero) for n in over})}, limited: {_pretty({n: limits[n] for n in over})}")


def increase(before: Usage, after: Usage) -> Usage:
    """What `after` uses beyond `before` (the resources that grew, by how much)."""
    zero = Fraction(0)
    return {n: Quantity(q.value - (before[n].value if n in before else zero), q.format) for n, q in after.items()
            if q.value > (before[n].value if n in before else zero)}


def add(used: Usage, delta: Usage, names: Iterable[str]) -> dict[str, str]:
    """`used` plus `delta` for `names`, as the strings status.used holds."""
    return total([used, delta], names)


_POD_NAMES = ("cpu", "memory", "ephemeral-storage")


def kind_of(name: str) -> tuple[str, str] | None:
    """(group, plural) of the kind whose objects a quota's resource `name` counts (None: none pkube knows)."""
    if name.startswith("count/"):
        plural, _, group = name[len("count/"):].partition(".")
        return group, plural
    for (group, plural), legacy in _LEGACY_COUNTS.items():
        if name == legacy:
            return group, plural
    if name.startswith("services."):
        return "", "services"
    if name == "requests.storage" or _STORAGE_CLASS_SUFFIX in name:
        return "", "persistentvolumeclaims"
    if name in _POD_NAMES or name.startswith(("requests.", "limits.")):
        return "", "pods"
    return None


def compute_used(quota: Obj, objects: dict[tuple[str, str], list[Obj]]) -> dict[str, str]:
    """status.used of `quota` from the namespace's objects (by kind: see `kind_of`)."""
    names = list(((quota.get("spec") or {}).get("hard") or {}))
    items = [usage(group, plural, obj) for (group, plural), objs in objects.items() for obj in objs
             if covers(quota, group, plural, obj)]
    return total(items, names)
