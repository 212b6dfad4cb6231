"""Deletion: finalizers, graceful pod deletion, propagation policy, preconditions, namespace rules."""
from __future__ import annotations

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.api.timefmt import parse_time
from pklib.resources import lookup
from tests.support.samples import sample
from tests.util import unique

CM = lookup("configmaps")
PODS = lookup("pods")
NS = lookup("namespaces")
RS = lookup("replicasets")


async def _gone(client: Client, res, name: str, ns: str | None) -> bool:
    try:
        await client.get(res, name, ns)
    except ApiError as e:
        return e.code == 404
    return False


async def test_finalizers_keep_object_until_removed(client: Client, namespace: str) -> None:
    body = sample(CM, "fin", namespace)
    body["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]
    await client.create(CM, body)
    marked = await client.delete(CM, "fin", namespace)
    assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 0
    kept = await client.get(CM, "fin", namespace)
    assert kept["metadata"]["finalizers"] == ["example.com/a", "example.com/b"]
    # A second DELETE changes nothing.
    again = await client.delete(CM, "fin", namespace)
    assert again["metadata"]["resourceVersion"] == kept["metadata"]["resourceVersion"]
    await client.patch(CM, "fin", [{"op": "remove", "path": "/metadata/finalizers/0"}], namespace, patch_type="json")
    assert (await client.get(CM, "fin", namespace))["metadata"]["finalizers"] == ["example.com/b"]
    await client.patch(CM, "fin", {"metadata": {"finalizers": None}}, namespace)
    assert await _gone(client, CM, "fin", namespace)


async def test_unscheduled_pod_is_deleted_at_once(client: Client, namespace: str) -> None:
    await client.create(PODS, sample(PODS, "p", namespace))
    await client.delete(PODS, "p", namespace)
    assert await _gone(client, PODS, "p", namespace)


async def _scheduled_pod(client: Client, namespace: str, name: str, grace: int | None = None) -> None:
    body = sample(PODS, name, namespace)
    if grace is not None:
        body["spec"]["terminationGracePeriodSeconds"] = grace
    await client.create(PODS, body)
    await client.create(PODS, {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                               "target": {"kind": "Node", "name": "node-1"}}, namespace=namespace,
                        subresource="binding", name=name)


async def test_scheduled_pod_is_deleted_gracefully(client: Client, namespace: str) -> None:
    await _scheduled_pod(client, namespace, "g", grace=45)
    marked = await client.delete(PODS, "g", namespace)
    meta = marked["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 45
    lead = (parse_time(meta["deletionTimestamp"]) - parse_time(meta["creationTimestamp"])).total_seconds()
    assert 40 <= lead <= 60  # deletionTimestamp is when the grace period ends
    assert (await client.get(PODS, "g", namespace))["metadata"]["deletionTimestamp"]
    # A shorter grace period from the options wins; then the kubelet's gracePeriodSeconds=0 removes it.
    shorter = await client.delete(PODS, "g", namespace, grace_period_seconds=10)
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 10
    await client.delete(PODS, "g", namespace, grace_period_seconds=0)
    assert await _gone(client, PODS, "g", namespace)


async def test_default_grace_period_is_30s(client: Client, namespace: str) -> None:
    await _scheduled_pod(client, namespace, "d")
    await client.delete(PODS, "d", namespace)
    assert (await client.get(PODS, "d", namespace))["metadata"]["deletionGracePeriodSeconds"] == 30


async def test_deleting_pod_cannot_be_bound(client: Client, namespace: str) -> None:
    body = sample(PODS, "b", namespace)
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await client.create(PODS, body)
    await client.delete(PODS, "b", namespace)
    with pytest.raises(ApiError) as e:
        await client.create(PODS, {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"},
                                   "target": {"kind": "Node", "name": "node-1"}}, namespace=namespace,
                            subresource="binding", name="b")
    assert e.value.code == 409 and "being deleted" in e.value.message
    await client.patch(PODS, "b", {"metadata": {"finalizers": None}}, namespace)
    assert await _gone(client, PODS, "b", namespace)


@pytest.mark.parametrize("policy,finalizer", [("Orphan", "orphan"), ("Foreground", "foregroundDeletion")])
async def test_propagation_policy_is_recorded_as_finalizer(client: Client, namespace: str, policy: str,
                                                           finalizer: str) -> None:
    await client.create(RS, sample(RS, "rs", namespace))
    marked = await client.delete(RS, "rs", namespace, propagation_policy=policy)
    assert marked["metadata"]["finalizers"] == [finalizer] and marked["metadata"]["deletionTimestamp"]
    # The garbage collector removes the finalizer when it is done; that finishes the deletion.
    await client.patch(RS, "rs", {"metadata": {"finalizers": []}}, namespace)
    assert await _gone(client, RS, "rs", namespace)


async def test_background_deletion_is_immediate_and_bad_policy_is_422(client: Client, namespace: str) -> None:
    await client.create(RS, sample(RS, "bg", namespace))
    with pytest.raises(ApiError) as e:
        await client.delete(RS, "bg", namespace, propagation_policy="Sideways")
    assert e.value.code == 422
    await client.delete(RS, "bg", namespace, propagation_policy="Background")
    assert await _gone(client, RS, "bg", namespace)


async def test_delete_preconditions(client: Client, namespace: str) -> None:
    created = await client.create(CM, sample(CM, "pre", namespace))
    with pytest.raises(ApiError) as e:
        await client.delete(CM, "pre", namespace, preconditions={"uid": "not-the-uid"})
    assert e.value.code == 409 and "Precondition failed" in e.value.message
    with pytest.raises(ApiError) as e:
        await client.delete(CM, "pre", namespace, preconditions={"resourceVersion": "1"})
    assert e.value.code == 409
    await client.delete(CM, "pre", namespace, preconditions={"uid": created["metadata"]["uid"]})
    assert await _gone(client, CM, "pre", namespace)


async def test_delete_collection_by_label(client: Client, namespace: str) -> None:
    for i in range(4):
        await client.create(CM, sample(CM, f"dc{i}", namespace, {"batch": "x" if i < 3 else "y"}))
    await client.request("DELETE", CM.path(namespace), params={"labelSelector": "batch=x"})
    left = await client.list(CM, namespace)
    assert [i["metadata"]["name"] for i in left["items"]] == ["dc3"]


async def test_namespace_lifecycle(client: Client) -> None:
    name = unique("ns")
    created = await client.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert created["status"]["phase"] == "Active" and created["spec"]["finalizers"] == ["kubernetes"]
    await client.create(CM, sample(CM, "inside", name))
    marked = await client.delete(NS, name)
    assert marked["status"]["phase"] == "Terminating" and marked["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiError) as e:
        await client.create(CM, sample(CM, "late", name))
    assert e.value.code == 403 and e.value.reason == "Forbidden"
    assert e.value.message == f"unable to create new content in namespace {name} because it is being terminated"
    # What the namespace controller does once the namespace is empty: clear spec.finalizers via /finalize.
    current = await client.get(NS, name)
    current["spec"]["finalizers"] = []
    await client.request("PUT", NS.path(None, name, "finalize"), body=current)
    assert await _gone(client, NS, name, None)


async def test_create_in_missing_namespace_is_404(client: Client) -> None:
    missing = unique("nope")
    with pytest.raises(ApiError) as e:
        await client.create(CM, sample(CM, "x", missing))
    assert e.value.code == 404 and e.value.message == f'namespaces "{missing}" not found'


async def test_system_namespaces_exist(client: Client) -> None:
    listed = {i["metadata"]["name"] for i in (await client.list(NS))["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= listed


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public"])
async def test_the_clusters_own_namespaces_may_not_be_deleted(client: Client, name: str) -> None:
    with pytest.raises(ApiError) as e:
        await client.delete(NS, name)
    assert (e.value.code, e.value.message) == (403, f'namespaces "{name}" is forbidden: this namespace may not be '
                                                    "deleted")
    assert "deletionTimestamp" not in (await client.get(NS, name))["metadata"]


async def test_no_new_finalizers_on_a_deleting_object(client: Client, namespace: str) -> None:
    body = sample(CM, "late-fin", namespace)
    body["metadata"]["finalizers"] = ["example.com/a"]
    await client.create(CM, body)
    await client.delete(CM, "late-fin", namespace)
    with pytest.raises(ApiError) as e:
        await client.patch(CM, "late-fin", {"metadata": {"finalizers": ["example.com/a", "example.com/b"]}},
                           namespace)
    assert e.value.code == 422 and e.value.causes[0]["field"] == "metadata.finalizers"
    assert (await client.get(CM, "late-fin", namespace))["metadata"]["finalizers"] == ["example.com/a"]
    await client.patch(CM, "late-fin", {"metadata": {"finalizers": None}}, namespace)
    assert await _gone(client, CM, "late-fin", namespace)
