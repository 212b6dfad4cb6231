"""PodTopologySpread, InterPodAffinity, preferred NodeAffinity and preemption as pure functions over hand-built
nodes and pods (cases modelled on Kubernetes' own plugin tests)."""
from __future__ import annotations

from typing import Any

import pytest

from scheduler import preemption
from scheduler.algorithm import (DEFAULT_WEIGHTS, dry_run_filters, parse_weights, pre_filter, preemption_message,
                                 run_filters, schedule, unresolvable, unschedulable_message)
from scheduler.framework import NodeInfo, PodInfo
from scheduler.plugins import interpodaffinity, nodeaffinity, podtopologyspread
from tests.unit.test_sched_plugins import FakeListers, make_node, make_pod

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


def zoned_nodes(layout: dict[str, str]) -> list[NodeInfo]:
    """{"node-a": "zone1", ...} -> nodes with hostname and zone labels."""
    return [make_node(n, labels={HOST: n, ZONE: z}) for n, z in layout.items()]


def place(nodes: list[NodeInfo], counts: dict[str, int], labels: dict[str, str], **spec: Any) -> None:
    by_name = {n.name: n for n in nodes}
    for name, count in counts.items():
        for i in range(count):
            by_name[name].add_pod(make_pod(f"{name}-p{i}", labels=labels, **spec))


