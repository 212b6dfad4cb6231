"""NodeResourcesFit and its scoring strategies (LeastAllocated, BalancedAllocation)."""
from __future__ import annotations

from typing import Sequence

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


def least_allocated(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefers the nodes with the most room left after placing the pod (cpu and memory, equal weight).

    Uses the "non-zero" requests so that pods without requests still spread out. Scores a
    whole list at once: this runs for hundreds of nodes per pod.
    """
    cpu, mem = pod.nonzero_cpu, pod.nonzero_memory
    return [(_free(n.nonzero_cpu + cpu, n.alloc_cpu) + _free(n.nonzero_memory + mem, n.alloc_memory))
            * (MAX_SCORE / 2) for n in nodes]


def balanced_allocation(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefers nodes whose cpu and memory utilisation stay close to each other after placing the pod."""
    cpu, mem = pod.nonzero_cpu, pod.nonzero_memory
    # The standard deviation of two fractions is half their distance.
    return [(1 - abs(_used(n.nonzero_cpu + cpu, n.alloc_cpu) - _used(n.nonzero_memory + mem, n.alloc_memory)) / 2)
            * MAX_SCORE if n.alloc_cpu > 0 and n.alloc_memory > 0 else 0.0 for n in nodes]


def _free(requested: int, allocatable: int) -> float:
    if allocatable <= 0 or requested > allocatable:
        return 0.0
    return (allocatable - requested) / allocatable


def _used(requested: int, allocatable: int) -> float:
    return min(1.0, requested / allocatable)
