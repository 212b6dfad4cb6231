"""LIST: label and field selectors, pagination with continue tokens, all-namespaces lists."""
from __future__ import annotations

import asyncio

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.samples import sample

CM = lookup("configmaps")
PODS = lookup("pods")


def names(result: dict) -> list[str]:
    return [i["metadata"]["name"] for i in result["items"]]


async def test_label_selectors(client: Client, namespace: str) -> None:
    for name, labels in [("a", {"app": "web", "tier": "front"}), ("b", {"app": "web", "tier": "back"}),
                         ("c", {"app": "db"}), ("d", {})]:
        await client.create(CM, sample(CM, name, namespace, labels))
    cases = {"app=web": ["a", "b"], "app==web": ["a", "b"], "app!=web": ["c", "d"],
             "tier in (front,back)": ["a", "b"], "app notin (web)": ["c", "d"], "tier": ["a", "b"],
             "!tier": ["c", "d"], "app=web,tier!=back": ["a"]}
    for selector, expected in cases.items():
        assert names(await client.list(CM, namespace, label_selector=selector)) == expected, selector


async def test_bad_selector_is_400(client: Client, namespace: str) -> None:
    with pytest.raises(ApiError) as e:
        await client.list(CM, namespace, label_selector="app in (web")
    assert e.value.code == 400
    with pytest.raises(ApiError) as e:
        await client.list(CM, namespace, field_selector="spec.nodeName=x")  # not a ConfigMap field
    assert e.value.code == 400 and "field label not supported" in e.value.message


async def test_field_selectors_on_pods(client: Client, namespace: str) -> None:
    pods = [sample(PODS, f"p{i}", namespace) for i in range(3)]
    for p in pods:
        await client.create(PODS, p)
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"},
               "target": {"kind": "Node", "name": "node-a"}}
    await client.create(PODS, binding, namespace=namespace, subresource="binding", name="p1")
    assert names(await client.list(PODS, namespace, field_selector="spec.nodeName=node-a")) == ["p1"]
    assert names(await client.list(PODS, namespace, field_selector="spec.nodeName=")) == ["p0", "p2"]
    assert names(await client.list(PODS, namespace, field_selector="metadata.name=p2")) == ["p2"]
    assert names(await client.list(PODS, namespace, field_selector="status.phase=Pending,metadata.name!=p0")) == [
        "p1", "p2"]
    # All namespaces, narrowed by metadata.namespace.
    everywhere = await client.list(PODS, field_selector=f"metadata.namespace={namespace}")
    assert names(everywhere) == ["p0", "p1", "p2"]


async def test_event_and_secret_fields(client: Client, namespace: str) -> None:
    ev, secrets = lookup("events"), lookup("secrets")
    body = sample(ev, "e1", namespace)
    body["involvedObject"] = {"kind": "Pod", "name": "target", "namespace": namespace}
    await client.create(ev, body)
    await client.create(ev, sample(ev, "e2", namespace))
    assert names(await client.list(ev, namespace, field_selector="involvedObject.name=target")) == ["e1"]
    tls = sample(secrets, "tls", namespace)
    tls["type"] = "kubernetes.io/tls"
    tls["data"] = {"tls.crt": "Y3J0", "tls.key": "a2V5"}
    await client.create(secrets, tls)
    await client.create(secrets, sample(secrets, "plain", namespace))
    assert names(await client.list(secrets, namespace, field_selector="type=kubernetes.io/tls")) == ["tls"]


async def test_pagination_is_consistent_at_the_first_page_revision(client: Client, namespace: str) -> None:
    await asyncio.gather(*(client.create(CM, sample(CM, f"cm-{i:02d}", namespace)) for i in range(25)))
    first = await client.list(CM, namespace, limit=10)
    assert names(first) == [f"cm-{i:02d}" for i in range(10)]
    token = first["metadata"]["continue"]
    # Changes after the first page do not show up in later pages of the same list.
    await client.create(CM, sample(CM, "cm-99", namespace))
    await client.delete(CM, "cm-15", namespace)
    second = await client.list(CM, namespace, limit=10, continue_=token)
    third = await client.list(CM, namespace, limit=10, continue_=second["metadata"]["continue"])
    assert names(second) == [f"cm-{i:02d}" for i in range(10, 20)]
    assert names(third) == [f"cm-{i:02d}" for i in range(20, 25)]
    assert not third["metadata"].get("continue")
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    # list_all walks the pages of a fresh list: it sees the new state.
    everything = await client.list_all(CM, namespace, page=7)
    assert len(everything["items"]) == 25 and "cm-99" in names(everything) and "cm-15" not in names(everything)


async def test_pagination_with_selector_fills_pages(client: Client, namespace: str) -> None:
    for i in range(12):
        await client.create(CM, sample(CM, f"s-{i:02d}", namespace, {"even": str(i % 2 == 0).lower()}))
    page = await client.list(CM, namespace, limit=4, label_selector="even=true")
    assert names(page) == ["s-00", "s-02", "s-04", "s-06"]
    rest = await client.list(CM, namespace, limit=4, label_selector="even=true", continue_=page["metadata"]["continue"])
    assert names(rest) == ["s-08", "s-10"] and not rest["metadata"].get("continue")


async def test_bad_continue_token_is_400(client: Client, namespace: str) -> None:
    with pytest.raises(ApiError) as e:
        await client.list(CM, namespace, limit=5, continue_="not-a-token")
    assert e.value.code == 400


async def test_list_at_resource_version_zero_and_after_write(client: Client, namespace: str) -> None:
    created = await client.create(CM, sample(CM, "rv", namespace))
    at = await client.list(CM, namespace, resource_version=created["metadata"]["resourceVersion"])
    assert names(at) == ["rv"] and int(at["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])
    assert names(await client.list(CM, namespace, resource_version="0")) == ["rv"]


async def test_list_at_an_exact_past_revision(client: Client, namespace: str) -> None:
    first = await client.create(CM, sample(CM, "one", namespace))
    await client.create(CM, sample(CM, "two", namespace))
    rv = first["metadata"]["resourceVersion"]
    past = await client.request("GET", CM.path(namespace), params={"resourceVersion": rv,
                                                                   "resourceVersionMatch": "Exact"})
    assert names(past) == ["one"] and past["metadata"]["resourceVersion"] == rv
    with pytest.raises(ApiError) as e:
        await client.request("GET", CM.path(namespace), params={"resourceVersionMatch": "Exact"})
    assert e.value.code == 400
