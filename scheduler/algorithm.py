"""One scheduling decision: filter the nodes, score the feasible ones, pick the best; and the profile, the
plugins at each extension point of a scheduling cycle (PreFilter → Filter → Score → Reserve → PreBind).

Like Kubernetes, we stop filtering once enough feasible nodes were found
(percentageOfNodesToScore) and start the next search where the last one stopped, so
that a cycle costs O(a few hundred nodes) however big the cluster is, and every node
gets its turn.
"""
from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence, cast

from pklib.client import Client

from .framework import Listers, NodeInfo, PodInfo
from .plugins import (interpodaffinity, nodeaffinity, nodeports, noderesources, nodeunschedulable,
                      podtopologyspread, tainttoleration, volumebinding)

FilterFn = Callable[[PodInfo, NodeInfo], "list[str] | None"]
ScoreFn = Callable[[PodInfo, Sequence[NodeInfo]], "list[float]"]

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
MAX_SCORE = 100
# Distinct pod shapes remembered per node before its memo starts afresh.
MEMO_LIMIT = 64
_RNG = random.Random()
_MISS = object()


@dataclass(frozen=True)
class FilterPlugin:
    name: str
    fn: FilterFn
    # Skips the plugin for pods it cannot reject (no selector, no host ports, ...), which
    # is most pods; a cheap pre-check saves a call per node.
    relevant: Callable[[PodInfo], bool] = lambda pod: True
    # Rejects only restricted nodes (cordoned or NoSchedule/NoExecute-tainted): not called for the others.
    restricted_nodes_only: bool = False
    # Set when the outcome on a node depends only on the node's state (its allocatable, the pods on it) and
    # this text of the pod: the outcome is then kept in NodeInfo.memo for the next pod of that shape.
    shape: Callable[[PodInfo], str] | None = None


@dataclass(frozen=True)
class ScorePlugin:
    name: str
    fn: ScoreFn
    # Raw scores where lower is better (counts of bad things) are normalised against the
    # worst feasible node; the others already are 0..100, higher is better.
    lower_is_better: bool = False
    # A plugin that would give every node the same score cannot change the choice: skip it.
    relevant: Callable[[PodInfo], bool] = lambda pod: True
    # As FilterPlugin.shape: the node's score depends only on its own state and this text of the pod (never set
    # with lower_is_better, whose scores depend on the other nodes).
    shape: Callable[[PodInfo], str] | None = None


@dataclass(frozen=True)
class PreFilterPlugin:
    """Runs once per cycle before filtering: computes per-pod state the Filter of the same plugin reads."""
    name: str
    fn: Callable[[PodInfo, Listers], None]


@dataclass(frozen=True)
class ReservePlugin:
    """Runs once a node is chosen (the pod is assumed there); `unreserve` undoes it when binding fails."""
    name: str
    reserve: Callable[[PodInfo, str, Listers], None]
    unreserve: Callable[[PodInfo], None]


@dataclass(frozen=True)
class PreBindPlugin:
    """API writes that must happen before the Binding (in the binding task, off the scheduling loop)."""
    name: str
    fn: Callable[[PodInfo, str, Client], Awaitable[None]]


PRE_FILTERS: tuple[PreFilterPlugin, ...] = (
    PreFilterPlugin("VolumeBinding", volumebinding.pre_filter),
    PreFilterPlugin("PodTopologySpread", podtopologyspread.pre_filter),
    PreFilterPlugin("InterPodAffinity", interpodaffinity.pre_filter),
)

FILTERS: tuple[FilterPlugin, ...] = (
    FilterPlugin("NodeUnschedulable", nodeunschedulable.filter, restricted_nodes_only=True),
    FilterPlugin("NodeAffinity", nodeaffinity.filter, nodeaffinity.relevant),
    FilterPlugin("NodePorts", nodeports.filter, lambda pod: bool(pod.host_ports)),
    FilterPlugin("NodeResourcesFit", noderesources.fit, shape=noderesources.requests_shape),
    FilterPlugin("TaintToleration", tainttoleration.filter, restricted_nodes_only=True),
    FilterPlugin("VolumeBinding", volumebinding.filter, volumebinding.relevant),
    FilterPlugin("PodTopologySpread", podtopologyspread.filter, podtopologyspread.relevant),
    FilterPlugin("InterPodAffinity", interpodaffinity.filter, interpodaffinity.relevant),
)