def spread(key: str, max_skew: int = 1, when: str = "DoNotSchedule", **extra: Any) -> dict[str, Any]:
    return {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchExpressions": [{"key": "foo", "operator": "Exists"}]}, **extra}


FOUR_NODES = {"node-a": "zone1", "node-b": "zone1", "node-x": "zone2", "node-y": "zone2"}


@pytest.mark.parametrize("counts,constraints,fits", [
    # No existing pods: every node fits.
    ({}, [spread(ZONE)], {"node-a", "node-b", "node-x", "node-y"}),
    # zone1 has 3, zone2 has 1: only zone2 keeps the skew within 1.
    ({"node-a": 2, "node-b": 1, "node-x": 1}, [spread(ZONE)], {"node-x", "node-y"}),
    # Same with maxSkew 2: zone1 would be 4 against 1, still too many.
    ({"node-a": 2, "node-b": 1, "node-x": 1}, [spread(ZONE, 2)], {"node-x", "node-y"}),
    # maxSkew 3 lets zone1 take it too.
    ({"node-a": 2, "node-b": 1, "node-x": 1}, [spread(ZONE, 3)], {"node-a", "node-b", "node-x", "node-y"}),
    # Per node: node-y is empty, so nodes holding one pod already are 1 over with one more... only node-y fits.
    ({"node-a": 1, "node-b": 1, "node-x": 1}, [spread(HOST)], {"node-y"}),
    # Two constraints must both hold: zone says zone2, hostname says node-y (node-x has 2).
    ({"node-a": 1, "node-b": 1, "node-x": 2}, [spread(ZONE, 2), spread(HOST)], {"node-y"}),
    # minDomains 3 with only 2 zones: the global minimum counts as 0, so a zone with 1 pod is already at skew 2.
    ({"node-a": 1, "node-x": 1}, [spread(ZONE, 1, minDomains=3)], set()),
    ({"node-a": 1}, [spread(ZONE, 1, minDomains=3)], {"node-x", "node-y"}),
])
def test_spread_filter(counts: dict[str, int], constraints: list[dict[str, Any]], fits: set[str]) -> None:
    nodes = zoned_nodes(FOUR_NODES)
    place(nodes, counts, {"foo": ""})
    pod = make_pod("new", labels={"foo": ""}, topologySpreadConstraints=constraints)
    pre_filter(pod, FakeListers(nodes=nodes))
    assert podtopologyspread.relevant(pod)
    assert {n.name for n in nodes if podtopologyspread.filter(pod, n) is None} == fits
    if fits != {n.name for n in nodes}:
        assert podtopologyspread.filter(pod, next(n for n in nodes if n.name not in fits)) == [
            podtopologyspread.REASON]


def test_spread_ignores_other_namespaces_unmatched_and_terminating_pods() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    place(nodes, {"node-a": 3}, {"foo": ""}, namespace="elsewhere")
    place(nodes, {"node-b": 3}, {"bar": ""})
    place(nodes, {"node-x": 2}, {"foo": ""})
    for p in nodes[2].pods.values():
        p.terminating = True
    pod = make_pod("new", labels={"foo": ""}, topologySpreadConstraints=[spread(ZONE)])
    pre_filter(pod, FakeListers(nodes=nodes))
    assert all(podtopologyspread.filter(pod, n) is None for n in nodes)


def test_spread_node_without_the_key_is_unresolvable_and_node_affinity_policy() -> None:
    nodes = zoned_nodes(FOUR_NODES) + [make_node("bare", labels={HOST: "bare"})]
    place(nodes, {"node-a": 2}, {"foo": ""})
    only_zone1 = {"nodeSelector": {ZONE: "zone1"}}
    honor = make_pod("h", labels={"foo": ""}, topologySpreadConstraints=[spread(ZONE)], **only_zone1)
    ignore = make_pod("i", labels={"foo": ""}, topologySpreadConstraints=[spread(ZONE, nodeAffinityPolicy="Ignore")],
                      **only_zone1)
    listers = FakeListers(nodes=nodes)
    pre_filter(honor, listers)
    pre_filter(ignore, listers)
    assert podtopologyspread.filter(honor, nodes[-1]) == [podtopologyspread.REASON_MISSING_LABEL]
    assert unresolvable([podtopologyspread.REASON_MISSING_LABEL])
    # Honor: only zone1 counts (2 pods, the minimum itself): node-b fits. Ignore: zone2's 0 is the minimum.
    assert podtopologyspread.filter(honor, nodes[1]) is None
    assert podtopologyspread.filter(ignore, nodes[1]) == [podtopologyspread.REASON]


def test_spread_score_prefers_the_emptier_domain() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    place(nodes, {"node-a": 2, "node-b": 1, "node-x": 1}, {"foo": ""})
    pod = make_pod("new", labels={"foo": ""}, topologySpreadConstraints=[spread(ZONE, when="ScheduleAnyway")])
    pre_filter(pod, FakeListers(nodes=nodes))
    assert not podtopologyspread.relevant(pod) and podtopologyspread.score_relevant(pod)
    scores = dict(zip([n.name for n in nodes], podtopologyspread.score(pod, nodes)))
    assert scores["node-x"] == scores["node-y"] == 100
    assert scores["node-a"] == scores["node-b"] < 100


def test_system_default_spreading_needs_a_workload_selector() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    place(nodes, {"node-a": 1}, {"app": "web"})
    pod = make_pod("w", labels={"app": "web"})
    pre_filter(pod, FakeListers(nodes=nodes, selectors=[{"matchLabels": {"app": "web"}}]))
    assert [(c.max_skew, c.key) for c in pod.spread.soft] == [(3, HOST), (5, ZONE)]
    d = schedule(pod, nodes, parse_weights("least-allocated=0,balanced-allocation=0"))
    assert d.node in ("node-x", "node-y")
    plain = make_pod("plain", labels={"app": "web"})
    pre_filter(plain, FakeListers(nodes=nodes))
    assert plain.spread is None and plain.interpod is None


def test_owner_spread_weight_name_still_parses() -> None:
    assert parse_weights("owner-spread=5")["pod-topology-spread"] == 5
    assert set(DEFAULT_WEIGHTS) == {"least-allocated", "balanced-allocation", "taint-toleration", "node-affinity",
                                    "pod-topology-spread", "inter-pod-affinity"}


# -- inter-pod affinity --------------------------------------------------------------------------

def affinity(kind: str, *terms: dict[str, Any], preferred: bool = False) -> dict[str, Any]:
    if preferred:
        return {kind: {"preferredDuringSchedulingIgnoredDuringExecution": list(terms)}}
    return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


def term(labels: dict[str, str] | None, key: str = HOST, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"topologyKey": key, **extra}
    if labels is not None:
        out["labelSelector"] = {"matchLabels": labels}
    return out


def feasible(pod: PodInfo, nodes: list[NodeInfo], listers: FakeListers | None = None) -> dict[str, list[str] | None]:
    pre_filter(pod, listers or FakeListers(nodes=nodes))
    return {n.name: interpodaffinity.filter(pod, n) if interpodaffinity.relevant(pod) else None for n in nodes}


def test_required_affinity_needs_a_matching_pod_in_the_domain() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    nodes[0].add_pod(make_pod("db", labels={"service": "securityscan"}))
    pod = make_pod("p", affinity=affinity("podAffinity", term({"service": "securityscan"}, ZONE)))
    got = feasible(pod, nodes)
    assert got["node-a"] is None and got["node-b"] is None
    assert got["node-x"] == got["node-y"] == [interpodaffinity.REASON_AFFINITY]
    assert unresolvable([interpodaffinity.REASON_AFFINITY])


def test_first_pod_of_a_group_may_match_its_own_affinity() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    selfish = make_pod("p", labels={"app": "g"}, affinity=affinity("podAffinity", term({"app": "g"})))
    assert all(r is None for r in feasible(selfish, nodes).values())
    other = make_pod("q", labels={"app": "h"}, affinity=affinity("podAffinity", term({"app": "g"})))
    assert all(r == [interpodaffinity.REASON_AFFINITY] for r in feasible(other, nodes).values())


def test_a_term_without_label_selector_matches_no_pod() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    nodes[0].add_pod(make_pod("x", labels={"app": "x"}))
    anti = make_pod("p", affinity=affinity("podAntiAffinity", term(None)))
    assert all(r is None for r in feasible(anti, nodes).values())


def test_required_anti_affinity_and_existing_pods_anti_affinity() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    nodes[0].add_pod(make_pod("web", labels={"app": "web"}))
    pod = make_pod("p", labels={"app": "web"}, affinity=affinity("podAntiAffinity", term({"app": "web"}, ZONE)))
    got = feasible(pod, nodes)
    assert got["node-a"] == got["node-b"] == [interpodaffinity.REASON_ANTI_AFFINITY]
    assert got["node-x"] is None and not unresolvable([interpodaffinity.REASON_ANTI_AFFINITY])

    # The placed pod refuses "noisy" pods on its node; the incoming pod has no terms of its own.
    nodes[2].add_pod(make_pod("quiet", affinity=affinity("podAntiAffinity", term({"app": "noisy"}))))
    noisy = make_pod("n", labels={"app": "noisy"})
    got = feasible(noisy, nodes)
    assert got["node-x"] == [interpodaffinity.REASON_EXISTING_ANTI_AFFINITY]
    assert got["node-a"] is None and got["node-y"] is None


def test_namespaces_and_namespace_selector() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    nodes[0].add_pod(make_pod("a", labels={"app": "db"}, namespace="team-a"))
    nodes[2].add_pod(make_pod("b", labels={"app": "db"}, namespace="team-b"))
    listers = FakeListers(nodes=nodes, namespaces={"team-a": {"team": "a"}, "team-b": {"team": "b"}, "ns": {}})
    same_ns = make_pod("p", affinity=affinity("podAffinity", term({"app": "db"})))
    assert all(r == [interpodaffinity.REASON_AFFINITY] for r in feasible(same_ns, nodes, listers).values())
    listed = make_pod("q", affinity=affinity("podAffinity", term({"app": "db"}, namespaces=["team-b"])))
    assert [n for n, r in feasible(listed, nodes, listers).items() if r is None] == ["node-x"]
    by_label = make_pod("r", affinity=affinity("podAffinity", term(
        {"app": "db"}, namespaceSelector={"matchLabels": {"team": "a"}})))
    assert [n for n, r in feasible(by_label, nodes, listers).items() if r is None] == ["node-a"]
    everywhere = make_pod("s", affinity=affinity("podAffinity", term({"app": "db"}, namespaceSelector={})))
    assert [n for n, r in feasible(everywhere, nodes, listers).items() if r is None] == ["node-a", "node-x"]


def test_preferred_affinity_and_anti_affinity_score() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    nodes[0].add_pod(make_pod("cache", labels={"app": "cache"}))
    nodes[2].add_pod(make_pod("batch", labels={"app": "batch"}))
    pod = make_pod("p", affinity={
        **affinity("podAffinity", {"weight": 5, "podAffinityTerm": term({"app": "cache"}, ZONE)}, preferred=True),
        **affinity("podAntiAffinity", {"weight": 3, "podAffinityTerm": term({"app": "batch"})}, preferred=True)})
    pre_filter(pod, FakeListers(nodes=nodes))
    assert interpodaffinity.score_relevant(pod) and not interpodaffinity.relevant(pod)
    scores = dict(zip([n.name for n in nodes], interpodaffinity.score(pod, nodes)))
    assert scores == {"node-a": 100.0, "node-b": 100.0, "node-x": 0.0, "node-y": 37.5}


def test_existing_pods_preferred_terms_attract_the_incoming_pod() -> None:
    nodes = zoned_nodes(FOUR_NODES)
    nodes[3].add_pod(make_pod("fan", affinity=affinity(
        "podAffinity", {"weight": 10, "podAffinityTerm": term({"app": "star"})}, preferred=True)))
    star = make_pod("s", labels={"app": "star"})
    pre_filter(star, FakeListers(nodes=nodes))
    assert schedule(star, nodes, parse_weights("least-allocated=0,balanced-allocation=0")).node == "node-y"


# -- preferred node affinity ---------------------------------------------------------------------

def test_preferred_node_affinity_scores_by_matched_weights() -> None:
    nodes = [make_node("ssd", labels={"disk": "ssd"}), make_node("both", labels={"disk": "ssd", "gpu": "yes"}),
             make_node("none")]
    pod = make_pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 2, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
        {"weight": 8, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}})
    assert nodeaffinity.score_relevant(pod) and not nodeaffinity.relevant(pod)
    assert nodeaffinity.score(pod, nodes) == [20.0, 100.0, 0.0]
    assert schedule(pod, nodes, DEFAULT_WEIGHTS).node == "both"
    assert not nodeaffinity.score_relevant(make_pod())


