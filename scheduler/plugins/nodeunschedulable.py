"""NodeUnschedulable: cordoned nodes take no new pods unless the pod tolerates the unschedulable taint."""
from __future__ import annotations

from ..framework import NodeInfo, PodInfo
from .tainttoleration import tolerated

from pklib.api.wellknown import UNSCHEDULABLE_TAINT

REASON = "node(s) were unschedulable"
_TAINT = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    if node.unschedulable and not tolerated(pod.tolerations, _TAINT):
        return [REASON]
    return None
