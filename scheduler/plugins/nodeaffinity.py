"""NodeAffinity: spec.nodeSelector plus requiredDuringSchedulingIgnoredDuringExecution."""
from __future__ import annotations

from typing import Any

from ..framework import NodeInfo, PodInfo

REASON = "node(s) didn't match Pod's node affinity/selector"


def _requirement_matches(req: dict[str, Any], values: dict[str, str]) -> bool:
    key, op = req.get("key") or "", req.get("operator") or ""
    wanted = req.get("values") or []
    present = key in values
    if op == "In":
        return present and values[key] in wanted
    if op == "NotIn":
        return not present or values[key] not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        # Both sides must be integers; anything else simply does not match (as in Kubernetes).
        if not present or len(wanted) != 1:
            return False
        try:
            have, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def term_matches(term: dict[str, Any], node: NodeInfo) -> bool:
    """A term matches when all its matchExpressions (labels) and matchFields hold; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    if not all(_requirement_matches(r, node.labels) for r in exprs):
        return False
    # metadata.name is the only field Kubernetes supports in matchFields.
    return all(r.get("key") == "metadata.name" and _requirement_matches(r, {"metadata.name": node.name})
               for r in fields)


def node_selector_matches(selector: dict[str, Any] | None, node: NodeInfo) -> bool:
    """A NodeSelector (terms are ORed); a missing selector matches every node."""
    if selector is None:
        return True
    return any(term_matches(t, node) for t in selector.get("nodeSelectorTerms") or [])


def required_terms(pod: PodInfo) -> dict[str, Any] | None:
    affinity = (pod.spec.get("affinity") or {}).get("nodeAffinity") or {}
    required: dict[str, Any] | None = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    return required


def relevant(pod: PodInfo) -> bool:
    return bool(pod.spec.get("nodeSelector")) or required_terms(pod) is not None


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    selector = pod.spec.get("nodeSelector") or {}
    if any(node.labels.get(k) != v for k, v in selector.items()):
        return [REASON]
    if not node_selector_matches(required_terms(pod), node):
        return [REASON]
    return None
