"""StatefulSet: ordered creation behind readiness, reverse scale-down, PVCs kept, partitioned rolling update."""
from __future__ import annotations

import asyncio
from typing import Any

from pklib.resources import must_lookup
from pklib.client import Client
from tests.controllers.helpers import FakeKubelet, list_pods, set_pod_ready
from tests.support.workloads import sts_body
from tests.util import wait_for

STS = must_lookup("statefulsets")
PODS = must_lookup("pods")
PVCS = must_lookup("persistentvolumeclaims")


async def names(client: Client, ns: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in await list_pods(client, ns))


async def test_ordered_creation_scale_down_and_claims(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("statefulset")
    claim = {"metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    await client.create(STS, sts_body("db", 3, volumeClaimTemplates=[claim]), namespace)

    for k in range(3):
        async def only_up_to_k() -> Any:
            s = (await client.get(STS, "db", namespace)).get("status") or {}
            return s.get("replicas") == k + 1 and await names(client, namespace) == [f"db-{i}" for i in range(k + 1)]
        await wait_for(only_up_to_k, message=f"db-{k} created, db-{k + 1} not yet")
        pod = await client.get(PODS, f"db-{k}", namespace)
        assert pod["spec"]["hostname"] == f"db-{k}" and pod["spec"]["subdomain"] == "db"
        assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-db-{k}"}} in pod["spec"]["volumes"]
        await set_pod_ready(client, pod)

    async def all_ready() -> Any:
        s = (await client.get(STS, "db", namespace)).get("status") or {}
        return s.get("readyReplicas") == 3
    await wait_for(all_ready, message="3 ready")

    deleted: list[str] = []
    listed = await client.list(PODS, namespace)

    async def record() -> None:
        async for ev in client.watch(PODS, namespace, resource_version=listed["metadata"]["resourceVersion"]):
            if ev["type"] == "DELETED":
                deleted.append(ev["object"]["metadata"]["name"])
    recorder = asyncio.create_task(record())
    try:
        await client.patch(STS, "db", {"spec": {"replicas": 1}}, namespace)

        async def scaled() -> Any:
            return await names(client, namespace) == ["db-0"]
        await wait_for(scaled, message="scaled down to db-0")
    finally:
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
    assert deleted == ["db-2", "db-1"], "scale-down goes from the highest ordinal"
    pvcs = sorted(p["metadata"]["name"] for p in (await client.list(PVCS, namespace))["items"])
    assert pvcs == ["data-db-0", "data-db-1", "data-db-2"], "claims survive scale-down"


async def test_parallel_and_partitioned_rolling_update(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("statefulset")
    async with FakeKubelet(client, namespace):
        await client.create(STS, sts_body("web", 3, podManagementPolicy="Parallel", updateStrategy={
            "type": "RollingUpdate", "rollingUpdate": {"partition": 1}}), namespace)

        async def status(**want: Any) -> Any:
            s = (await client.get(STS, "web", namespace)).get("status") or {}
            return s if all(s.get(k) == v for k, v in want.items()) else None
        first = await wait_for(lambda: status(readyReplicas=3, updatedReplicas=3), message="3 ready")
        assert first["currentRevision"] == first["updateRevision"]

        await client.patch(STS, "web", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}}}}, namespace)

        async def images() -> dict[str, str]:
            pods = await list_pods(client, namespace)
            return {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in pods}

        async def partitioned() -> Any:
            s = await status(readyReplicas=3, updatedReplicas=2)
            return s if s and await images() == {"web-0": "busybox:1", "web-1": "busybox:2",
                                                 "web-2": "busybox:2"} else None
        s = await wait_for(partitioned, timeout=20, message="ordinals >= partition updated")
        assert s["currentRevision"] != s["updateRevision"]

        await client.patch(STS, "web", {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}, namespace)

        async def complete() -> Any:
            s = await status(readyReplicas=3, updatedReplicas=3)
            return s if s and set((await images()).values()) == {"busybox:2"} else None
        s = await wait_for(complete, timeout=20, message="partition 0 completes the rollout")
        assert s["currentRevision"] == s["updateRevision"]


async def test_claim_retention_policy_delete(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("statefulset,garbagecollector")
    claim = {"metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    await client.create(STS, sts_body("tmp", 2, podManagementPolicy="Parallel", volumeClaimTemplates=[claim],
                                      persistentVolumeClaimRetentionPolicy={"whenScaled": "Delete",
                                                                            "whenDeleted": "Delete"}), namespace)

    async def claims(expected: list[str]) -> Any:
        items = (await client.list(PVCS, namespace))["items"]
        return sorted(p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")) == expected
    await wait_for(lambda: claims(["data-tmp-0", "data-tmp-1"]), message="two claims")
    await client.patch(STS, "tmp", {"spec": {"replicas": 1}}, namespace)
    await wait_for(lambda: claims(["data-tmp-0"]), message="whenScaled=Delete removes the scaled-away claim")
    await client.delete(STS, "tmp", namespace)
    await wait_for(lambda: claims([]), message="whenDeleted=Delete removes the rest with the set")
