"""The scheduler against a real apiserver + etcd, with hollow nodes: resources, selectors, taints,
spreading, unschedulable reporting (condition + event) and retry when the cluster changes."""
from __future__ import annotations

import re
import urllib.request
from typing import AsyncIterator, Awaitable, Callable

import pytest

from pklib.client import Client
from tests.scheduler.cluster import (NODES, PODS, PVCS, PVS, Cluster, Component, condition, delete_nodes,
                                     events_for, node_of, pod_body, start_hollow, wait_bound)
from tests.support.node import allow_privileged_pods
from tests.util import free_port, wait_for

NodesFactory = Callable[..., Awaitable[list[str]]]

PREEMPTION = "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
# What Kubernetes says when evicting could help but no pod has a lower priority than the incoming one.
NO_VICTIMS = "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def control_plane(cluster: Cluster, metrics_port: int) -> Cluster:
    cluster.start("controller-manager", "--controllers", "nodeipam")
    cluster.start("scheduler", "--port", str(metrics_port))
    return cluster


@pytest.fixture
async def nodes(control_plane: Cluster, cclient: Client) -> AsyncIterator[NodesFactory]:
    """nodes(3, "--cpu", "2") starts hollow nodes for this test; they are removed afterwards."""
    started: list[tuple[Component, list[str]]] = []

    async def make(count: int, *flags: str) -> list[str]:
        comp, names = await start_hollow(control_plane, cclient, count, *flags)
        started.append((comp, names))
        return names

    yield make
    for comp, names in started:
        comp.kill()
        await delete_nodes(cclient, names)


async def wait_unschedulable(client: Client, ns: str, name: str, message: str) -> None:
    async def reported() -> bool:
        pod = await client.get(PODS, name, ns)
        return (condition(pod, "PodScheduled") == "False"
                and condition(pod, "PodScheduled", "reason") == "Unschedulable"
                and condition(pod, "PodScheduled", "message") == message)

    await wait_for(reported, 15, message=f"{name} reported unschedulable with {message!r}")
    events = await wait_for(lambda: events_for(client, ns, name, "FailedScheduling"), 10,
                            message="a FailedScheduling event")
    assert events[0]["type"] == "Warning" and events[0]["message"] == message


async def test_resources_fit_and_unschedulable_pod_is_reported_then_retried(
        nodes: NodesFactory, cclient: Client, cns: str) -> None:
    names = await nodes(3, "--cpu", "2", "--memory", "4Gi")
    for i in range(3):
        await cclient.create(PODS, pod_body(f"big-{i}", cpu="1500m"), cns)
    placed = {await wait_bound(cclient, cns, f"big-{i}") for i in range(3)}
    assert placed == set(names), "each 1.5-cpu pod needs a node of its own"

    await cclient.create(PODS, pod_body("one-too-many", cpu="1500m"), cns)
    await wait_unschedulable(cclient, cns, "one-too-many",
                             f"0/3 nodes are available: 3 Insufficient cpu. {NO_VICTIMS}")
    await cclient.create(PODS, pod_body("too-much-memory", memory="5Gi"), cns)
    await wait_unschedulable(cclient, cns, "too-much-memory",
                             f"0/3 nodes are available: 3 Insufficient memory. {NO_VICTIMS}")

    # Freeing a node's cpu makes the waiting pod fit: it is retried without any change to itself.
    freed = await node_of(cclient, cns, "big-0")
    await cclient.delete(PODS, "big-0", cns, grace_period_seconds=0)
    assert await wait_bound(cclient, cns, "one-too-many") == freed
    pod = await cclient.get(PODS, "too-much-memory", cns)
    assert not pod["spec"].get("nodeName")


async def test_node_selector_and_affinity(nodes: NodesFactory, cclient: Client, cns: str) -> None:
    names = await nodes(3)
    await cclient.patch(NODES, names[1], {"metadata": {"labels": {"disktype": "ssd"}}})
    await cclient.create(PODS, pod_body("ssd", nodeSelector={"disktype": "ssd"}), cns)
    assert await wait_bound(cclient, cns, "ssd") == names[1]

    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": names[:2]}]}]}}}
    await cclient.create(PODS, pod_body("not-first-two", affinity=affinity), cns)
    assert await wait_bound(cclient, cns, "not-first-two") == names[2]

    await cclient.create(PODS, pod_body("nvme", nodeSelector={"disktype": "nvme"}), cns)
    await wait_unschedulable(cclient, cns, "nvme",
                             f"0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
                             f"{PREEMPTION}")
    # Labelling a node is a cluster change: the pod is tried again and lands there.
    await cclient.patch(NODES, names[0], {"metadata": {"labels": {"disktype": "nvme"}}})
    assert await wait_bound(cclient, cns, "nvme") == names[0]