# -- preemption ----------------------------------------------------------------------------------

def prio(name: str, priority: int, cpu: str = "1", **spec: Any) -> PodInfo:
    return make_pod(name, cpu=cpu, priority=priority, **spec)


def run_preemption(pod: PodInfo, nodes: list[NodeInfo]) -> preemption.Outcome:
    pre_filter(pod, FakeListers(nodes=nodes))
    d = schedule(pod, nodes, DEFAULT_WEIGHTS)
    assert d.node is None
    by_name = {n.name: n for n in nodes}
    return preemption.preempt(pod, nodes, d.failed, run_filters, unresolvable, by_name.get)


def test_preemption_picks_the_node_with_the_least_important_victims() -> None:
    a, b = make_node("a", cpu="2"), make_node("b", cpu="2")
    a.add_pod(prio("a-mid", 50))
    a.add_pod(prio("a-low", 10))
    b.add_pod(prio("b-mid", 50))
    b.add_pod(prio("b-mid2", 40))
    out = run_preemption(prio("vip", 100), [a, b])
    assert out.candidate is not None and out.candidate.node == "a"
    # Only one pod must go, and the lower-priority one is chosen (the other is reprieved).
    assert [v.key for v in out.candidate.victims] == ["ns/a-low"]


def test_preemption_reprieves_what_it_can_and_needs_all_victims_otherwise() -> None:
    n = make_node("n", cpu="3")
    for i, p in enumerate((10, 20, 30)):
        n.add_pod(prio(f"p{i}", p))
    out = run_preemption(prio("big", 100, cpu="2"), [n])
    assert out.candidate is not None
    assert sorted(v.key for v in out.candidate.victims) == ["ns/p0", "ns/p1"]


