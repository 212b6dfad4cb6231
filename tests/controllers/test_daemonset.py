"""DaemonSet follows nodes joining, leaving, being tainted and cordoned; rolls out a new template."""
from __future__ import annotations

from typing import Any


from pklib.resources import must_lookup
from pklib.client import Client
from tests.controllers.helpers import PODS, FakeKubelet, PodWatcher, list_pods
from tests.support.workloads import ds_body, Nodes
from tests.util import unique, wait_for

DS = must_lookup("daemonsets")
NODES = must_lookup("nodes")


async def pods_by_node(client: Client, ns: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in await list_pods(client, ns):
        if not p["metadata"].get("deletionTimestamp"):
            out.setdefault(p["spec"]["nodeName"], []).append(p)
    return out


async def test_daemonset_follows_nodes_and_taints(client: Client, namespace: str, start_manager: Any,
                                                  nodes: Nodes) -> None:
    group = unique("g")
    n1 = await nodes.add({"pkt-group": group})
    n2 = await nodes.add({"pkt-group": group})
    await nodes.add({"pkt-group": "elsewhere"})
    await start_manager("daemonset")
    await client.create(DS, ds_body("agent", group), namespace)

    async def placed(expected: set[str]) -> Any:
        by_node = await pods_by_node(client, namespace)
        return by_node if set(by_node) == expected and all(len(v) == 1 for v in by_node.values()) else None
    by_node = await wait_for(lambda: placed({n1, n2}), message="one pod on each matching node")
    pod = by_node[n1][0]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [n1]

    n3 = await nodes.add({"pkt-group": group})
    await wait_for(lambda: placed({n1, n2, n3}), message="a joining node gets a pod")

    # NoExecute taint the pods do not tolerate: the pod leaves; NoSchedule on a new node: no pod.
    node1 = await client.get(NODES, n1)
    node1["spec"]["taints"] = [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]
    await client.update(NODES, node1)
    n4 = await nodes.add({"pkt-group": group}, taints=[{"key": "gpu", "effect": "NoSchedule"}])
    await client.delete(NODES, n2)
    await wait_for(lambda: placed({n3}), message="tainted and removed nodes lose their pods")

    # Cordoning keeps a running daemon pod (it is not evicted), but a cordoned node gets no new one.
    node3 = await client.get(NODES, n3)
    node3["spec"]["unschedulable"] = True
    await client.update(NODES, node3)

    async def status() -> Any:
        s = (await client.get(DS, "agent", namespace)).get("status") or {}
        return s if (s.get("desiredNumberScheduled"), s.get("currentNumberScheduled"),
                     s.get("numberMisscheduled")) == (0, 0, 1) else None
    # As in Kubernetes, a pod that may stay where no new one would go counts as misscheduled.
    await wait_for(status, message="status counts after cordon")
    assert set(await pods_by_node(client, namespace)) == {n3}
    assert n4 not in await pods_by_node(client, namespace)


async def test_daemon_pod_stays_on_a_lost_node(client: Client, namespace: str, start_manager: Any,
                                              nodes: Nodes) -> None:
    """As in Kubernetes, daemon pods tolerate the not-ready/unreachable NoExecute taints forever: a lost node
    keeps its daemon pod (neither evicted nor replaced); the unreachable NoSchedule taint only makes it
    misscheduled, as on a cordoned node."""
    group = unique("g")
    n1 = await nodes.add({"pkt-group": group})
    await start_manager("daemonset")
    await client.create(DS, ds_body("agent", group), namespace)
    by_node = await wait_for(lambda: _one_pod_on(client, namespace, n1), message="a pod on the node")
    pod = by_node[n1][0]
    assert {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"} \
        in pod["spec"]["tolerations"]
    node = await client.get(NODES, n1)
    node["spec"]["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": effect}
                              for effect in ("NoSchedule", "NoExecute")]
    await client.update(NODES, node)

    async def misscheduled() -> Any:
        s = (await client.get(DS, "agent", namespace)).get("status") or {}
        return s if (s.get("desiredNumberScheduled"), s.get("numberMisscheduled")) == (0, 1) else None
    await wait_for(misscheduled, message="the lost node's pod counted as misscheduled")
    assert [p["metadata"]["uid"] for p in (await pods_by_node(client, namespace))[n1]] == [pod["metadata"]["uid"]]


async def _one_pod_on(client: Client, ns: str, node: str) -> Any:
    by_node = await pods_by_node(client, ns)
    return by_node if set(by_node) == {node} and len(by_node[node]) == 1 else None


async def test_daemonset_rolling_update(client: Client, namespace: str, start_manager: Any, nodes: Nodes) -> None:
    group = unique("g")
    names = [await nodes.add({"pkt-group": group}) for _ in range(3)]
    await start_manager("daemonset")
    await client.create(DS, ds_body("roll", group), namespace)

    async def all_on(image: str) -> Any:
        by_node = await pods_by_node(client, namespace)
        pods = [p for ps in by_node.values() for p in ps]
        return set(by_node) == set(names) and all(p["spec"]["containers"][0]["image"] == image for p in pods)
    async with FakeKubelet(client, namespace):
        await wait_for(lambda: all_on("busybox:1"), message="3 pods")

        async def all_ready() -> Any:
            s = (await client.get(DS, "roll", namespace)).get("status") or {}
            return s.get("numberAvailable") == 3
        await wait_for(all_ready, message="3 available")
        watcher = PodWatcher(client, namespace)
        listed = await client.list(PODS, namespace)
        for p in listed["items"]:
            watcher.pods[p["metadata"]["name"]] = p
        await watcher.start(listed["metadata"]["resourceVersion"])
        await client.patch(DS, "roll", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}}}}, namespace)
        await wait_for(lambda: all_on("busybox:2"), timeout=20, message="all nodes updated")
        await watcher.stop()
        assert watcher.min_ready is not None and watcher.min_ready >= 3 - 1, \
            f"maxUnavailable 1 exceeded: only {watcher.min_ready} ready daemon pods at one point"

        # Still inside the fake kubelet: the last pod of the rollout becomes Ready only while it runs.
        async def updated() -> Any:
            s = (await client.get(DS, "roll", namespace)).get("status") or {}
            return s.get("updatedNumberScheduled") == 3 and s.get("numberAvailable") == 3
        await wait_for(updated, message="status after rollout")

