"""ReplicaSet controller against the real apiserver: scale, adoption/orphaning, status, expectations."""
from __future__ import annotations

from typing import Any

from pklib.resources import must_lookup
from pklib.client import Client
from tests.controllers.helpers import FakeKubelet, list_pods, set_pod_ready
from tests.support.workloads import rs_body
from tests.util import wait_for

RS = must_lookup("replicasets")
PODS = must_lookup("pods")
EVENTS = must_lookup("events")


def bare_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def test_scale_up_and_down_with_status(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("replicaset")
    rs = await client.create(RS, rs_body("web", 3), namespace)
    pods = await wait_for(lambda: _pods_if(client, namespace, "app=web", 3), message="3 pods")
    for p in pods:
        ref = p["metadata"]["ownerReferences"][0]
        assert ref["uid"] == rs["metadata"]["uid"] and ref["controller"] is True
        assert p["metadata"]["name"].startswith("web-")
    await set_pod_ready(client, pods[0])

    async def status_ok() -> Any:
        s = (await client.get(RS, "web", namespace)).get("status") or {}
        return s if (s.get("replicas"), s.get("readyReplicas"), s.get("availableReplicas"),
                     s.get("fullyLabeledReplicas")) == (3, 1, 1, 3) else None
    status = await wait_for(status_ok, message="status 3 replicas, 1 ready")
    assert status["observedGeneration"] == rs["metadata"]["generation"]

    await client.patch(RS, "web", {"spec": {"replicas": 1}}, namespace)
    left = await wait_for(lambda: _pods_if(client, namespace, "app=web", 1), message="scaled down to 1")
    assert left[0]["metadata"]["name"] == pods[0]["metadata"]["name"], "the ready pod is kept, unready go first"

    async def events() -> Any:
        items = (await client.list(EVENTS, namespace))["items"]
        reasons = {e["reason"] for e in items if e["involvedObject"]["name"] == "web"}
        return items if {"SuccessfulCreate", "SuccessfulDelete"} <= reasons else None
    items = await wait_for(events, message="Events explaining what the controller did")
    created = next(e for e in items if e["reason"] == "SuccessfulCreate")
    assert created["involvedObject"]["uid"] == rs["metadata"]["uid"] and created["type"] == "Normal"
    assert created["source"]["component"] == "controller-manager"


async def test_adopts_orphans_and_releases_relabelled_pods(client: Client, namespace: str,
                                                           start_manager: Any) -> None:
    await client.create(PODS, bare_pod("orphan", {"app": "db"}), namespace)
    await start_manager("replicaset")
    rs = await client.create(RS, rs_body("db", 2), namespace)
    await wait_for(lambda: _pods_if(client, namespace, "app=db", 2), message="2 pods")
    orphan = await client.get(PODS, "orphan", namespace)
    assert orphan["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"], "the orphan was adopted"

    # Relabel one pod out of the selector: it is released and replaced.
    await client.patch(PODS, "orphan", {"metadata": {"labels": {"app": "debug"}}}, namespace)

    async def released() -> Any:
        p = await client.get(PODS, "orphan", namespace)
        return not p["metadata"].get("ownerReferences")
    await wait_for(released, message="relabelled pod released")
    await wait_for(lambda: _pods_if(client, namespace, "app=db", 2), message="replacement created")


async def test_min_ready_seconds_delays_availability(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("replicaset")
    await client.create(RS, rs_body("slow", 1, minReadySeconds=2), namespace)
    async with FakeKubelet(client, namespace):
        async def ready_not_available() -> Any:
            s = (await client.get(RS, "slow", namespace)).get("status") or {}
            return s.get("readyReplicas") == 1 and s.get("availableReplicas", 0) == 0
        await wait_for(ready_not_available, message="ready but not yet available")

        async def available() -> Any:
            s = (await client.get(RS, "slow", namespace)).get("status") or {}
            return s.get("availableReplicas") == 1
        await wait_for(available, timeout=10, message="available after minReadySeconds")


async def _pods_if(client: Client, namespace: str, selector: str, n: int) -> list[dict[str, Any]] | None:
    pods = [p for p in await list_pods(client, namespace, selector) if not p["metadata"].get("deletionTimestamp")]
    return pods if len(pods) == n else None


async def test_replication_controller_with_equality_selector(client: Client, namespace: str,
                                                            start_manager: Any) -> None:
    """A ReplicationController (core/v1) is reconciled by the same machinery: its plain label-map selector defaults
    to the template's labels, its scale subresource drives the pods, and its status counts them."""
    rcs = must_lookup("replicationcontrollers")
    await start_manager("replicationcontroller")
    template = {"metadata": {"labels": {"app": "old", "tier": "x"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    rc = await client.create(rcs, {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "old"},
                                   "spec": {"replicas": 2, "template": template}}, namespace)
    assert rc["spec"]["selector"] == {"app": "old", "tier": "x"} and rc["metadata"]["labels"] == rc["spec"]["selector"]
    pods = await wait_for(lambda: _pods_if(client, namespace, "app=old", 2), message="2 pods of the RC")
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in pods} == {"ReplicationController"}

    scale = await client.get(rcs, "old", namespace, subresource="scale")
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["selector"]) == \
        ("Scale", 2, "app=old,tier=x")
    scale["spec"]["replicas"] = 3
    await client.update(rcs, scale, subresource="scale")
    await wait_for(lambda: _pods_if(client, namespace, "app=old", 3), message="scaled to 3 through /scale")

    async def counted() -> Any:
        s = (await client.get(rcs, "old", namespace)).get("status") or {}
        return s if (s.get("replicas"), s.get("fullyLabeledReplicas")) == (3, 3) else None
    await wait_for(counted, message="status counts 3 replicas")
