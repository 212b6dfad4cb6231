"""PostFilter: preemption by priority (Kubernetes' DefaultPreemption, without PodDisruptionBudgets).

When no node fits a pod, look for a node where evicting pods of lower priority makes it fit: on each node that
failed for a reason eviction can cure, remove every lower-priority pod, check the pod fits, then give back
("reprieve") as many of them as still leave room, the most important first. Among the candidate nodes the best
is the one whose most important victim has the lowest priority, then the lowest sum of victim priorities, then
the fewest victims. The scheduler deletes the victims (gracefully), nominates the node in the pod's status, and
retries the pod when they are gone.

Pure: works on the scheduler's NodeInfos and the filter chain given; the API writes are the caller's.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .framework import NodeInfo, PodInfo

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."
# Kubernetes' minCandidateNodesPercentage / Absolute: the dry run stops after this many candidates.
MIN_CANDIDATES_PERCENTAGE = 10
MIN_CANDIDATES_ABSOLUTE = 100

RunFilters = Callable[[PodInfo, NodeInfo], "list[str] | None"]
Unresolvable = Callable[[list[str]], bool]


@dataclass
class Candidate:
    node: str
    victims: list[PodInfo]


@dataclass
class Outcome:
    candidate: Candidate | None = None
    # Why preemption did not help: "not eligible ..." or per-node reasons for the FitError-style message.
    message: str = ""
    reasons: Counter[str] = field(default_factory=Counter)


def eligible(pod: PodInfo, nodes_by_name: Callable[[str], NodeInfo | None]) -> str | None:
    """None when the pod may preempt, else Kubernetes' reason."""
    if pod.preemption_policy == "Never":
        return NEVER
    if pod.nominated_node:
        node = nodes_by_name(pod.nominated_node)
        if node is not None and any(p.terminating and p.priority < pod.priority for p in node.pods.values()):
            return TERMINATING
    return None


def select_victims(pod: PodInfo, node: NodeInfo, run_filters: RunFilters) -> tuple[list[PodInfo] | None, list[str]]:
    """The fewest, least important pods to evict from `node` so that `pod` fits; (None, reasons) if none do."""
    lower = [p for p in node.pods.values() if p.priority < pod.priority]
    if not lower:
        return None, [NO_VICTIMS]
    sim = node.clone(frozenset(p.key for p in lower))
    reasons = run_filters(pod, sim)
    if reasons:
        return None, reasons
    victims: list[PodInfo] = []
    # Most important first (higher priority, then the key for a stable order): they are the ones to keep.
    for p in sorted(lower, key=lambda p: (-p.priority, p.key)):
        sim.add_pod(p)
        if run_filters(pod, sim):
            sim.remove_pod(p)
            victims.append(p)
    return victims, []


def _rank(c: Candidate) -> tuple[int, int, int]:
    highest = max(v.priority for v in c.victims) if c.victims else -(2 ** 31)
    return highest, sum(v.priority for v in c.victims), len(c.victims)


def preempt(pod: PodInfo, nodes: Sequence[NodeInfo], failed: dict[str, list[str]], run_filters: RunFilters,
            unresolvable: Unresolvable, nodes_by_name: Callable[[str], NodeInfo | None]) -> Outcome:
    """`failed`: the filter reasons of each node in this cycle (every node failed, or we would not be here)."""
    why_not = eligible(pod, nodes_by_name)
    if why_not is not None:
        return Outcome(message=why_not)
    out = Outcome()
    wanted = max(len(nodes) * MIN_CANDIDATES_PERCENTAGE // 100, MIN_CANDIDATES_ABSOLUTE)
    candidates: list[Candidate] = []
    for node in nodes:
        reasons = failed.get(node.name) or []
        if not reasons or unresolvable(reasons):
            out.reasons[NOT_HELPFUL] += 1
            continue
        victims, why = select_victims(pod, node, run_filters)
        if victims is None:
            out.reasons.update(why)
            continue
        candidates.append(Candidate(node.name, victims))
        if len(candidates) >= wanted:
            break
    if candidates:
        out.candidate = min(candidates, key=_rank)
    return out
