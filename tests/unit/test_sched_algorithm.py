"""The scheduling decision over many nodes: filtering, sampling, scoring, the unschedulable message."""
from __future__ import annotations

import random

import pytest

from scheduler.algorithm import (DEFAULT_WEIGHTS, num_feasible_nodes_to_find, parse_weights, pre_filter, schedule,
                                 unschedulable_message)
from tests.support.scheduling import FakeListers, make_node, make_pod


def test_picks_the_only_node_that_fits() -> None:
    nodes = [make_node("a", memory="1Gi"), make_node("b", memory="8Gi"), make_node("c", memory="1Gi")]
    d = schedule(make_pod(memory="4Gi"), nodes, DEFAULT_WEIGHTS)
    assert d.node == "b"


def test_kubernetes_style_message_counts_reasons_per_node() -> None:
    nodes = [make_node("a", memory="1Gi"), make_node("b", memory="1Gi"),
             make_node("c", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])]
    d = schedule(make_pod(memory="4Gi"), nodes, DEFAULT_WEIGHTS)
    assert d.node is None
    assert unschedulable_message(d) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient memory. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")


def test_no_nodes_at_all() -> None:
    d = schedule(make_pod(), [], DEFAULT_WEIGHTS)
    assert d.node is None and unschedulable_message(d) == "no nodes available to schedule pods"


def test_spreads_replicas_of_one_owner() -> None:
    nodes = [make_node(f"n{i}", labels={"kubernetes.io/hostname": f"n{i}"}) for i in range(3)]
    nodes[0].add_pod(make_pod("a", owner="rs", labels={"app": "web"}))
    nodes[1].add_pod(make_pod("b", owner="rs", labels={"app": "web"}))
    pod = make_pod("c", owner="rs", labels={"app": "web"})
    pre_filter(pod, FakeListers(nodes=nodes, selectors=[{"matchLabels": {"app": "web"}}]))
    d = schedule(pod, nodes, DEFAULT_WEIGHTS, rng=random.Random(1))
    assert d.node == "n2"


def test_prefers_nodes_without_prefer_no_schedule_taints() -> None:
    nodes = [make_node("soft", taints=[{"key": "k", "effect": "PreferNoSchedule"}]), make_node("clean")]
    for seed in range(5):
        assert schedule(make_pod(), nodes, DEFAULT_WEIGHTS, rng=random.Random(seed)).node == "clean"


def test_weights_change_the_outcome() -> None:
    # "busy" holds another replica of the owner but has the most room; "full" has none of them.
    busy = make_node("busy", cpu="64", memory="256Gi", labels={"kubernetes.io/hostname": "busy"})
    full = make_node("full", cpu="4", memory="16Gi", labels={"kubernetes.io/hostname": "full"})
    busy.add_pod(make_pod("a", owner="rs", labels={"app": "web"}))
    full.add_pod(make_pod("x", cpu="3", memory="12Gi"))
    pod = make_pod("b", owner="rs", cpu="100m", memory="100Mi", labels={"app": "web"})
    pre_filter(pod, FakeListers(nodes=[busy, full], selectors=[{"matchLabels": {"app": "web"}}]))
    resources_only = parse_weights("owner-spread=0,taint-toleration=0,balanced-allocation=0")
    spread_only = parse_weights("least-allocated=0,balanced-allocation=0,owner-spread=1")
    assert schedule(pod, [busy, full], resources_only).node == "busy"
    assert schedule(pod, [busy, full], spread_only).node == "full"


@pytest.mark.parametrize("text", ["nope=1", "least-allocated", "least-allocated=x", "owner-spread=-1"])
def test_bad_weights_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid score weight"):
        parse_weights(text)


def test_feasible_nodes_to_find_is_adaptive() -> None:
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(1000) == 420  # 50% - 1000/125
    assert num_feasible_nodes_to_find(5000) == 500  # 10%
    assert num_feasible_nodes_to_find(100_000) == 5000  # 5% floor
    assert num_feasible_nodes_to_find(1000, percentage=5) == 100  # never fewer than 100
    assert num_feasible_nodes_to_find(1000, percentage=100) == 1000


