"""PodDisruptionBudget (policy/v1) and the pods/eviction subresource, against the real apiserver.

The budgets' statuses are written here as the disruption controller would, so that each eviction rule is
exercised on its own (tests/controllers/test_disruption.py runs the controller)."""
from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import PODDISRUPTIONBUDGETS as PDBS
from pklib.resources import PODS
from tests.controllers.helpers import set_pod_ready
from tests.support.samples import POD_SPEC
from tests.util import wait_for

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def pdb_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


async def ready_pods(client: Client, namespace: str, count: int, prefix: str = "web") -> list[dict[str, Any]]:
    pods = []
    for i in range(count):
        pod = await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                         "metadata": {"name": f"{prefix}-{i}", "labels": {"app": "web"}},
                                         "spec": POD_SPEC}, namespace)
        pods.append(await set_pod_ready(client, pod))
    return pods


async def budget(client: Client, namespace: str, name: str, allowed: int, healthy: int, desired: int,
                 **spec: Any) -> dict[str, Any]:
    """A budget with the status the controller would have written."""
    pdb = await client.create(PDBS, pdb_body(name, **spec), namespace)
    pdb["status"] = {"observedGeneration": pdb["metadata"]["generation"], "disruptionsAllowed": allowed,
                     "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": healthy}
    return await client.update_status(PDBS, pdb)


async def evict(client: Client, namespace: str, name: str, **extra: Any) -> Any:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace},
            **extra}
    return await client.request("POST", PODS.path(namespace, name, "eviction"), body=body)


async def gone(client: Client, namespace: str, name: str) -> bool:
    try:
        await client.get(PODS, name, namespace)
    except ApiError as e:
        return e.code == 404
    return False


async def test_budget_create_status_validation_and_table(client: Client, namespace: str) -> None:
    created = await client.create(PDBS, pdb_body("b", maxUnavailable="25%"), namespace)
    # The fields Kubernetes always serializes are there before the controller has written anything.
    assert created["status"] == {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                                 "expectedPods": 0}
    assert created["metadata"]["generation"] == 1

    cases = [({"minAvailable": 1, "maxUnavailable": 1}, "spec", "minAvailable and maxUnavailable cannot be both set"),
             ({"minAvailable": "120%"}, "spec.minAvailable", "must not be greater than 100%"),
             ({"maxUnavailable": -1}, "spec.maxUnavailable", "must be greater than or equal to 0"),
             ({"minAvailable": 1, "unhealthyPodEvictionPolicy": "Sometimes"}, "spec.unhealthyPodEvictionPolicy",
              'supported values: "IfHealthyBudget", "AlwaysAllow"')]
    for spec, field, words in cases:
        with pytest.raises(ApiError) as err:
            await client.create(PDBS, pdb_body("bad", **spec), namespace)
        assert err.value.code == 422, spec
        assert [c["field"] for c in err.value.causes] == [field] and words in err.value.message, err.value.message

    table = await client.request("GET", PDBS.path(namespace), headers={"Accept": TABLE})
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Min Available", "Max Unavailable",
                                                               "Allowed Disruptions", "Age"]
    assert table["rows"][0]["cells"][:4] == ["b", "N/A", "25%", "0"]


async def test_eviction_takes_from_the_budget_then_is_refused(client: Client, namespace: str) -> None:
    await ready_pods(client, namespace, 2)
    await budget(client, namespace, "b", allowed=1, healthy=2, desired=1, minAvailable=1)

    answer = await evict(client, namespace, "web-0")
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    await wait_for(lambda: gone(client, namespace, "web-0"), message="evicted pod deleted")
    status = (await client.get(PDBS, "b", namespace))["status"]
    assert status["disruptionsAllowed"] == 0 and list(status["disruptedPods"]) == ["web-0"]
    condition = next(c for c in status["conditions"] if c["type"] == "DisruptionAllowed")
    assert (condition["status"], condition["reason"]) == ("False", "InsufficientPods")

    with pytest.raises(ApiError) as err:
        await evict(client, namespace, "web-1")
    assert (err.value.code, err.value.reason) == (429, "TooManyRequests")
    assert err.value.message == "Cannot evict pod as it would violate the pod's disruption budget."
    assert err.value.causes == [{"reason": "DisruptionBudget",
                                 "message": "The disruption budget b needs 1 healthy pods and has 2 currently"}]
    assert "retryAfterSeconds" not in err.value.status["details"]
    assert not await gone(client, namespace, "web-1")


