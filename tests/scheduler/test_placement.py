"""Placement across nodes against a real apiserver + scheduler + hollow nodes: topology spreading over zones,
inter-pod affinity and anti-affinity, and preemption of lower-priority pods."""
from __future__ import annotations

from typing import Any

from pklib.client import Client
from pklib.resources import lookup
from tests.scheduler.cluster import NODES, PODS, events_for, node_of, pod_body, wait_bound
from tests.scheduler.test_scheduler import (NodesFactory, control_plane, metrics_port, nodes,  # noqa: F401
                                            scrape, wait_unschedulable)
from tests.util import unique, wait_for

PCS = lookup("priorityclasses")
assert PCS
ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"


def term(labels: dict[str, str], key: str = HOSTNAME) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key}


async def test_spread_over_three_zones(nodes: NodesFactory, cclient: Client, cns: str) -> None:
    names = await nodes(6)
    zones = {n: "abc"[i // 2] for i, n in enumerate(names)}
    for n, z in zones.items():
        await cclient.patch(NODES, n, {"metadata": {"labels": {ZONE: z}}})
    spread = [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "zoned"}}}]
    for i in range(6):
        await cclient.create(PODS, pod_body(f"z-{i}", labels={"app": "zoned"}, topologySpreadConstraints=spread),
                             cns)
    placed = [zones[await wait_bound(cclient, cns, f"z-{i}")] for i in range(6)]
    assert sorted(placed.count(z) for z in "abc") == [2, 2, 2]

    # Pods that may only go to zone a, counting every zone (nodeAffinityPolicy Ignore; with the default Honor only
    # zone a would count): a third pod there makes 3 against 2, within maxSkew 1; a fourth would not.
    spread = [{**spread[0], "nodeAffinityPolicy": "Ignore"}]
    in_a = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": ZONE, "operator": "NotIn", "values": ["b", "c"]}]}]}}}
    await cclient.create(PODS, pod_body("z-a1", labels={"app": "zoned"}, topologySpreadConstraints=spread,
                                        affinity=in_a), cns)
    assert zones[await wait_bound(cclient, cns, "z-a1")] == "a"
    await cclient.create(PODS, pod_body("z-a2", labels={"app": "zoned"}, topologySpreadConstraints=spread,
                                        affinity=in_a), cns)
    await wait_unschedulable(cclient, cns, "z-a2",
                             "0/6 nodes are available: 2 node(s) didn't match pod topology spread constraints, "
                             "4 node(s) didn't match Pod's node affinity/selector. preemption: 0/6 nodes are "
                             f"available: 2 {NO_VICTIMS}, 4 {NOT_HELPFUL}.")


async def test_required_anti_affinity_one_per_node(nodes: NodesFactory, cclient: Client, cns: str) -> None:
    names = await nodes(3)
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "solo"})]}}
    for i in range(3):
        await cclient.create(PODS, pod_body(f"solo-{i}", labels={"app": "solo"}, affinity=anti), cns)
    assert {await wait_bound(cclient, cns, f"solo-{i}") for i in range(3)} == set(names)
    await cclient.create(PODS, pod_body("solo-3", labels={"app": "solo"}, affinity=anti), cns)
    await wait_unschedulable(cclient, cns, "solo-3",
                             "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. "
                             f"preemption: 0/3 nodes are available: 3 {NO_VICTIMS}.")