def test_sampling_stops_early_and_rotates_through_the_nodes() -> None:
    nodes = [make_node(f"n{i:04}") for i in range(1000)]
    d = schedule(make_pod(), nodes, DEFAULT_WEIGHTS, start=900, percentage=10)
    assert d.evaluated == 100
    # The chosen node is among the evaluated window 900..999.
    assert d.node is not None and int(d.node[1:]) >= 900


def test_taint_filters_follow_node_updates() -> None:
    """Untainted, uncordoned nodes skip the taint filters: a node tainted or cordoned later must be filtered again,
    and one whose taint is removed must take pods again."""
    node = make_node("a")
    raw = node.node
    d = schedule(make_pod(), [node], DEFAULT_WEIGHTS)
    assert d.node == "a"
    node.set_node({**raw, "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoExecute"}]}})
    d = schedule(make_pod(), [node], DEFAULT_WEIGHTS)
    assert d.node is None and d.reasons == {"node(s) had untolerated taint {k: v}": 1}
    node.set_node({**raw, "spec": {"unschedulable": True}})
    d = schedule(make_pod(), [node], DEFAULT_WEIGHTS)
    assert d.node is None and d.reasons == {"node(s) were unschedulable": 1}
    node.set_node(raw)
    assert schedule(make_pod(), [node], DEFAULT_WEIGHTS).node == "a"


def test_round_robin_start_wraps_and_reports_every_reason() -> None:
    nodes = [make_node(f"n{i}", memory="1Gi" if i != 2 else "8Gi") for i in range(5)]
    d = schedule(make_pod(memory="4Gi"), nodes, DEFAULT_WEIGHTS, start=3)
    assert d.node == "n2" and d.evaluated == 5
    assert set(d.failed) == {"n0", "n1", "n3", "n4"}
    full = make_node("full", pods="1")
    full.add_pod(make_pod("other"))
    d = schedule(make_pod(cpu="8", memory="32Gi"), [full], DEFAULT_WEIGHTS)
    assert d.failed == {"full": ["Too many pods", "Insufficient cpu", "Insufficient memory"]}


def test_a_node_is_judged_again_once_a_pod_lands_on_it_or_it_changes() -> None:
    # The same pod shape meets the node three times; each time the node has changed since the last decision.
    node = make_node("only", cpu="1")
    first = make_pod("a", cpu="600m")
    assert schedule(first, [node], DEFAULT_WEIGHTS).node == "only"
    node.add_pod(first)
    d = schedule(make_pod("b", cpu="600m"), [node], DEFAULT_WEIGHTS)
    assert d.node is None and d.reasons == {"Insufficient cpu": 1}
    node.remove_pod(first)
    assert schedule(make_pod("c", cpu="600m"), [node], DEFAULT_WEIGHTS).node == "only"
    node.set_node({"metadata": {"name": "only"}, "status": {"allocatable": {"cpu": "500m", "memory": "1Gi",
                                                                           "pods": "10"}}})
    assert schedule(make_pod("d", cpu="600m"), [node], DEFAULT_WEIGHTS).node is None


def test_pods_of_other_shapes_get_their_own_outcome_on_an_unchanged_node() -> None:
    small, big = make_node("small", cpu="1"), make_node("big", cpu="8")
    for seed in range(3):
        assert schedule(make_pod("x", cpu="2"), [small, big], DEFAULT_WEIGHTS, rng=random.Random(seed)).node == "big"
        d = schedule(make_pod("y", cpu="9"), [small, big], DEFAULT_WEIGHTS)
        assert d.node is None and d.reasons == {"Insufficient cpu": 2}


def test_the_emptier_node_wins_after_the_other_took_a_pod() -> None:
    # Equal nodes tie; once one holds a pod, the resource scores (kept per node and pod shape) must prefer the
    # other one for every later pod of the same shape.
    a, b = make_node("a"), make_node("b")
    pod = make_pod("p1", cpu="1", memory="1Gi")
    assert {schedule(pod, [a, b], DEFAULT_WEIGHTS, rng=random.Random(seed)).node for seed in range(20)} == {"a", "b"}
    a.add_pod(make_pod("p2", cpu="1", memory="1Gi"))
    for seed in range(5):
        assert schedule(make_pod("p3", cpu="1", memory="1Gi"), [a, b], DEFAULT_WEIGHTS,
                        rng=random.Random(seed)).node == "b"