def test_preemption_messages() -> None:
    n = make_node("n", cpu="1")
    n.add_pod(prio("same", 100))
    tainted = make_node("t", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    d = schedule(prio("vip", 100), [n, tainted], DEFAULT_WEIGHTS)
    out = run_preemption(prio("vip", 100), [n, tainted])
    assert out.candidate is None
    assert unschedulable_message(d, preemption_message(2, out.message, out.reasons)) == (
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: v}. "
        "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, "
        "1 Preemption is not helpful for scheduling.")
    never = run_preemption(prio("polite", 1000, preemptionPolicy="Never"), [n])
    assert never.candidate is None and never.message == "not eligible due to preemptionPolicy=Never."
    # A nominated node with a lower-priority pod still terminating: wait for it rather than preempt again.
    low = make_node("m", cpu="1")
    low.add_pod(prio("going", 1))
    next(iter(low.pods.values())).terminating = True
    waiting = prio("w", 1000)
    waiting.nominated_node = "m"
    assert run_preemption(waiting, [low]).message == "not eligible due to a terminating pod on the nominated node."
    # Preemption found a node: the message has no preemption tail.
    assert unschedulable_message(d, "") == "0/2 nodes are available: 1 Insufficient cpu, " \
                                           "1 node(s) had untolerated taint {k: v}."


