"""NodeResourcesFit and its scoring strategies (LeastAllocated, BalancedAllocation)."""
from __future__ import annotations

from ..framework import NodeInfo, PodInfo

MAX_SCORE = 100


def fit(pod: PodInfo, node: NodeInfo) -> list[str] | None:
    """Requests of the pods already on the node plus this pod must stay within allocatable."""
    reasons = []
    if len(node.pods) + 1 > node.alloc_pods:
        reasons.append("Too many pods")
    if pod.cpu and node.requested_cpu + pod.cpu > node.alloc_cpu:
        reasons.append("Insufficient cpu")
    if pod.memory and node.requested_memory + pod.memory > node.alloc_memory:
        reasons.append("Insufficient memory")
    return reasons or None


def _free_fraction(requested: int, allocatable: int) -> float:
    if allocatable <= 0 or requested > allocatable:
        return 0.0
    return (allocatable - requested) / allocatable


def least_allocated(pod: PodInfo, node: NodeInfo) -> float:
    """Prefers the node with the most room left after placing the pod (cpu and memory, equal weight).

    Uses the "non-zero" requests so that pods without requests still spread out.
    """
    cpu = _free_fraction(node.nonzero_cpu + pod.nonzero_cpu, node.alloc_cpu)
    mem = _free_fraction(node.nonzero_memory + pod.nonzero_memory, node.alloc_memory)
    return (cpu + mem) / 2 * MAX_SCORE


def balanced_allocation(pod: PodInfo, node: NodeInfo) -> float:
    """Prefers nodes whose cpu and memory utilisation stay close to each other after placing the pod."""
    if node.alloc_cpu <= 0 or node.alloc_memory <= 0:
        return 0.0
    cpu = min(1.0, (node.nonzero_cpu + pod.nonzero_cpu) / node.alloc_cpu)
    mem = min(1.0, (node.nonzero_memory + pod.nonzero_memory) / node.alloc_memory)
    # The standard deviation of two fractions is half their distance.
    return (1 - abs(cpu - mem) / 2) * MAX_SCORE
