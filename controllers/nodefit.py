"""Does a pod template fit a node? (nodeSelector, required node affinity, taints, unschedulable)

The DaemonSet controller decides placement itself, the way Kubernetes' daemon
controller runs its own predicates before handing pods to nodes.
"""
from __future__ import annotations

from typing import Any

from pklib.informer import Obj

from .util import meta

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if toleration.get("operator") == "Exists":
        return not key or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated(taints: list[dict[str, Any]], tolerations: list[dict[str, Any]],
                effects: tuple[str, ...]) -> list[dict[str, Any]]:
    return [t for t in taints if t.get("effect") in effects and not any(tolerates(tol, t) for tol in tolerations)]


def _expression_matches(expr: dict[str, Any], value: str | None) -> bool:
    op, values = expr.get("operator"), [str(v) for v in expr.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def required_affinity_matches(affinity: dict[str, Any] | None, node: Obj) -> bool:
    required = (((affinity or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    labels = meta(node).get("labels") or {}
    fields = {"metadata.name": meta(node).get("name")}
    for term in terms:
        exprs, field_exprs = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not field_exprs:
            continue  # an empty term matches nothing, as in Kubernetes
        if all(_expression_matches(e, labels.get(e.get("key", ""))) for e in exprs) and \
                all(_expression_matches(e, fields.get(e.get("key", ""))) for e in field_exprs):
            return True
    return False


def placement(pod_spec: dict[str, Any], node: Obj) -> tuple[bool, bool]:
    """(should run a new pod here, may an existing pod keep running here)."""
    labels = meta(node).get("labels") or {}
    selector = pod_spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False, False
    if not required_affinity_matches(pod_spec.get("affinity"), node):
        return False, False
    tolerations = pod_spec.get("tolerations") or []
    taints = list((node.get("spec") or {}).get("taints") or [])
    if untolerated(taints, tolerations, ("NoExecute",)):
        return False, False
    if (node.get("spec") or {}).get("unschedulable"):
        taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"})
    if untolerated(taints, tolerations, ("NoSchedule",)):
        return False, True
    return True, True
