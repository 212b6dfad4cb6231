"""InterPodAffinity: `spec.affinity.podAffinity` / `podAntiAffinity`, required (filter) and preferred (score).

A term selects pods (labelSelector; a missing one selects none) in some namespaces (`namespaces` plus
`namespaceSelector` over the namespaces' labels; neither means the pod's own namespace) and names a
topologyKey: "near" means on a node with the same value of that label. Required affinity: some selected pod
must be in the node's domain for every term (except for the first pod of a group, which selects itself);
required anti-affinity: none may be, and no pod already placed may have required anti-affinity against the
incoming pod in the node's domain. Preferred terms add (affinity) or subtract (anti-affinity) their weight per
selected pod in the node's domain, and so do the existing pods' terms that select the incoming pod (their
required affinity with weight 1, Kubernetes' hardPodAffinityWeight).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from pklib.selectors import LabelSelector, SelectorError, selector_from_match

from ..framework import Listers, NodeInfo, PodInfo

REASON_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1
MAX_SCORE = 100
Domain = tuple[str, str]  # (topologyKey, value)


@dataclass(frozen=True)
class Term:
    key: str
    selector: LabelSelector | None  # None matches no pod
    namespaces: frozenset[str]
    namespace_selector: LabelSelector | None  # None: only `namespaces`
    weight: int = 1

    def matches(self, pod: PodInfo, listers: Listers) -> bool:
        if self.selector is None or not self.selector.matches(pod.labels):
            return False
        if pod.namespace in self.namespaces:
            return True
        if self.namespace_selector is None:
            return False
        labels = listers.namespace_labels(pod.namespace)
        return labels is not None and self.namespace_selector.matches(labels)


def _term(raw: dict[str, Any], namespace: str, weight: int = 1) -> Term:
    sel = raw.get("labelSelector")
    ns_sel = raw.get("namespaceSelector")
    namespaces = frozenset(raw.get("namespaces") or [])
    if not namespaces and ns_sel is None:
        namespaces = frozenset([namespace])
    return Term(key=raw.get("topologyKey") or "", selector=None if sel is None else selector_from_match(sel),
                namespaces=namespaces, namespace_selector=None if ns_sel is None else selector_from_match(ns_sel),
                weight=weight)


@dataclass
class Terms:
    required_affinity: list[Term] = field(default_factory=list)
    required_anti_affinity: list[Term] = field(default_factory=list)
    preferred_affinity: list[Term] = field(default_factory=list)
    preferred_anti_affinity: list[Term] = field(default_factory=list)


def terms_of(pod: PodInfo) -> Terms:
    """The pod's terms, parsed once per PodInfo (a selector we cannot read makes the term select nothing)."""
    cached: Terms | None = pod.pod_terms
    if cached is not None:
        return cached
    out = Terms()
    affinity = pod.spec.get("affinity") or {}
    for kind, required, preferred in (("podAffinity", out.required_affinity, out.preferred_affinity),
                                      ("podAntiAffinity", out.required_anti_affinity, out.preferred_anti_affinity)):
        spec = affinity.get(kind) or {}
        try:
            required.extend(_term(t, pod.namespace)
                            for t in spec.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
            preferred.extend(_term(w.get("podAffinityTerm") or {}, pod.namespace, int(w.get("weight") or 0))
                             for w in spec.get("preferredDuringSchedulingIgnoredDuringExecution") or [])
        except (SelectorError, ValueError, TypeError):
            required.clear()
            preferred.clear()
    pod.pod_terms = out
    return out


@dataclass
class AffinityState:
    terms: Terms
    # Required terms of the incoming pod: selected pods per domain.
    affinity_counts: Counter[Domain] = field(default_factory=Counter)
    anti_affinity_counts: Counter[Domain] = field(default_factory=Counter)
    # Domains where an existing pod's required anti-affinity selects the incoming pod.
    existing_anti_affinity: Counter[Domain] = field(default_factory=Counter)
    self_affine: bool = False
    # Preferred terms (both directions): score per domain.
    scores: Counter[Domain] = field(default_factory=Counter)


def pre_filter(pod: PodInfo, listers: Listers) -> None:
    pod.interpod = None
    if not pod.has_pod_affinity and not listers.affinity_pods():
        return  # the common case: nobody in the cluster uses pod affinity
    terms = terms_of(pod)
    state = AffinityState(terms)
    own_required = terms.required_affinity or terms.required_anti_affinity
    own_preferred = terms.preferred_affinity or terms.preferred_anti_affinity
    for node in listers.nodes():
        labels = node.labels
        # Existing pods' terms about the incoming pod.
        for other in node.affinity_pods.values():
            theirs = terms_of(other)
            for t in theirs.required_anti_affinity:
                if t.key in labels and t.matches(pod, listers):
                    state.existing_anti_affinity[(t.key, labels[t.key])] += 1
            for t, sign in [(t, 1) for t in theirs.preferred_affinity] + [
                    (t, -1) for t in theirs.preferred_anti_affinity]:
                if t.key in labels and t.matches(pod, listers):
                    state.scores[(t.key, labels[t.key])] += sign * t.weight
            for t in theirs.required_affinity:
                if t.key in labels and t.matches(pod, listers):
                    state.scores[(t.key, labels[t.key])] += HARD_POD_AFFINITY_WEIGHT
        if not (own_required or own_preferred) or not node.pods:
            continue
        # The incoming pod's terms about the existing pods.
        for other in node.pods.values():
            for t in terms.required_affinity:
                if t.key in labels and t.matches(other, listers):
                    state.affinity_counts[(t.key, labels[t.key])] += 1
            for t in terms.required_anti_affinity:
                if t.key in labels and t.matches(other, listers):
                    state.anti_affinity_counts[(t.key, labels[t.key])] += 1
            for t in terms.preferred_affinity:
                if t.key in labels and t.matches(other, listers):
                    state.scores[(t.key, labels[t.key])] += t.weight
            for t in terms.preferred_anti_affinity:
                if t.key in labels and t.matches(other, listers):
                    state.scores[(t.key, labels[t.key])] -= t.weight
    state.self_affine = all(t.matches(pod, listers) for t in terms.required_affinity)
    pod.interpod = state


def relevant(pod: PodInfo) -> bool:
    state: AffinityState | None = pod.interpod
    return state is not None and bool(state.terms.required_affinity or state.terms.required_anti_affinity
                                      or state.existing_anti_affinity)


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    state: AffinityState = pod.interpod
    labels = node.labels
    required = state.terms.required_affinity
    if required:
        # With no selected pod anywhere, a pod that its own terms select may start the group.
        if not (not state.affinity_counts and state.self_affine):
            for t in required:
                if t.key not in labels or not state.affinity_counts.get((t.key, labels[t.key])):
                    return [REASON_AFFINITY]
    for t in state.terms.required_anti_affinity:
        if t.key in labels and state.anti_affinity_counts.get((t.key, labels[t.key])):
            return [REASON_ANTI_AFFINITY]
    if state.existing_anti_affinity:
        for (key, value) in state.existing_anti_affinity:
            if labels.get(key) == value:
                return [REASON_EXISTING_ANTI_AFFINITY]
    return None


def score_relevant(pod: PodInfo) -> bool:
    state: AffinityState | None = pod.interpod
    return state is not None and bool(state.scores)


def score(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """0..100: the node's domains' summed weights, scaled between the lowest and the highest node."""
    state: AffinityState = pod.interpod
    raw = [sum(s for (key, value), s in state.scores.items() if n.labels.get(key) == value) for n in nodes]
    lo, hi = min(raw), max(raw)
    if hi == lo:
        return [0.0] * len(nodes)
    return [MAX_SCORE * (r - lo) / (hi - lo) for r in raw]
