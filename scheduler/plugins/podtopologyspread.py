"""PodTopologySpread: `spec.topologySpreadConstraints`, and the default spreading of a workload's pods.

A constraint counts the pods matching its selector (in the pod's namespace) per topology domain (the value of
`topologyKey` on the node) over the nodes the pod could go to (nodeAffinityPolicy Honor: the pod's nodeSelector
and required node affinity; nodeTaintsPolicy Ignore). `DoNotSchedule` constraints filter: placing the pod in a
domain may not make it exceed the least populated domain by more than maxSkew (with fewer than minDomains
domains, the minimum counts as 0). `ScheduleAnyway` constraints score: fewer matching pods is better.

A pod without constraints of its own that belongs to a Service, ReplicaSet or StatefulSet gets Kubernetes'
system defaults: hostname maxSkew 3 and zone maxSkew 5, both ScheduleAnyway, over the pods those select.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from pklib.api.nodeaffinity import pod_matches_node, required_node_affinity
from pklib.selectors import LabelSelector, Requirement, SelectorError, selector_from_match

from ..framework import Listers, NodeInfo, PodInfo
from .tainttoleration import filter as taint_filter

REASON = "node(s) didn't match pod topology spread constraints"
REASON_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
# Kubernetes' system default constraints (maxSkew, topologyKey), ScheduleAnyway.
DEFAULT_CONSTRAINTS = ((3, HOSTNAME), (5, ZONE))
MAX_SCORE = 100


@dataclass
class Constraint:
    max_skew: int
    key: str
    selector: LabelSelector | None  # None: a missing labelSelector, which matches no pod
    min_domains: int = 1
    honor_affinity: bool = True  # nodeAffinityPolicy
    honor_taints: bool = False  # nodeTaintsPolicy

    def matches(self, pod: PodInfo) -> bool:
        return self.selector is not None and self.selector.matches(pod.labels)


@dataclass
class SpreadState:
    hard: list[Constraint] = field(default_factory=list)
    soft: list[Constraint] = field(default_factory=list)
    system_default: bool = False
    # Per constraint: matching pods per domain, over the nodes eligible for counting.
    hard_counts: list[Counter[str]] = field(default_factory=list)
    hard_min: list[int] = field(default_factory=list)
    soft_counts: list[Counter[str]] = field(default_factory=list)
    self_match: list[int] = field(default_factory=list)


def _constraint(c: dict[str, Any], pod: PodInfo) -> Constraint:
    raw = c.get("labelSelector")
    selector: LabelSelector | None = None
    if raw is not None:
        selector = selector_from_match(raw)
        # matchLabelKeys: the pod's own values of those labels narrow the selector.
        extra = [Requirement(k, "=", frozenset([pod.labels[k]])) for k in c.get("matchLabelKeys") or []
                 if k in pod.labels]
        if extra:
            selector = LabelSelector(selector.requirements + tuple(extra))
    return Constraint(max_skew=int(c.get("maxSkew") or 1), key=c.get("topologyKey") or "", selector=selector,
                      min_domains=int(c.get("minDomains") or 1),
                      honor_affinity=(c.get("nodeAffinityPolicy") or "Honor") == "Honor",
                      honor_taints=(c.get("nodeTaintsPolicy") or "Ignore") == "Honor")


def _default_selector(pod: PodInfo, listers: Listers) -> LabelSelector | None:
    requirements: list[Requirement] = []
    for sel in listers.owner_selectors(pod):
        requirements.extend(selector_from_match(sel).requirements)
    return LabelSelector(tuple(dict.fromkeys(requirements))) if requirements else None


def _count(constraints: list[Constraint], pod: PodInfo, nodes: Sequence[NodeInfo],
           require_all_keys: bool) -> list[Counter[str]]:
    counts: list[Counter[str]] = [Counter() for _ in constraints]
    keys = [c.key for c in constraints]
    # Whether a node passes the pod's node affinity / taints is the same for every constraint: decided once.
    check_affinity = any(c.honor_affinity for c in constraints) and (
        bool(pod.spec.get("nodeSelector")) or required_node_affinity(pod.spec) is not None)
    check_taints = any(c.honor_taints for c in constraints)
    ns = pod.namespace
    for node in nodes:
        labels = node.labels
        if require_all_keys and not all(k in labels for k in keys):
            continue
        affinity_ok = not check_affinity or pod_matches_node(pod.spec, labels, node.name)
        taints_ok = not check_taints or not taint_filter(pod, node)
        here = node.namespace_pods.get(ns)
        matched: dict[int, int] = {}  # per selector: constraints often share one (the system defaults do)
        for c, cnt in zip(constraints, counts):
            value = labels.get(c.key)
            if value is None or (c.honor_affinity and not affinity_ok) or (c.honor_taints and not taints_ok):
                continue
            selector = c.selector
            if not here or selector is None:
                cnt[value] += 0  # the domain exists, with no matching pod
                continue
            n = matched.get(id(selector))
            if n is None:
                # Terminating pods do not count (they are on their way out), as in Kubernetes.
                n = matched[id(selector)] = sum(1 for p in here.values()
                                                if not p.terminating and selector.matches(p.labels))
            cnt[value] += n
    return counts


def pre_filter(pod: PodInfo, listers: Listers) -> None:
    """Computes the per-domain counts once per cycle; leaves `pod.spread` None for pods without spreading."""
    pod.spread = None
    raw = pod.spec.get("topologySpreadConstraints") or []
    state = SpreadState()
    try:
        if raw:
            for c in raw:
                (state.hard if (c.get("whenUnsatisfiable") or "DoNotSchedule") == "DoNotSchedule"
                 else state.soft).append(_constraint(c, pod))
        else:
            selector = _default_selector(pod, listers)
            if selector is None:
                return
            state.soft = [Constraint(skew, key, selector) for skew, key in DEFAULT_CONSTRAINTS]
            state.system_default = True
    except (SelectorError, ValueError, TypeError):
        return  # the apiserver validated the pod; a selector we cannot read constrains nothing
    if state.hard:
        nodes = listers.nodes()
        # Every eligible node registers its domain (with 0 pods if need be): the minimum is over all of them.
        state.hard_counts = _count(state.hard, pod, nodes, require_all_keys=True)
        state.hard_min = [0 if len(cnt) < c.min_domains else min(cnt.values(), default=0)
                          for c, cnt in zip(state.hard, state.hard_counts)]
        state.self_match = [1 if c.matches(pod) else 0 for c in state.hard]
    if state.soft:
        # Scoring reads counts only: the nodes without a pod of this namespace add nothing and are skipped.
        state.soft_counts = _count(state.soft, pod, listers.nodes_with_pods_in(pod.namespace),
                                   require_all_keys=not state.system_default)
    pod.spread = state


def relevant(pod: PodInfo) -> bool:
    return pod.spread is not None and bool(pod.spread.hard)


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    state: SpreadState = pod.spread
    for i, c in enumerate(state.hard):
        value = node.labels.get(c.key)
        if value is None:
            return [REASON_MISSING_LABEL]
        skew = state.hard_counts[i].get(value, 0) + state.self_match[i] - state.hard_min[i]
        if skew > c.max_skew:
            return [REASON]
    return None


def score_relevant(pod: PodInfo) -> bool:
    return pod.spread is not None and bool(pod.spread.soft)


def score(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """0..100, higher is better: fewer matching pods in the node's domains (weighted by log(domains + 2))."""
    state: SpreadState = pod.spread
    keys = [c.key for c in state.soft]
    # The number of domains among the feasible nodes normalises each constraint's weight.
    weights = [math.log(len({n.labels[k] for n in nodes if k in n.labels}) + 2) for k in keys]
    raw: list[int | None] = []
    for node in nodes:
        labels = node.labels
        if not state.system_default and not all(k in labels for k in keys):
            raw.append(None)
            continue
        total = 0.0
        for c, cnt, w in zip(state.soft, state.soft_counts, weights):
            if c.key in labels:
                total += cnt.get(labels[c.key], 0) * w + (c.max_skew - 1)
        raw.append(round(total))
    valid = [r for r in raw if r is not None]
    if not valid:
        return [0.0] * len(nodes)
    lo, hi = min(valid), max(valid)
    return [0.0 if r is None else float(MAX_SCORE) if hi == 0 else MAX_SCORE * (hi + lo - r) / hi for r in raw]
