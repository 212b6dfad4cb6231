"""Node selectors: `spec.nodeSelector` and NodeSelectorTerms (component-helpers scheduling/corev1/nodeaffinity).

Terms are ORed, the requirements of a term ANDed; an empty term matches nothing. matchExpressions look at the
node's labels, matchFields at its fields (only `metadata.name` exists).
"""
from __future__ import annotations

from typing import Any, Mapping


def requirement_matches(requirement: dict[str, Any], values: Mapping[str, str]) -> bool:
    key, operator = requirement.get("key") or "", requirement.get("operator") or ""
    wanted = [str(v) for v in requirement.get("values") or []]
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        # Exactly one value, and both sides integers; anything else does not match.
        if not present or len(wanted) != 1:
            return False
        try:
            have, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def term_matches(term: dict[str, Any], labels: Mapping[str, str], name: str) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    if not all(requirement_matches(r, labels) for r in expressions):
        return False
    return all(r.get("key") == "metadata.name" and requirement_matches(r, {"metadata.name": name})
               for r in fields)


def node_selector_matches(selector: dict[str, Any] | None, labels: Mapping[str, str], name: str) -> bool:
    """A NodeSelector (e.g. required node affinity); a missing selector matches every node."""
    if selector is None:
        return True
    return any(term_matches(t, labels, name) for t in selector.get("nodeSelectorTerms") or [])


def required_node_affinity(spec: dict[str, Any]) -> dict[str, Any] | None:
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required: dict[str, Any] | None = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    return required


def pod_matches_node(spec: dict[str, Any], labels: Mapping[str, str], name: str) -> bool:
    """`spec.nodeSelector` (every label equal) and the required node affinity both hold."""
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    return node_selector_matches(required_node_affinity(spec), labels, name)