async def test_taints_and_tolerations(nodes: NodesFactory, cclient: Client, cns: str) -> None:
    names = await nodes(3)
    for n in names[:2]:
        await cclient.patch(NODES, n, {"spec": {"taints": [{"key": "dedicated", "value": "db",
                                                           "effect": "NoSchedule"}]}})
    for i in range(4):
        await cclient.create(PODS, pod_body(f"plain-{i}"), cns)
    assert {await wait_bound(cclient, cns, f"plain-{i}") for i in range(4)} == {names[2]}

    toleration = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
    await cclient.patch(NODES, names[2], {"spec": {"unschedulable": True}})
    await cclient.create(PODS, pod_body("db", tolerations=toleration), cns)
    assert await wait_bound(cclient, cns, "db") in names[:2]

    await cclient.create(PODS, pod_body("nowhere"), cns)
    await wait_unschedulable(cclient, cns, "nowhere",
                             "0/3 nodes are available: 1 node(s) were unschedulable, "
                             f"2 node(s) had untolerated taint {{dedicated: db}}. {PREEMPTION}")


async def test_replicas_of_one_owner_spread_across_nodes(nodes: NodesFactory, cclient: Client,
                                                        cns: str) -> None:
    names = await nodes(3)
    # A controller reference is all spreading looks at; the owner need not exist for the scheduler.
    owner = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "3c9e1e0e-0000-4000-8000-000000000001",
              "controller": True}]
    for i in range(6):
        await cclient.create(PODS, pod_body(f"web-{i}", owner_references=owner), cns)
    placed = [await wait_bound(cclient, cns, f"web-{i}") for i in range(6)]
    assert sorted(placed.count(n) for n in names) == [2, 2, 2]


async def test_host_port_conflicts(nodes: NodesFactory, cclient: Client, cns: str) -> None:
    await nodes(3)
    await allow_privileged_pods(cclient, cns)  # host ports are beyond the default Pod Security level
    port_pod = pod_body("p")
    port_pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080}]
    for i in range(3):
        port_pod["metadata"]["name"] = f"port-{i}"
        await cclient.create(PODS, port_pod, cns)
    assert len({await wait_bound(cclient, cns, f"port-{i}") for i in range(3)}) == 3
    port_pod["metadata"]["name"] = "port-3"
    await cclient.create(PODS, port_pod, cns)
    await wait_unschedulable(cclient, cns, "port-3", "0/3 nodes are available: 3 node(s) didn't have free ports "
                                                     f"for the requested pod ports. {NO_VICTIMS}")


async def test_pods_follow_their_local_volumes(nodes: NodesFactory, cclient: Client, cns: str) -> None:
    names = await nodes(3)
    pv_name = f"{cns}-local"
    await cclient.create(PVS, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/pkt-unused"},
        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local-path",
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [names[2]]}]}]}}}})
    try:
        await cclient.create(PVCS, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                                    "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": pv_name,
                                             "storageClassName": "local-path",
                                             "resources": {"requests": {"storage": "1Gi"}}}}, cns)
        volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
        await cclient.create(PODS, pod_body("with-volume", volumes=volumes), cns)
        assert await wait_bound(cclient, cns, "with-volume") == names[2]

        missing = [{"name": "data", "persistentVolumeClaim": {"claimName": "nope"}}]
        await cclient.create(PODS, pod_body("missing-claim", volumes=missing), cns)
        await wait_unschedulable(cclient, cns, "missing-claim",
                                 f'0/3 nodes are available: 3 persistentvolumeclaim "nope" not found. {NO_VICTIMS}')
    finally:
        await cclient.delete(PVS, pv_name)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", text, re.M)}


async def test_metrics_count_attempts_and_pending_pods(nodes: NodesFactory, cclient: Client, cns: str,
                                                       metrics_port: int) -> None:
    await nodes(2, "--cpu", "1")
    before = scrape(metrics_port)
    await cclient.create(PODS, pod_body("fits", cpu="500m"), cns)
    await cclient.create(PODS, pod_body("too-big", cpu="2"), cns)
    await wait_bound(cclient, cns, "fits")
    await wait_unschedulable(cclient, cns, "too-big",
                             "0/2 nodes are available: 2 Insufficient cpu. "
                             "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.")
    after = scrape(metrics_port)
    scheduled = 'scheduler_schedule_attempts_total{result="scheduled"}'
    unschedulable = 'scheduler_schedule_attempts_total{result="unschedulable"}'
    assert after[scheduled] - before[scheduled] == 1
    assert after[unschedulable] - before[unschedulable] >= 1
    assert after['scheduler_pending_pods{queue="unschedulable"}'] + after['scheduler_pending_pods{queue="backoff"}'] >= 1
    assert after["scheduler_cache_nodes"] == 2
    assert after["scheduler_scheduling_algorithm_duration_seconds_count"] > before[
        "scheduler_scheduling_algorithm_duration_seconds_count"]
