"""NodeResourcesFit and its scoring strategies (LeastAllocated, BalancedAllocation)."""
from __future__ import annotations

from typing import Sequence

from ..framework import NodeInfo, PodInfo

MAX_SCORE = 100


def requests_shape(pod: PodInfo) -> str:
    """What `fit` reads of the pod: its requests (the rest is the node's)."""
    return f"{pod.cpu},{pod.memory}"


def nonzero_shape(pod: PodInfo) -> str:
    """What the scoring strategies read of the pod: its requests with Kubernetes' non-zero defaults."""
    return f"{pod.nonzero_cpu},{pod.nonzero_memory}"


def fit(pod: PodInfo, node: NodeInfo) -> list[str] | None:
    """Requests of the pods already on the node plus this pod must stay within allocatable."""
    too_many = len(node.pods) >= node.alloc_pods
    short_cpu = pod.cpu and node.requested_cpu + pod.cpu > node.alloc_cpu
    short_memory = pod.memory and node.requested_memory + pod.memory > node.alloc_memory
    if not (too_many or short_cpu or short_memory):
        return None  # the common case, without building a list
    return [reason for reason, short in (("Too many pods", too_many), ("Insufficient cpu", short_cpu),
                                         ("Insufficient memory", short_memory)) if short]


def least_allocated(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefers the nodes with the most room left after placing the pod (cpu and memory, equal weight).

    Uses the "non-zero" requests so that pods without requests still spread out. Scores a
    whole list at once: this runs for hundreds of nodes per pod, so the arithmetic is inlined.
    """
    cpu, mem = pod.nonzero_cpu, pod.nonzero_memory
    half = MAX_SCORE / 2
    out = []
    for n in nodes:
        alloc_cpu, alloc_mem = n.alloc_cpu, n.alloc_memory
        used_cpu, used_mem = n.nonzero_cpu + cpu, n.nonzero_memory + mem
        # Free share of each resource (none when over-committed or not allocatable).
        free_cpu = (alloc_cpu - used_cpu) / alloc_cpu if 0 < alloc_cpu and used_cpu <= alloc_cpu else 0.0
        free_mem = (alloc_mem - used_mem) / alloc_mem if 0 < alloc_mem and used_mem <= alloc_mem else 0.0
        out.append((free_cpu + free_mem) * half)
    return out


def balanced_allocation(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefers nodes whose cpu and memory utilisation stay close to each other after placing the pod."""
    cpu, mem = pod.nonzero_cpu, pod.nonzero_memory
    out = []
    for n in nodes:
        alloc_cpu, alloc_mem = n.alloc_cpu, n.alloc_memory
        if alloc_cpu <= 0 or alloc_mem <= 0:
            out.append(0.0)
            continue
        # Utilisation capped at 1; the standard deviation of two fractions is half their distance.
        used_cpu = (n.nonzero_cpu + cpu) / alloc_cpu
        used_mem = (n.nonzero_memory + mem) / alloc_mem
        distance = abs((used_cpu if used_cpu < 1.0 else 1.0) - (used_mem if used_mem < 1.0 else 1.0))
        out.append((1 - distance / 2) * MAX_SCORE)
    return out