def test_preemption_evicts_pods_that_anti_affinity_or_spreading_object_to() -> None:
    a, b = make_node("a", labels={HOST: "a", ZONE: "z1"}), make_node("b", labels={HOST: "b", ZONE: "z2"})
    a.add_pod(prio("a-low", 1, cpu="100m", labels={"app": "x"}))
    b.add_pod(prio("b-high", 500, cpu="100m", labels={"app": "x"}))
    pod = prio("vip", 100, cpu="100m", affinity=affinity("podAntiAffinity", term({"app": "x"})))
    listers = FakeListers(nodes=[a, b])
    pre_filter(pod, listers)
    d = schedule(pod, [a, b], DEFAULT_WEIGHTS)
    assert d.node is None
    out = preemption.preempt(pod, [a, b], d.failed, dry_run_filters(listers), unresolvable, {"a": a, "b": b}.get)
    assert out.candidate is not None and out.candidate.node == "a"
    assert [v.key for v in out.candidate.victims] == ["ns/a-low"]
    # The pod's own state is what it was before the dry runs.
    assert pod.interpod is not None and pod.interpod.anti_affinity_counts

    # A placed low-priority pod whose own anti-affinity rejects the incoming pod.
    c = make_node("c", labels={HOST: "c"})
    c.add_pod(prio("grumpy", 1, cpu="100m", affinity=affinity("podAntiAffinity", term({"app": "vip"}))))
    vip = prio("vip2", 100, cpu="100m", labels={"app": "vip"})
    listers = FakeListers(nodes=[c])
    pre_filter(vip, listers)
    d = schedule(vip, [c], DEFAULT_WEIGHTS)
    assert d.reasons == {interpodaffinity.REASON_EXISTING_ANTI_AFFINITY: 1}
    out = preemption.preempt(vip, [c], d.failed, dry_run_filters(listers), unresolvable, {"c": c}.get)
    assert out.candidate is not None and [v.key for v in out.candidate.victims] == ["ns/grumpy"]
