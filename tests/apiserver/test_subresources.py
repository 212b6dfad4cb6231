"""Subresources: status (spec and status written separately), scale, pods/binding."""
from __future__ import annotations

import copy

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.samples import sample

PODS = lookup("pods")
DEPLOY = lookup("deployments")


async def test_status_and_spec_are_written_separately(client: Client, namespace: str) -> None:
    created = await client.create(DEPLOY, sample(DEPLOY, "d", namespace))
    assert created["status"] == {}
    # The main resource ignores status...
    body = copy.deepcopy(created)
    body["status"] = {"replicas": 7}
    body["spec"]["replicas"] = 3
    updated = await client.update(DEPLOY, body)
    assert updated["spec"]["replicas"] == 3 and updated["status"] == {}
    # ...and /status ignores everything but status (labels too).
    body = copy.deepcopy(updated)
    body["status"] = {"replicas": 3, "readyReplicas": 1}
    body["spec"]["replicas"] = 99
    body["metadata"]["labels"] = {"sneaky": "yes"}
    status = await client.update_status(DEPLOY, body)
    assert status["status"] == {"replicas": 3, "readyReplicas": 1}
    assert status["spec"]["replicas"] == 3 and "sneaky" not in (status["metadata"].get("labels") or {})
    assert status["metadata"]["generation"] == updated["metadata"]["generation"]
    got = await client.get(DEPLOY, "d", namespace, subresource="status")
    assert got["status"]["readyReplicas"] == 1
    patched = await client.patch(DEPLOY, "d", {"status": {"readyReplicas": 3}}, namespace, subresource="status")
    assert patched["status"] == {"replicas": 3, "readyReplicas": 3}


async def test_status_patch_ignores_spec_and_answers_the_whole_object(client: Client, namespace: str) -> None:
    created = await client.create(DEPLOY, sample(DEPLOY, "dp", namespace))
    for patch_type in ("merge", "strategic"):
        patched = await client.patch(DEPLOY, "dp", {"spec": {"replicas": 42}, "status": {"readyReplicas": 2}},
                                     namespace, subresource="status", patch_type=patch_type)
        assert patched["spec"] == created["spec"] and patched["status"]["readyReplicas"] == 2
    stored = await client.get(DEPLOY, "dp", namespace)
    assert stored["spec"] == created["spec"] and stored["status"]["readyReplicas"] == 2


async def test_status_update_with_stale_resource_version_conflicts(client: Client, namespace: str) -> None:
    created = await client.create(PODS, sample(PODS, "p", namespace))
    body = copy.deepcopy(created)
    body["status"] = {"phase": "Running"}
    await client.update_status(PODS, body)
    body["status"] = {"phase": "Failed"}
    with pytest.raises(ApiError) as e:
        await client.update_status(PODS, body)
    assert e.value.code == 409
    assert (await client.get(PODS, "p", namespace))["status"]["phase"] == "Running"


@pytest.mark.parametrize("plural", ["deployments", "replicasets", "statefulsets"])
async def test_scale(client: Client, namespace: str, plural: str) -> None:
    res = lookup(plural)
    await client.create(res, sample(res, "s", namespace))
    scale = await client.get(res, "s", namespace, subresource="scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == (1 if plural == "statefulsets" else 2)
    assert scale["status"] == {"replicas": 0, "selector": "app=web"}
    scale["spec"]["replicas"] = 5
    updated = await client.update(res, scale, subresource="scale")
    assert updated["spec"]["replicas"] == 5
    assert (await client.get(res, "s", namespace))["spec"]["replicas"] == 5
    patched = await client.patch(res, "s", {"spec": {"replicas": 1}}, namespace, subresource="scale")
    assert patched["spec"]["replicas"] == 1
    stale = copy.deepcopy(scale)
    stale["spec"]["replicas"] = 9
    with pytest.raises(ApiError) as e:
        await client.update(res, stale, subresource="scale")
    assert e.value.code == 409
    with pytest.raises(ApiError) as e:
        await client.patch(res, "s", {"spec": {"replicas": -1}}, namespace, subresource="scale")
    assert e.value.code == 422 and e.value.causes[0]["field"] == "spec.replicas"
    assert (await client.get(res, "s", namespace))["spec"]["replicas"] == 1


async def test_scale_is_not_served_for_kinds_without_it(client: Client, namespace: str) -> None:
    with pytest.raises(ApiError) as e:
        await client.get(lookup("daemonsets"), "x", namespace, subresource="scale")
    assert e.value.code == 404


async def test_binding_sets_node_once(client: Client, namespace: str) -> None:
    await client.create(PODS, sample(PODS, "bind", namespace))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bind"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}}
    result = await client.create(PODS, binding, namespace=namespace, subresource="binding", name="bind")
    assert result["status"] == "Success"
    pod = await client.get(PODS, "bind", namespace)
    assert pod["spec"]["nodeName"] == "node-a"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in pod["status"]["conditions"])
    binding["target"]["name"] = "node-b"
    with pytest.raises(ApiError) as e:
        await client.create(PODS, binding, namespace=namespace, subresource="binding", name="bind")
    assert e.value.code == 409 and 'already assigned to node "node-a"' in e.value.message
    assert (await client.get(PODS, "bind", namespace))["spec"]["nodeName"] == "node-a"