async def test_eviction_requests_that_are_wrong_or_need_no_budget(client: Client, namespace: str) -> None:
    await ready_pods(client, namespace, 1)
    with pytest.raises(ApiError) as err:
        await evict(client, namespace, "missing")
    assert err.value.code == 404 and err.value.message == 'pods "missing" not found'
    with pytest.raises(ApiError) as err:
        await client.request("POST", PODS.path(namespace, "web-0", "eviction"),
                             body={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}})
    assert err.value.code == 400 and err.value.message == "name in URL does not match name in Eviction object"
    with pytest.raises(ApiError) as err:  # deleteOptions are honoured, preconditions included
        await evict(client, namespace, "web-0", deleteOptions={"preconditions": {"uid": "not-its-uid"}})
    assert err.value.code == 409 and "Precondition failed: UID in precondition: not-its-uid" in err.value.message

    # A budget the controller has not caught up with yet refuses, asking to come back.
    pdb = await client.create(PDBS, pdb_body("b", maxUnavailable=1), namespace)
    with pytest.raises(ApiError) as err:
        await evict(client, namespace, "web-0")
    assert err.value.code == 429
    assert err.value.causes[0]["message"] == "The disruption budget b is still being processed by the server."
    assert err.value.status["details"]["retryAfterSeconds"] == 10  # (and a Retry-After header)
    # Two budgets covering one pod: Kubernetes' eviction does not support that.
    await client.create(PDBS, pdb_body("b2", minAvailable=0), namespace)
    with pytest.raises(ApiError) as err:
        await evict(client, namespace, "web-0")
    assert err.value.code == 500 and "more than one PodDisruptionBudget" in err.value.message
    await client.delete(PDBS, "b2", namespace)
    await client.delete(PDBS, pdb["metadata"]["name"], namespace)

    # A pending pod is not guarded; the policy/v1beta1 body is accepted too; dryRun deletes nothing.
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": "pending", "labels": {"app": "web"}}, "spec": POD_SPEC}, namespace)
    await budget(client, namespace, "b3", allowed=0, healthy=1, desired=1, minAvailable=1)
    await client.request("POST", PODS.path(namespace, "pending", "eviction"),
                         body={"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "pending"},
                               "deleteOptions": {"gracePeriodSeconds": 0}})
    await wait_for(lambda: gone(client, namespace, "pending"), message="pending pod evicted")
    with pytest.raises(ApiError) as err:
        await evict(client, namespace, "web-0", deleteOptions={"dryRun": ["All"]})
    assert err.value.code == 429


async def test_unready_pod_is_evicted_without_taking_from_the_budget(client: Client, namespace: str) -> None:
    pods = await ready_pods(client, namespace, 3)
    await set_pod_ready(client, copy.deepcopy(pods[2]), ready=False)
    await budget(client, namespace, "b", allowed=0, healthy=2, desired=2, minAvailable=2)
    await evict(client, namespace, "web-2")
    await wait_for(lambda: gone(client, namespace, "web-2"), message="unready pod evicted")
    assert (await client.get(PDBS, "b", namespace))["status"]["disruptionsAllowed"] == 0


async def test_concurrent_evictions_cannot_both_take_the_last_disruption(client: Client, namespace: str) -> None:
    await ready_pods(client, namespace, 6)
    await budget(client, namespace, "b", allowed=1, healthy=6, desired=5, maxUnavailable=1)
    results = await asyncio.gather(*(evict(client, namespace, f"web-{i}") for i in range(6)), return_exceptions=True)
    passed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ApiError) and r.code == 429]
    assert len(passed) == 1 and len(refused) == 5, results
    status = (await client.get(PDBS, "b", namespace))["status"]
    assert status["disruptionsAllowed"] == 0 and len(status["disruptedPods"]) == 1
