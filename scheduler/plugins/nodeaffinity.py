"""NodeAffinity: spec.nodeSelector plus requiredDuringSchedulingIgnoredDuringExecution."""
from __future__ import annotations

from pklib.api.nodeaffinity import pod_matches_node, required_node_affinity

from ..framework import NodeInfo, PodInfo

REASON = "node(s) didn't match Pod's node affinity/selector"


def relevant(pod: PodInfo) -> bool:
    return bool(pod.spec.get("nodeSelector")) or required_node_affinity(pod.spec) is not None


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    return None if pod_matches_node(pod.spec, node.labels, node.name) else [REASON]
