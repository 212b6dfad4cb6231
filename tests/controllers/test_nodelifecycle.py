"""Node lifecycle with hollow nodes: a silent node becomes Ready=Unknown and tainted, its pods
are evicted after their toleration and recreated elsewhere by their ReplicaSet; when the node
heartbeats again it is Ready and untainted."""
from __future__ import annotations

from typing import Any

from pklib.client import Client
from pklib.resources import lookup
from tests.scheduler.cluster import (NODES, PODS, Cluster, cclient, cluster, cns, condition,  # noqa: F401
                                     delete_nodes, pod_body, start_hollow)
from tests.util import unique, wait_for

RS = lookup("replicasets")
assert RS is not None
UNREACHABLE = "node.kubernetes.io/unreachable"


def running_ready(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and condition(pod, "Ready") == "True"


def unreachable_taints(node: dict[str, Any]) -> set[str]:
    return {t["effect"] for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") == UNREACHABLE}


async def test_silent_node_pods_are_recreated_elsewhere(cluster: Cluster, cclient: Client,  # noqa: F811
                                                       cns: str) -> None:  # noqa: F811
    cluster.start("controller-manager", "--controllers", "nodeipam,nodelifecycle,replicaset",
                  "--node-monitor-grace-period", "5", "--default-unreachable-toleration-seconds", "2")
    cluster.start("scheduler")
    renew = ("--node-lease-renew-interval", "0.5")
    prefix = unique("silent")
    silent, (doomed,) = await start_hollow(cluster, cclient, 1, *renew, prefix=prefix)
    healthy, (survivor,) = await start_hollow(cluster, cclient, 1, *renew)
    try:
        labels = {"app": "web"}
        await cclient.create(RS, {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
                                  "spec": {"replicas": 4, "selector": {"matchLabels": labels},
                                           "template": {"metadata": {"labels": labels},
                                                        "spec": pod_body("x")["spec"]}}}, cns)
        # A pod that tolerates the unreachable taint forever must stay where it is.
        forever = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
        await cclient.create(PODS, pod_body("stays", tolerations=forever,
                                            nodeSelector={"kubernetes.io/hostname": doomed}), cns)

        async def web_pods() -> list[dict[str, Any]]:
            return (await cclient.list(PODS, cns, label_selector="app=web")).get("items") or []

        async def all_running() -> list[dict[str, Any]] | None:
            pods = [p for p in await web_pods() if not p["metadata"].get("deletionTimestamp")]
            return pods if len(pods) == 4 and all(running_ready(p) for p in pods) else None

        pods = await wait_for(all_running, 20, message="4 web pods Running")
        on_doomed = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == doomed}
        assert on_doomed, "spreading puts replicas on both nodes"

        silent.kill()
        # Grace period 5 s: the node is marked unknown and tainted NoExecute.

        async def marked() -> bool:
            node = await cclient.get(NODES, doomed)
            return (condition(node, "Ready") == "Unknown"
                    and unreachable_taints(node) == {"NoSchedule", "NoExecute"})

        await wait_for(marked, 15, message=f"{doomed} Ready=Unknown with the unreachable taints")
        assert condition(await cclient.get(NODES, survivor), "Ready") == "True"
        # No kubelet speaks for the lost node's pods: none is Ready (Services stop sending them traffic).

        async def not_ready() -> bool:
            return condition(await cclient.get(PODS, "stays", cns), "Ready") == "False"
        await wait_for(not_ready, 10, message="the pod on the lost node not Ready")

        # Default toleration 2 s: the pods are evicted and their replacements run on the survivor.
        async def recreated() -> bool:
            pods = await web_pods()
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            evicted = {p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")}
            return (on_doomed <= evicted and len(live) == 4
                    and all(running_ready(p) and p["spec"]["nodeName"] == survivor for p in live))

        await wait_for(recreated, 20, message="replacement pods Running on the healthy node")
        stays = await cclient.get(PODS, "stays", cns)
        assert not stays["metadata"].get("deletionTimestamp")

        # The node comes back: Ready again, taint gone.
        silent, _ = await start_hollow(cluster, cclient, 1, *renew, prefix=prefix)

        async def recovered() -> bool:
            node = await cclient.get(NODES, doomed)
            return condition(node, "Ready") == "True" and not unreachable_taints(node)

        await wait_for(recovered, 15, message=f"{doomed} Ready and untainted again")
    finally:
        silent.kill()
        healthy.kill()
        await delete_nodes(cclient, [doomed, survivor])


async def test_pressure_conditions_bring_and_take_away_their_noschedule_taints(cluster: Cluster,  # noqa: F811
                                                                              cclient: Client) -> None:  # noqa: F811
    cluster.start("controller-manager", "--controllers", "nodelifecycle")
    name = unique("pressed")
    await cclient.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                                 "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}})
    try:
        async def set_conditions(memory: str, disk: str) -> None:
            await cclient.patch(NODES, name, {"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                {"type": "MemoryPressure", "status": memory}, {"type": "DiskPressure", "status": disk},
                {"type": "PIDPressure", "status": "False"}]}}, subresource="status")

        async def taints(wanted: set[str]) -> bool:
            node = await cclient.get(NODES, name)
            return {f"{t['key']}:{t['effect']}" for t in node["spec"].get("taints") or []} == wanted

        await set_conditions("True", "True")
        await wait_for(lambda: taints({"dedicated:NoSchedule", "node.kubernetes.io/memory-pressure:NoSchedule",
                                       "node.kubernetes.io/disk-pressure:NoSchedule"}), 15,
                       message="pressure taints added")
        await set_conditions("False", "True")
        await wait_for(lambda: taints({"dedicated:NoSchedule", "node.kubernetes.io/disk-pressure:NoSchedule"}), 15,
                       message="the memory-pressure taint removed, the others kept")
    finally:
        await delete_nodes(cclient, [name])
