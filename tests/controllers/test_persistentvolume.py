"""PV binder and local-path provisioning against the real apiserver."""
from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from pklib.resources import must_lookup
from pklib.client import Client
from pklib.errors import ApiError
from tests.util import unique, wait_for

PVS = must_lookup("persistentvolumes")
PVCS = must_lookup("persistentvolumeclaims")
NODES = must_lookup("nodes")


@pytest.fixture
async def cluster_objects(client: Client) -> AsyncIterator[list[tuple[Any, str]]]:
    """(resource, name) of cluster-scoped objects to delete after the test."""
    created: list[tuple[Any, str]] = []
    yield created
    for res, name in created:
        try:
            await client.delete(res, name)
        except ApiError:
            pass


def pv(name: str, size: str, cls: str, policy: str = "Retain") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "persistentVolumeReclaimPolicy": policy, "hostPath": {"path": f"/tmp/{name}"}}}


def pvc(name: str, size: str, cls: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


async def phase(client: Client, res: Any, name: str, ns: str | None = None) -> str | None:
    try:
        return ((await client.get(res, name, ns)).get("status") or {}).get("phase")
    except ApiError as e:
        if e.code == 404:
            return "<deleted>"
        raise


async def test_static_volumes_bind_smallest_fit_and_reclaim(client: Client, namespace: str, start_manager: Any,
                                                            cluster_objects: list[tuple[Any, str]]) -> None:
    cls = unique("manual")
    big, small, kept = unique("pv-big"), unique("pv-small"), unique("pv-kept")
    for name, size, policy in ((big, "5Gi", "Delete"), (small, "1Gi", "Delete"), (kept, "2Gi", "Retain")):
        await client.create(PVS, pv(name, size, cls, policy))
        cluster_objects.append((PVS, name))
    await start_manager("persistentvolume")
    await client.create(PVCS, pvc("data", "1Gi", cls), namespace)

    async def bound() -> Any:
        claim = await client.get(PVCS, "data", namespace)
        return claim if (claim.get("status") or {}).get("phase") == "Bound" else None
    claim = await wait_for(bound, message="claim bound")
    assert claim["spec"]["volumeName"] == small, "the smallest volume that fits"
    assert claim["status"]["capacity"] == {"storage": "1Gi"}
    vol = await client.get(PVS, small)
    assert vol["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    await wait_for(lambda: _is(phase(client, PVS, small), "Bound"), message="volume Bound")
    assert await phase(client, PVS, big) == "Available"

    await client.create(PVCS, pvc("keep", "2Gi", cls), namespace)
    await wait_for(lambda: _is(phase(client, PVS, kept), "Bound"), message="second claim bound")
    await client.delete(PVCS, "data", namespace)
    await client.delete(PVCS, "keep", namespace)
    await wait_for(lambda: _is(phase(client, PVS, small), "<deleted>"), message="Delete policy removes the volume")
    await wait_for(lambda: _is(phase(client, PVS, kept), "Released"), message="Retain policy keeps it Released")


async def test_local_path_provisions_on_the_selected_node(client: Client, namespace: str, start_manager: Any,
                                                          cluster_objects: list[tuple[Any, str]]) -> None:
    node = unique("node")
    await client.create(NODES, {"apiVersion": "v1", "kind": "Node",
                                "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}})
    cluster_objects.append((NODES, node))
    await start_manager("persistentvolume")
    await client.create(PVCS, pvc("cache", "3Gi", None), namespace)
    claim = await client.get(PVCS, "cache", namespace)
    assert claim["spec"]["storageClassName"] == "local-path"

    await wait_for(lambda: _is(phase(client, PVCS, "cache", namespace), "Pending"), message="waits for a consumer")
    assert (await client.get(PVCS, "cache", namespace))["spec"].get("volumeName") is None
    # What the scheduler does when it places the first pod using the claim:
    await client.patch(PVCS, "cache", {"metadata": {"annotations": {"volume.kubernetes.io/selected-node": node}}},
                       namespace)
    await wait_for(lambda: _is(phase(client, PVCS, "cache", namespace), "Bound"), message="provisioned and bound")
    claim = await client.get(PVCS, "cache", namespace)
    cluster_objects.append((PVS, claim["spec"]["volumeName"]))
    vol = await client.get(PVS, claim["spec"]["volumeName"])
    terms = vol["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [node]
    assert vol["spec"]["hostPath"]["type"] == "DirectoryOrCreate"
    assert vol["spec"]["capacity"]["storage"] == "3Gi" and vol["spec"]["storageClassName"] == "local-path"


async def _is(coro: Any, value: str) -> bool:
    return await coro == value
