"""TaintToleration: NoSchedule/NoExecute taints filter, PreferNoSchedule taints lower the score."""
from __future__ import annotations

from typing import Sequence

from pklib.api.tolerations import tolerated

from ..framework import NodeInfo, PodInfo


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    for taint in node.hard_taints:
        if not tolerated(pod.tolerations, taint):
            return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"]
    return None


def intolerable_preferences(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Raw scores: how many PreferNoSchedule taints the pod does not tolerate (lower is better)."""
    return [float(sum(1 for taint in n.soft_taints if not tolerated(pod.tolerations, taint))) if n.soft_taints
            else 0.0 for n in nodes]
