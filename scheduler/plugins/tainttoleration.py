"""TaintToleration: NoSchedule/NoExecute taints filter, PreferNoSchedule taints lower the score."""
from __future__ import annotations

from typing import Any, Sequence

from ..framework import NodeInfo, PodInfo


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    # An empty key with operator Exists tolerates every taint.
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    return op == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    for taint in node.hard_taints:
        if not tolerated(pod.tolerations, taint):
            return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"]
    return None


def intolerable_preferences(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Raw scores: how many PreferNoSchedule taints the pod does not tolerate (lower is better)."""
    return [float(sum(1 for taint in n.soft_taints if not tolerated(pod.tolerations, taint))) if n.soft_taints
            else 0.0 for n in nodes]
