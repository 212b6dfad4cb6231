"""NodeAffinity: spec.nodeSelector plus requiredDuringSchedulingIgnoredDuringExecution (filter), and
preferredDuringSchedulingIgnoredDuringExecution (score: the summed weights of the terms the node matches)."""
from __future__ import annotations

from typing import Any, Sequence

from pklib.api.nodeaffinity import pod_matches_node, required_node_affinity, term_matches

from ..framework import NodeInfo, PodInfo

REASON = "node(s) didn't match Pod's node affinity/selector"
MAX_SCORE = 100


def relevant(pod: PodInfo) -> bool:
    return bool(pod.spec.get("nodeSelector")) or required_node_affinity(pod.spec) is not None


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    return None if pod_matches_node(pod.spec, node.labels, node.name) else [REASON]


def _preferred(pod: PodInfo) -> list[dict[str, Any]]:
    affinity = (pod.spec.get("affinity") or {}).get("nodeAffinity") or {}
    terms: list[dict[str, Any]] = affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    return terms


def score_relevant(pod: PodInfo) -> bool:
    return bool(_preferred(pod))


def score(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """0..100: weights of the matched preferred terms, relative to the best node (all 0 when none matches)."""
    terms = [(int(t.get("weight") or 0), t.get("preference") or {}) for t in _preferred(pod)]
    raw = [sum(w for w, pref in terms if term_matches(pref, n.labels, n.name)) for n in nodes]
    best = max(raw, default=0)
    return [MAX_SCORE * r / best if best > 0 else 0.0 for r in raw]
