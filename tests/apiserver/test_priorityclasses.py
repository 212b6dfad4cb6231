"""PriorityClass (scheduling.k8s.io/v1) and the Priority admission of pods, through the real apiserver."""
from __future__ import annotations

from typing import Any

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.util import unique

PCS = lookup("priorityclasses")
PODS = lookup("pods")
assert PCS and PODS


def pc(name: str, value: int, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, **fields}


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}], **spec}}


async def test_builtin_classes_exist_and_resolve_into_pod_priority(client: Client, namespace: str) -> None:
    critical = await client.get(PCS, "system-cluster-critical")
    assert critical["value"] == 2000000000 and critical["preemptionPolicy"] == "PreemptLowerPriority"
    assert (await client.get(PCS, "system-node-critical"))["value"] == 2000001000
    created = await client.create(PODS, pod("crit", priorityClassName="system-node-critical"), namespace)
    assert created["spec"]["priority"] == 2000001000
    assert created["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
    plain = await client.create(PODS, pod("plain"), namespace)
    assert plain["spec"]["priority"] == 0 and "priorityClassName" not in plain["spec"]


async def test_user_class_resolves_and_bad_references_are_forbidden(client: Client, namespace: str) -> None:
    name = unique("pc")
    await client.create(PCS, pc(name, 1000, preemptionPolicy="Never", description="batch"))
    try:
        created = await client.create(PODS, pod("batch", priorityClassName=name), namespace)
        assert created["spec"]["priority"] == 1000 and created["spec"]["preemptionPolicy"] == "Never"

        with pytest.raises(ApiError) as e:
            await client.create(PODS, pod("nope", priorityClassName="does-not-exist"), namespace)
        assert e.value.code == 403
        assert e.value.message == 'pods "nope" is forbidden: no PriorityClass with name does-not-exist was found'

        with pytest.raises(ApiError) as e:
            await client.create(PODS, pod("sneaky", priorityClassName=name, priority=5), namespace)
        assert e.value.code == 403 and "the integer value of priority (5) must not be provided" in e.value.message
    finally:
        await client.delete(PCS, name)


@pytest.mark.parametrize("body,field,reason", [
    (pc("system-mine", 10), "metadata.name", "FieldValueForbidden"),
    (pc("system-cluster-critical-x", 2000000000), "metadata.name", "FieldValueForbidden"),
    (pc("too-high", 1000000001), "value", "FieldValueForbidden"),
    (pc("bad-policy", 1, preemptionPolicy="Sometimes"), "preemptionPolicy", "FieldValueNotSupported"),
])
async def test_invalid_classes_are_rejected(client: Client, body: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ApiError) as e:
        await client.create(PCS, body)
    assert e.value.code == 422
    causes = (e.value.status.get("details") or {}).get("causes") or []
    assert {(c["field"], c["reason"]) for c in causes} == {(field, reason)}


async def test_value_is_immutable_and_one_global_default(client: Client, namespace: str) -> None:
    first, second = unique("pc"), unique("pc")
    await client.create(PCS, pc(first, 7, globalDefault=True))
    try:
        stored = await client.get(PCS, first)
        stored["value"] = 8
        with pytest.raises(ApiError) as e:
            await client.update(PCS, stored)
        assert e.value.code == 422 and "value: Forbidden: may not be changed in an update." in e.value.message
        with pytest.raises(ApiError) as e:
            await client.create(PCS, pc(second, 9, globalDefault=True))
        assert e.value.code == 403
        assert f"PriorityClass {first} is already marked as default. Only one default can exist" in e.value.message
        defaulted = await client.create(PODS, pod("defaulted"), namespace)
        assert defaulted["spec"]["priority"] == 7 and defaulted["spec"]["priorityClassName"] == first
    finally:
        await client.delete(PCS, first)
