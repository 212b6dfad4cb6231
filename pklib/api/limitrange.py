"""LimitRange semantics (Kubernetes' LimitRanger admission plugin), pure.

`apply_defaults(ranges, pod)` fills in each container's missing requests and limits from the Container items'
`defaultRequest`/`default` (and records what it set in the `kubernetes.io/limit-ranger` annotation);
`pod_violations` / `claim_violations` check min, max and maxLimitRequestRatio of the Container, Pod and
PersistentVolumeClaim items, in Kubernetes' words. A request absent after defaulting counts as its limit, as the
API's own defaulting (requests default to limits) does before admission in Kubernetes.
"""
from __future__ import annotations

from typing import Any, Iterable

from pklib.api.podresources import Amounts, pod_amounts
from pklib.quantity import Quantity, QuantityError, parse_quantity

Obj = dict[str, Any]
CONTAINER, POD, CLAIM = "Container", "Pod", "PersistentVolumeClaim"
LIMIT_TYPES = (POD, CONTAINER, CLAIM)
ANNOTATION = "kubernetes.io/limit-ranger"


def _items(ranges: Iterable[Obj], kind: str) -> list[Obj]:
    return [item for r in ranges for item in ((r.get("spec") or {}).get("limits") or [])
            if isinstance(item, dict) and item.get("type") == kind]


def _amounts(values: Any) -> Amounts:
    out: Amounts = {}
    for name, text in (values or {}).items() if isinstance(values, dict) else ():
        try:
            out[name] = parse_quantity(text)
        except QuantityError:
            continue  # validation reports it
    return out


def _containers(spec: Obj) -> list[Obj]:
    return [c for part in ("initContainers", "containers") for c in spec.get(part) or [] if isinstance(c, dict)]


def apply_defaults(ranges: Iterable[Obj], pod: Obj) -> None:
    """Set the Container items' default requests and limits on `pod`'s containers that lack them (in place)."""
    defaults: dict[str, Obj] = {"requests": {}, "limits": {}}
    for item in _items(ranges, CONTAINER):
        defaults["requests"].update(item.get("defaultRequest") or {})
        defaults["limits"].update(item.get("default") or {})
    if not defaults["requests"] and not defaults["limits"]:
        return
    notes: list[str] = []
    spec = pod.get("spec") or {}
    for part, prefix in (("containers", "container"), ("initContainers", "init container")):
        for c in spec.get(part) or []:
            resources = c.setdefault("resources", {}) if isinstance(c, dict) else None
            if isinstance(resources, dict):
                notes += _merge(resources, defaults, f"{prefix} {c.get('name')}")
    if notes:
        meta = pod.setdefault("metadata", {})
        meta.setdefault("annotations", {})[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


def _merge(resources: Obj, defaults: dict[str, Obj], who: str) -> list[str]:
    notes = []
    for part, word in (("requests", "request"), ("limits", "limit")):
        current = resources.get(part) or {}
        if not isinstance(current, dict):
            continue
        added = sorted(name for name in defaults[part] if name not in current)
        if added:
            resources[part] = {**current, **{name: defaults[part][name] for name in added}}
            notes.append(f"{', '.join(added)} {word} for {who}")
    return notes


def _container_requirements(c: Obj) -> tuple[Amounts, Amounts]:
    resources = c.get("resources") or {}
    limits = _amounts(resources.get("limits"))
    requests = {**limits, **_amounts(resources.get("requests"))}  # an absent request is its limit
    return requests, limits


def _min(kind: str, name: str, enforced: Quantity, requests: Amounts, limits: Amounts) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    if req is None:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if req.value < enforced.value:
        return f"minimum {name} usage per {kind} is {enforced}, but request is {req}"
    if lim is not None and lim.value < enforced.value:
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
    return None


def _max(kind: str, name: str, enforced: Quantity, requests: Amounts, limits: Amounts) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    if lim is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if lim.value > enforced.value:
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
    if req is not None and req.value > enforced.value:
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return None


def _ratio(kind: str, name: str, enforced: Quantity, requests: Amounts, limits: Amounts) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    if req is None or req.value == 0:
        return (f"{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or "
                f"request is 0")
    if lim is None or lim.value == 0:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
    ratio = lim.value / req.value
    if ratio > enforced.value:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {float(ratio):f}"
    return None


def _check(kind: str, item: Obj, requests: Amounts, limits: Amounts) -> list[str]:
    out: list[str] = []
    for field, rule in (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio)):
        for name, enforced in sorted(_amounts(item.get(field)).items()):
            problem = rule(kind, name, enforced, requests, limits)
            if problem:
                out.append(problem)
    return out


def pod_violations(ranges: Iterable[Obj], pod: Obj) -> list[str]:
    """What in `pod` (defaults applied) breaks the Container and Pod items of `ranges`."""
    ranges = list(ranges)
    spec = pod.get("spec") or {}
    out: list[str] = []
    for item in _items(ranges, CONTAINER):
        for c in _containers(spec):
            out += _check(CONTAINER, item, *_container_requirements(c))
    pod_items = _items(ranges, POD)
    if pod_items:
        requests, limits = pod_amounts(spec, "requests"), pod_amounts(spec, "limits")
        for item in pod_items:
            out += _check(POD, item, requests, limits)
    return out


def claim_violations(ranges: Iterable[Obj], claim: Obj) -> list[str]:
    """What in a PersistentVolumeClaim breaks the PersistentVolumeClaim items' min and max (of its requests)."""
    requests = _amounts(((claim.get("spec") or {}).get("resources") or {}).get("requests"))
    out: list[str] = []
    for item in _items(ranges, CLAIM):
        for name, enforced in sorted(_amounts(item.get("min")).items()):
            problem = _min(CLAIM, name, enforced, requests, {})
            if problem:
                out.append(problem)
        for name, enforced in sorted(_amounts(item.get("max")).items()):
            req = requests.get(name)
            if req is None:
                out.append(f"maximum {name} usage per {CLAIM} is {enforced}.  No request is specified")
            elif req.value > enforced.value:
                out.append(f"maximum {name} usage per {CLAIM} is {enforced}, but request is {req}")
    return out


def aggregate(problems: list[str]) -> str:
    """Go's utilerrors.NewAggregate message: one error as is, several in brackets."""
    return problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
