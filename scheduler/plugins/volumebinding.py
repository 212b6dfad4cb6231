"""VolumeBinding (the part we need): a pod must land where its bound PersistentVolumes are reachable.

The scheduler resolves the pod's claims to PVs before filtering (PodInfo.volume_*); this
plugin only compares each PV's required nodeAffinity with the node.
"""
from __future__ import annotations

from pklib.api.nodeaffinity import node_selector_matches

from ..framework import NodeInfo, PodInfo

REASON = "node(s) had volume node affinity conflict"


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    if pod.volume_problem:
        return [pod.volume_problem]
    for required in pod.volume_node_affinities:
        if not node_selector_matches(required, node.labels, node.name):
            return [REASON]
    return None
