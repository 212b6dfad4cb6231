"""The resourcequota controller against the real apiserver: status.used of a quota created over existing objects,
usage given back when objects are deleted or pods finish, and spec changes followed."""
from __future__ import annotations

from typing import Any

from pklib.client import Client
from pklib.resources import CONFIGMAPS, PODS, RESOURCEQUOTAS, SERVICES
from tests.support.samples import sample
from tests.util import wait_for


def pod(name: str, cpu: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
                                     "resources": {"requests": {"cpu": cpu}}}]}}


async def used_becomes(client: Client, namespace: str, name: str, want: dict[str, str]) -> dict[str, Any]:
    async def check() -> Any:
        status = (await client.get(RESOURCEQUOTAS, name, namespace)).get("status") or {}
        return status if status.get("used") == want else None
    got: dict[str, Any] = await wait_for(check, timeout=20, message=f"quota {name} used == {want}")
    return got


async def test_usage_follows_objects(client: Client, namespace: str, start_manager: Any) -> None:
    await client.create(PODS, pod("a", "250m"), namespace)
    await client.create(PODS, pod("b", "500m"), namespace)
    await client.create(CONFIGMAPS, sample(CONFIGMAPS, "cm", namespace), namespace)
    await start_manager("resourcequota")
    await client.create(RESOURCEQUOTAS, {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
                                         "spec": {"hard": {"pods": "10", "requests.cpu": "4", "configmaps": "5",
                                                           "count/services": "3"}}}, namespace)
    status = await used_becomes(client, namespace, "q", {"pods": "2", "requests.cpu": "750m", "configmaps": "1",
                                                         "count/services": "0"})
    assert status["hard"] == {"pods": "10", "requests.cpu": "4", "configmaps": "5", "count/services": "3"}

    # Deletes give usage back; a finished pod holds nothing.
    await client.delete(CONFIGMAPS, "cm", namespace)
    b = await client.get(PODS, "b", namespace)
    b["status"] = {"phase": "Succeeded"}
    await client.update_status(PODS, b)
    await used_becomes(client, namespace, "q", {"pods": "1", "requests.cpu": "250m", "configmaps": "0",
                                                "count/services": "0"})

    # Admission charges creates at once; a resource added to spec.hard is counted.
    await client.create(SERVICES, sample(SERVICES, "svc", namespace), namespace)
    await client.patch(RESOURCEQUOTAS, "q", {"spec": {"hard": {"services": "2"}}}, namespace)
    await used_becomes(client, namespace, "q", {"pods": "1", "requests.cpu": "250m", "configmaps": "0",
                                                "count/services": "1", "services": "1"})
