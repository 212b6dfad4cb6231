"""Pod priority (scheduling.k8s.io/v1 PriorityClass): the built-in classes and the limits on user classes."""
from __future__ import annotations

SYSTEM_PREFIX = "system-"
# Kubernetes' HighestUserDefinablePriority: above it only the built-in system classes.
HIGHEST_USER_DEFINABLE = 1_000_000_000
SYSTEM_CLUSTER_CRITICAL = "system-cluster-critical"
SYSTEM_NODE_CRITICAL = "system-node-critical"
BUILTIN_CLASSES: dict[str, int] = {SYSTEM_CLUSTER_CRITICAL: 2_000_000_000, SYSTEM_NODE_CRITICAL: 2_000_001_000}
BUILTIN_DESCRIPTIONS: dict[str, str] = {
    SYSTEM_CLUSTER_CRITICAL: "Used for system critical pods that must run in the cluster, but can be moved to "
                             "another node if necessary.",
    SYSTEM_NODE_CRITICAL: "Used for system critical pods that must not be moved from their current node.",
}
PREEMPTION_POLICIES = ("PreemptLowerPriority", "Never")
DEFAULT_PREEMPTION_POLICY = "PreemptLowerPriority"


def builtin_class(name: str) -> dict[str, object]:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": BUILTIN_CLASSES[name], "description": BUILTIN_DESCRIPTIONS[name],
            "preemptionPolicy": DEFAULT_PREEMPTION_POLICY}
