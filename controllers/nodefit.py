"""Does a pod template fit a node? (nodeSelector, required node affinity, taints, unschedulable)

The DaemonSet controller decides placement itself, the way Kubernetes' daemon
controller runs its own predicates before handing pods to nodes.
"""
from __future__ import annotations

from typing import Any

from pklib.api.nodeaffinity import node_selector_matches, pod_matches_node
from pklib.api.tolerations import untolerated
from pklib.api.wellknown import UNSCHEDULABLE_TAINT
from pklib.informer import Obj

from .util import meta


def required_affinity_matches(affinity: dict[str, Any] | None, node: Obj) -> bool:
    required = ((affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    return node_selector_matches(required, meta(node).get("labels") or {}, meta(node).get("name") or "")


def placement(pod_spec: dict[str, Any], node: Obj) -> tuple[bool, bool]:
    """(should run a new pod here, may an existing pod keep running here)."""
    if not pod_matches_node(pod_spec, meta(node).get("labels") or {}, meta(node).get("name") or ""):
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