# Filter reasons that evicting pods cannot cure (Kubernetes' UnschedulableAndUnresolvable): preemption does not
# try those nodes.
UNRESOLVABLE_REASONS = frozenset({nodeaffinity.REASON, nodeunschedulable.REASON, volumebinding.REASON,
                                  podtopologyspread.REASON_MISSING_LABEL, interpodaffinity.REASON_AFFINITY})
UNRESOLVABLE_PREFIXES = ("node(s) had untolerated taint",)

RESERVES: tuple[ReservePlugin, ...] = (
    ReservePlugin("VolumeBinding", volumebinding.reserve, volumebinding.unreserve),
)

PRE_BINDS: tuple[PreBindPlugin, ...] = (
    PreBindPlugin("VolumeBinding", volumebinding.pre_bind),
)

SCORES: dict[str, ScorePlugin] = {p.name: p for p in (
    ScorePlugin("least-allocated", noderesources.least_allocated, shape=noderesources.nonzero_shape),
    ScorePlugin("balanced-allocation", noderesources.balanced_allocation, shape=noderesources.nonzero_shape),
    ScorePlugin("taint-toleration", tainttoleration.intolerable_preferences, lower_is_better=True),
    ScorePlugin("node-affinity", nodeaffinity.score, relevant=nodeaffinity.score_relevant),
    ScorePlugin("pod-topology-spread", podtopologyspread.score, relevant=podtopologyspread.score_relevant),
    ScorePlugin("inter-pod-affinity", interpodaffinity.score, relevant=interpodaffinity.score_relevant),
)}

# Kubernetes' defaults: TaintToleration 3, NodeAffinity, PodTopologySpread and InterPodAffinity 2, the rest 1.
DEFAULT_WEIGHTS: dict[str, int] = {"least-allocated": 1, "balanced-allocation": 1, "taint-toleration": 3,
                                   "node-affinity": 2, "pod-topology-spread": 2, "inter-pod-affinity": 2}
# Former names still accepted by --score-weights: owner-spread became PodTopologySpread's default constraints.
WEIGHT_ALIASES = {"owner-spread": "pod-topology-spread"}


def pre_filter(pod: PodInfo, listers: Listers) -> None:
    for plugin in PRE_FILTERS:
        plugin.fn(pod, listers)


def end_cycle(pod: PodInfo) -> None:
    """Drops the PreFilter state that only this cycle needs: the PodInfo stays in the cache as long as the pod
    is placed, and the per-domain counts of a thousand nodes are not worth keeping a thousand times."""
    pod.spread = None
    pod.interpod = None


def reserve(pod: PodInfo, node_name: str, listers: Listers) -> None:
    for plugin in RESERVES:
        plugin.reserve(pod, node_name, listers)


def unreserve(pod: PodInfo) -> None:
    for plugin in reversed(RESERVES):
        plugin.unreserve(pod)


async def pre_bind(pod: PodInfo, node_name: str, client: Client) -> None:
    for plugin in PRE_BINDS:
        await plugin.fn(pod, node_name, client)


