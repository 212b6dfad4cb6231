"""Spreads the pods of one controller (same controller ownerReference) across nodes."""
from __future__ import annotations

from ..framework import NodeInfo, PodInfo


def same_owner_pods(pod: PodInfo, node: NodeInfo) -> float:
    """Raw score: pods of the same owner already on the node (lower is better)."""
    if not pod.owner_uid:
        return 0.0
    return float(node.owner_counts.get(pod.owner_uid, 0))