async def test_affinity_follows_a_pod_and_existing_anti_affinity_keeps_others_away(
        nodes: NodesFactory, cclient: Client, cns: str) -> None:
    await nodes(3)
    await cclient.create(PODS, pod_body("db", labels={"app": "db"}), cns)
    db_node = await wait_bound(cclient, cns, "db")
    near_db = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "db"})]}}
    for i in range(2):
        await cclient.create(PODS, pod_body(f"web-{i}", affinity=near_db), cns)
        assert await wait_bound(cclient, cns, f"web-{i}") == db_node

    # A pod that waits for its partner: placed as soon as the partner is.
    near_cache = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "cache"})]}}
    await cclient.create(PODS, pod_body("early", affinity=near_cache), cns)
    await wait_unschedulable(cclient, cns, "early", "0/3 nodes are available: 3 node(s) didn't match pod affinity "
                                                    f"rules. preemption: 0/3 nodes are available: 3 {NOT_HELPFUL}.")
    await cclient.create(PODS, pod_body("cache", labels={"app": "cache"}), cns)
    assert await wait_bound(cclient, cns, "early", timeout=5) == await wait_bound(cclient, cns, "cache")

    nowhere = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "ghost"})]}}
    await cclient.create(PODS, pod_body("lost", affinity=nowhere), cns)
    await wait_unschedulable(cclient, cns, "lost", "0/3 nodes are available: 3 node(s) didn't match pod affinity "
                                                   f"rules. preemption: 0/3 nodes are available: 3 {NOT_HELPFUL}.")

    # The db pod's neighbours may not be "noisy": the db's own anti-affinity is not needed, a placed pod's is.
    quiet = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "noisy"})]}}
    await cclient.create(PODS, pod_body("quiet", labels={"app": "quiet"}, affinity=quiet,
                                        nodeSelector={HOSTNAME: db_node}), cns)
    assert await wait_bound(cclient, cns, "quiet") == db_node
    await cclient.create(PODS, pod_body("noisy", labels={"app": "noisy"}, nodeSelector={HOSTNAME: db_node}), cns)
    await wait_unschedulable(cclient, cns, "noisy",
                             "0/3 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules, "
                             "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are "
                             f"available: 1 {NO_VICTIMS}, 2 {NOT_HELPFUL}.")


async def test_high_priority_pod_preempts_a_low_priority_one(nodes: NodesFactory, cclient: Client, cns: str,
                                                             metrics_port: int) -> None:
    [node] = await nodes(1, "--cpu", "1")
    before = scrape(metrics_port)
    low, high, polite = unique("low"), unique("high"), unique("polite")
    classes = [(low, 10, "PreemptLowerPriority"), (high, 1000, "PreemptLowerPriority"), (polite, 1000, "Never")]
    for name, value, policy in classes:
        await cclient.create(PCS, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                   "metadata": {"name": name}, "value": value, "preemptionPolicy": policy})
    try:
        await cclient.create(PODS, pod_body("victim", cpu="800m", priorityClassName=low,
                                            terminationGracePeriodSeconds=1), cns)
        assert await wait_bound(cclient, cns, "victim") == node

        # preemptionPolicy Never: waits instead of evicting.
        await cclient.create(PODS, pod_body("waits", cpu="800m", priorityClassName=polite), cns)
        await wait_unschedulable(cclient, cns, "waits", "0/1 nodes are available: 1 Insufficient cpu. "
                                                        "preemption: not eligible due to preemptionPolicy=Never.")
        await cclient.delete(PODS, "waits", cns, grace_period_seconds=0)

        await cclient.create(PODS, pod_body("vip", cpu="800m", priorityClassName=high), cns)

        async def nominated() -> bool:
            pod = await cclient.get(PODS, "vip", cns)
            return (pod.get("status") or {}).get("nominatedNodeName") == node or bool(pod["spec"].get("nodeName"))
        await wait_for(nominated, 15, message="vip nominated to the node")
        assert await wait_bound(cclient, cns, "vip", timeout=30) == node

        async def victim_gone() -> bool:
            try:
                return await node_of(cclient, cns, "victim") is None
            except Exception:  # noqa: BLE001 - not found: deleted
                return True
        await wait_for(victim_gone, 15, message="the victim deleted")
        events = await wait_for(lambda: events_for(cclient, cns, "victim", "Preempted"), 10,
                                message="a Preempted event on the victim")
        assert events[0]["message"].startswith("Preempted by pod ") and events[0]["message"].endswith(f"on node {node}")
        after = scrape(metrics_port)
        assert after["scheduler_preemption_victims_total"] - before["scheduler_preemption_victims_total"] == 1
        assert after["scheduler_preemption_attempts_total"] > before["scheduler_preemption_attempts_total"]
    finally:
        for name, _, _ in classes:
            await cclient.delete(PCS, name)
