"""Spreads the pods of one controller (same controller ownerReference) across nodes."""
from __future__ import annotations

from typing import Sequence

from ..framework import NodeInfo, PodInfo


def same_owner_pods(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Raw scores: pods of the same owner already on each node (lower is better)."""
    if not pod.owner_uid:
        return [0.0] * len(nodes)
    uid = pod.owner_uid
    return [float(n.owner_counts.get(uid, 0)) for n in nodes]