def parse_weights(text: str) -> dict[str, int]:
    """`least-allocated=1,pod-topology-spread=5` on top of the defaults; raises ValueError on nonsense."""
    weights = dict(DEFAULT_WEIGHTS)
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        name = WEIGHT_ALIASES.get(name.strip(), name.strip())
        if not sep or name not in SCORES:
            raise ValueError(f"invalid score weight {item!r}: expected NAME=INT with NAME one of "
                             f"{', '.join(SCORES)}")
        try:
            weights[name] = int(value)
        except ValueError:
            raise ValueError(f"invalid score weight {item!r}: {value!r} is not an integer") from None
        if weights[name] < 0:
            raise ValueError(f"invalid score weight {item!r}: must not be negative")
    return weights


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes are enough; percentage 0 means adaptive (50% at 100 nodes, 5% floor)."""
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_nodes
    if percentage <= 0:
        percentage = max(MIN_FEASIBLE_NODES_PERCENTAGE, 50 - num_nodes // 125)
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


@dataclass
class Decision:
    node: str | None
    # reason -> number of nodes that failed with it (only when node is None, or partially filled)
    reasons: Counter[str] = field(default_factory=Counter)
    num_nodes: int = 0
    evaluated: int = 0
    # node name -> why it failed (for preemption, which tries only the nodes eviction can help)
    failed: dict[str, list[str]] = field(default_factory=dict)


def schedule(pod: PodInfo, nodes: Sequence[NodeInfo], weights: dict[str, int], start: int = 0,
             percentage: int = 0, rng: random.Random | None = None) -> Decision:
    """Choose a node for `pod` among `nodes`, starting the feasibility search at index `start`."""
    n = len(nodes)
    decision = Decision(node=None, num_nodes=n)
    if n == 0:
        return decision
    filters = [f for f in FILTERS if f.relevant(pod)]
    wanted = num_feasible_nodes_to_find(n, percentage)
    feasible: list[NodeInfo] = []
    fns = [f.fn for f in filters]
    # Most nodes are neither cordoned nor tainted: their chain skips the plugins that could only reject such nodes.
    plain = [f for f in filters if not f.restricted_nodes_only]
    plain_fns = [f.fn for f in plain]
    # When that chain depends on the pod's shape alone (the common pod: only NodeResourcesFit applies), a node's
    # outcome is looked up in its memo, computed once per shape and node state.
    memo_key = _memo_key("filter", pod, [(f.name, f.shape) for f in plain])
    start %= n
    i = 0
    # Nodes taken round from `start`: this loop runs hundreds of times per pod.
    for i, node in enumerate(itertools.chain(nodes[start:], nodes[:start])):
        if memo_key is None or node.restricted:
            reasons = _rejection(fns if node.restricted else plain_fns, pod, node)
        else:
            reasons = node.memo.get(memo_key, _MISS)
            if reasons is _MISS:
                reasons = _remember(node, memo_key, _rejection(plain_fns, pod, node))
        if reasons:
            decision.reasons.update(reasons)
            decision.failed[node.name] = reasons
            continue
        feasible.append(node)
        if len(feasible) >= wanted:
            break
    decision.evaluated = i + 1
    if not feasible:
        return decision
    if len(feasible) == 1:
        decision.node = feasible[0].name
        return decision
    decision.node = _best(pod, feasible, weights, rng or _RNG)
    return decision


def _rejection(fns: list[FilterFn], pod: PodInfo, node: NodeInfo) -> list[str] | None:
    """The first filter's reasons for rejecting the node, or None when it passes them all."""
    for fn in fns:
        reasons = fn(pod, node)
        if reasons:
            return reasons
    return None


def _memo_key(kind: str, pod: PodInfo, plugins: list[tuple[str, Callable[[PodInfo], str] | None]]) -> str | None:
    """The key of the plugins' outcome in a node's memo, or None when one of them looks beyond the pod's shape."""
    if not plugins or any(shape is None for _, shape in plugins):
        return None
    return kind + ";" + ";".join(f"{name}={shape(pod)}" for name, shape in plugins if shape is not None)


def _remember(node: NodeInfo, key: str, value: Any) -> Any:
    if len(node.memo) >= MEMO_LIMIT:
        node.memo.clear()
    node.memo[key] = value
    return value


def _best(pod: PodInfo, feasible: list[NodeInfo], weights: dict[str, int], rng: random.Random) -> str:
    used = [(name, weight, SCORES[name]) for name, weight in weights.items()
            if weight and SCORES[name].relevant(pod)]
    # The weighted sum of the plugins that score a node by its own state (the resource strategies) is kept in
    # the node's memo; the others are added to it below.
    by_shape = [(name, weight, plugin) for name, weight, plugin in used if plugin.shape is not None]
    key = _memo_key("score", pod, [(f"{name}*{weight}", plugin.shape) for name, weight, plugin in by_shape])
    totals = _memoized_scores(pod, feasible, key, by_shape) if key is not None else [0.0] * len(feasible)
    for name, weight, plugin in used:
        if key is not None and plugin.shape is not None:
            continue
        raw = plugin.fn(pod, feasible)
        if plugin.lower_is_better:
            worst = max(raw)
            if worst == 0:
                continue  # every node scores the maximum: no influence on the choice
            raw = [MAX_SCORE - r * MAX_SCORE / worst for r in raw]
        totals = [t + weight * r for t, r in zip(totals, raw)]
    best = max(totals)
    # Ties are broken at random so that equal nodes share the load.
    candidates = [i for i, t in enumerate(totals) if t == best]
    return feasible[rng.choice(candidates)].name


