"""Disruption controller against the real apiserver: PodDisruptionBudget status from pods and their owners'
scale, evictions recorded and forgotten, and the fail-safe status of a budget over unmanaged pods."""
from __future__ import annotations

from typing import Any

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import DEPLOYMENTS, PODDISRUPTIONBUDGETS as PDBS, PODS, REPLICASETS
from tests.controllers.helpers import FakeKubelet, list_pods, set_pod_ready
from tests.support.samples import POD_SPEC
from tests.support.workloads import deploy_body, rs_body
from tests.util import wait_for


def pdb_body(name: str, app: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, **spec}}


async def status_of(client: Client, namespace: str, name: str, **want: Any) -> Any:
    pdb = await client.get(PDBS, name, namespace)
    status = pdb.get("status") or {}
    if status.get("observedGeneration") != pdb["metadata"]["generation"]:
        return None
    return status if all(status.get(k) == v for k, v in want.items()) else None


def allowed_condition(status: dict[str, Any]) -> tuple[str, str]:
    c = next(c for c in status["conditions"] if c["type"] == "DisruptionAllowed")
    return c["status"], c["reason"]


async def test_budget_over_a_deployment_follows_its_scale_and_evictions(client: Client, namespace: str,
                                                                        start_manager: Any) -> None:
    await start_manager("replicaset,deployment,disruption")
    async with FakeKubelet(client, namespace):
        await client.create(DEPLOYMENTS, deploy_body("web", 3), namespace)
        await client.create(PDBS, pdb_body("web", "web", maxUnavailable=1), namespace)
        status = await wait_for(lambda: status_of(client, namespace, "web", expectedPods=3, desiredHealthy=2,
                                                  currentHealthy=3, disruptionsAllowed=1),
                                message="budget: 3 expected (the Deployment's scale), 1 disruption allowed")
        assert allowed_condition(status) == ("True", "SufficientPods")

        victim = (await list_pods(client, namespace, "app=web"))[0]["metadata"]["name"]
        await client.request("POST", PODS.path(namespace, victim, "eviction"),
                             body={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim}})
        # The ReplicaSet replaces the evicted pod; once the new one is ready the budget allows one again,
        # and the eviction record is dropped once the deletion showed up.
        status = await wait_for(lambda: status_of(client, namespace, "web", currentHealthy=3, disruptionsAllowed=1),
                                timeout=30, message="budget recovered after the eviction")
        assert "disruptedPods" not in status
        names = [p["metadata"]["name"] for p in await list_pods(client, namespace, "app=web")]
        assert victim not in names

        # A scale change changes what the budget expects.
        await client.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 5}}, namespace)
        await wait_for(lambda: status_of(client, namespace, "web", expectedPods=5, desiredHealthy=4,
                                         currentHealthy=5, disruptionsAllowed=1),
                       timeout=30, message="budget follows the new scale")


async def test_min_available_number_and_percent(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("replicaset,disruption")
    async with FakeKubelet(client, namespace):
        await client.create(REPLICASETS, rs_body("db", 4), namespace)
        await client.create(PDBS, pdb_body("count", "db", minAvailable=3), namespace)
        await client.create(PDBS, pdb_body("pct", "db", minAvailable="50%"), namespace)
        await wait_for(lambda: status_of(client, namespace, "count", expectedPods=4, desiredHealthy=3,
                                         currentHealthy=4, disruptionsAllowed=1), message="minAvailable 3 of 4")
        await wait_for(lambda: status_of(client, namespace, "pct", expectedPods=4, desiredHealthy=2,
                                         currentHealthy=4, disruptionsAllowed=2), message="minAvailable 50% of 4")


async def test_unmanaged_pods_fail_safe(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("disruption")
    pod = await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                     "metadata": {"name": "lone", "labels": {"app": "lone"}}, "spec": POD_SPEC},
                              namespace)
    await set_pod_ready(client, pod)
    await client.create(PDBS, pdb_body("pct", "lone", maxUnavailable="50%"), namespace)
    await client.create(PDBS, pdb_body("abs", "lone", minAvailable=0), namespace)
    status = await wait_for(lambda: status_of(client, namespace, "pct", disruptionsAllowed=0),
                            message="fail-safe status")
    assert allowed_condition(status) == ("False", "SyncFailed")
    assert next(c for c in status["conditions"] if c["type"] == "DisruptionAllowed")["message"] == \
        'found no controller ref for pod "lone"'
    # An absolute minAvailable needs no owner: the pods themselves are what is expected.
    await wait_for(lambda: status_of(client, namespace, "abs", expectedPods=1, currentHealthy=1, desiredHealthy=0,
                                     disruptionsAllowed=1), message="absolute budget over a bare pod")
    try:
        await client.delete(PODS, "lone", namespace, grace_period_seconds=0)
    except ApiError:
        pass