def _memoized_scores(pod: PodInfo, feasible: list[NodeInfo], key: str,
                     plugins: list[tuple[str, int, ScorePlugin]]) -> list[float]:
    """The plugins' weighted sum on each node: from the node's memo, the nodes without it scored in one batch."""
    memos = [node.memo.get(key) for node in feasible]
    missing = [i for i, total in enumerate(memos) if total is None]
    if missing:
        nodes = [feasible[i] for i in missing]
        sums = [0.0] * len(nodes)
        for _, weight, plugin in plugins:
            sums = [s + weight * r for s, r in zip(sums, plugin.fn(pod, nodes))]
        for i, total in zip(missing, sums):
            memos[i] = _remember(feasible[i], key, total)
    return cast("list[float]", memos)


def run_filters(pod: PodInfo, node: NodeInfo) -> list[str] | None:
    """The whole filter chain on one node (preemption's dry runs); None when the pod fits."""
    return _rejection([f.fn for f in FILTERS if f.relevant(pod)], pod, node)


class _WithNode:
    """Listers whose node list has one node replaced (a preemption dry run's copy without the victims)."""

    def __init__(self, base: Listers, node: NodeInfo):
        self._base, self._node = base, node

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def nodes(self) -> list[NodeInfo]:
        return [self._node if n.name == self._node.name else n for n in self._base.nodes()]


def dry_run_filters(listers: Listers) -> Callable[[PodInfo, NodeInfo], "list[str] | None"]:
    """`run_filters` for preemption: for a pod whose spreading or pod (anti-)affinity state depends on the other
    pods, that state is computed again with the node as the dry run left it (Kubernetes' AddPod/RemovePod)."""
    def run(pod: PodInfo, node: NodeInfo) -> list[str] | None:
        if pod.spread is None and pod.interpod is None:
            return run_filters(pod, node)
        saved = pod.spread, pod.interpod
        view = cast(Listers, _WithNode(listers, node))
        try:
            if saved[0] is not None:
                podtopologyspread.pre_filter(pod, view)
            if saved[1] is not None:
                interpodaffinity.pre_filter(pod, view)
            return run_filters(pod, node)
        finally:
            pod.spread, pod.interpod = saved
    return run


def unresolvable(reasons: list[str]) -> bool:
    return any(r in UNRESOLVABLE_REASONS or r.startswith(UNRESOLVABLE_PREFIXES) for r in reasons)


def _histogram(n: int, reasons: Counter[str]) -> str:
    return f"0/{n} nodes are available: {', '.join(sorted(f'{count} {reason}' for reason, count in reasons.items()))}."


def unschedulable_message(decision: Decision, preemption: str | None = None) -> str:
    """Kubernetes' FitError text: '0/3 nodes are available: 1 Insufficient cpu, 2 ... preemption: ...'.

    `preemption` is what PostFilter said: None when it did not run (then, as Kubernetes, "not helpful"),
    "" when it nominated a node (no tail), else its reason."""
    if decision.num_nodes == 0:
        return "no nodes available to schedule pods"
    n = decision.num_nodes
    message = _histogram(n, decision.reasons)
    if preemption is None:
        preemption = f"0/{n} nodes are available: {n} Preemption is not helpful for scheduling."
    return f"{message} preemption: {preemption}" if preemption else message


def preemption_message(n: int, outcome_message: str, reasons: Counter[str]) -> str:
    """The `preemption:` tail when preemption found no candidate."""
    return outcome_message or _histogram(n, reasons)
