"""Endpoints follow pod readiness, labels and named ports."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from pklib.resources import must_lookup
from pklib.client import Client
from pklib.errors import ApiError
from tests.controllers.helpers import set_pod_ready
from tests.util import wait_for

SVC = must_lookup("services")
EP = must_lookup("endpoints")
PODS = must_lookup("pods")
SLICES = must_lookup("endpointslices")


def pod(name: str, labels: dict[str, str], port_name: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "ports": [{"name": port_name, "containerPort": port}]}]}}


async def endpoints(client: Client, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return await client.get(EP, name, ns)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


def ips(ep: dict[str, Any] | None, field: str) -> list[str]:
    return sorted(a["ip"] for s in (ep or {}).get("subsets") or [] for a in s.get(field) or [])


async def test_endpoints_follow_readiness_and_named_ports(client: Client, namespace: str,
                                                          start_manager: Any) -> None:
    await start_manager("endpoints")
    await client.create(SVC, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                              "spec": {"selector": {"app": "web"},
                                       "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}, namespace)
    a = await client.create(PODS, pod("a", {"app": "web"}, "http", 8080), namespace)
    b = await client.create(PODS, pod("b", {"app": "web"}, "http", 9090), namespace)
    await client.create(PODS, pod("other", {"app": "db"}, "http", 8080), namespace)
    a = await set_pod_ready(client, a, ready=True)
    b = await set_pod_ready(client, b, ready=False)

    async def split() -> Any:
        ep = await endpoints(client, namespace, "web")
        return ep if ips(ep, "addresses") == [a["status"]["podIP"]] \
            and ips(ep, "notReadyAddresses") == [b["status"]["podIP"]] else None
    ep = await wait_for(split, message="a ready, b not ready")
    by_ip = {addr["ip"]: s for s in ep["subsets"] for addr in s.get("addresses", []) + s.get("notReadyAddresses", [])}
    assert by_ip[a["status"]["podIP"]]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert by_ip[b["status"]["podIP"]]["ports"] == [{"name": "http", "port": 9090, "protocol": "TCP"}], \
        "the named targetPort resolves per pod"
    ref = next(addr for s in ep["subsets"] for addr in s.get("addresses", []))["targetRef"]
    assert ref == {"kind": "Pod", "namespace": namespace, "name": "a", "uid": a["metadata"]["uid"]}

    started = time.monotonic()
    await set_pod_ready(client, b, ready=True)

    async def both_ready() -> Any:
        ep = await endpoints(client, namespace, "web")
        return len(ips(ep, "addresses")) == 2 and not ips(ep, "notReadyAddresses")
    await wait_for(both_ready, message="b ready")
    assert time.monotonic() - started < 1.0, "endpoints must follow within the second"

    async def slices_agree() -> Any:
        items = (await client.list(SLICES, namespace, label_selector="kubernetes.io/service-name=web"))["items"]
        ready = sorted(e["addresses"][0] for s in items for e in s["endpoints"] if e["conditions"]["ready"])
        return items if ready == sorted([a["status"]["podIP"], b["status"]["podIP"]]) else None
    slices = await wait_for(slices_agree, message="EndpointSlices mirror the endpoints")
    assert {p["port"] for s in slices for p in s["ports"]} == {8080, 9090}
    assert all(s["metadata"]["ownerReferences"][0]["kind"] == "Service" for s in slices)

    await client.patch(PODS, "a", {"metadata": {"labels": {"app": "gone"}}}, namespace)

    async def only_b() -> Any:
        return ips(await endpoints(client, namespace, "web"), "addresses") == [b["status"]["podIP"]]
    await wait_for(only_b, message="relabelled pod leaves the endpoints")

    await client.delete(SVC, "web", namespace)

    async def ep_gone() -> Any:
        return await endpoints(client, namespace, "web") is None
    await wait_for(ep_gone, message="endpoints deleted with the service")

    async def slices_gone() -> Any:
        return not (await client.list(SLICES, namespace))["items"]
    await wait_for(slices_gone, message="slices deleted with the service")


async def test_headless_service_publishes_hostnames(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("endpoints")
    await client.create(SVC, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
                              "spec": {"clusterIP": "None", "selector": {"app": "db"}}}, namespace)
    body = pod("db-0", {"app": "db"}, "sql", 5432)
    body["spec"].update({"hostname": "db-0", "subdomain": "db"})
    p = await set_pod_ready(client, await client.create(PODS, body, namespace))

    async def published() -> Any:
        ep = await endpoints(client, namespace, "db")
        addrs = [a for s in (ep or {}).get("subsets") or [] for a in s.get("addresses") or []]
        return ep if addrs and addrs[0]["ip"] == p["status"]["podIP"] else None
    ep = await wait_for(published, message="headless endpoints")
    assert ep["subsets"][0]["addresses"][0]["hostname"] == "db-0"
    assert "ports" not in ep["subsets"][0]


async def test_a_burst_of_pod_changes_updates_the_endpoints_without_conflicting_writes(
        client: Client, namespace: str, start_manager: Any, caplog: Any, monkeypatch: Any) -> None:
    """Each pod that turns Ready syncs the Service again, often before the watch has brought back the
    controller's own last write (on a busy machine, or when the watch is served by another apiserver of a highly
    available cluster than the write): that sync must build on what it wrote, not on the older cached copy, which
    the apiserver refuses with a conflict and the controller retries later, so that the Service follows its pods
    without delay while a rollout changes many at once."""
    caplog.set_level("INFO", logger="pklib.workqueue")
    watch = Client.watch
    delivered: list[dict[str, Any]] = []  # the Endpoints as the controller's watch brought them

    async def lagging(self: Client, res: Any, *args: Any, **kw: Any) -> Any:
        async for event in watch(self, res, *args, **kw):
            if res in (EP, SLICES):
                await asyncio.sleep(0.3)  # the watch of Endpoints and slices a moment behind the writes
            if res == EP:
                delivered.append(event["object"])
            yield event
    monkeypatch.setattr(Client, "watch", lagging)
    await start_manager("endpoints")
    await client.create(SVC, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
                        namespace)
    created = [await set_pod_ready(client, await client.create(PODS, pod(f"p{i}", {"app": "web"}, "http", 8080),
                                                              namespace), ready=False) for i in range(10)]

    async def cached() -> bool:
        return any(len(ips(ep, "notReadyAddresses")) == len(created) for ep in delivered)
    await wait_for(cached, message="the controller's cache to hold every pod's address, not ready")
    for p in created:  # one after another, as a node reports its pods: each change is another sync of the Service
        await set_pod_ready(client, p)

    async def all_ready() -> Any:
        return len(ips(await endpoints(client, namespace, "web"), "addresses")) == len(created)
    await wait_for(all_ready, message="every pod's address ready")

    async def slice_ready() -> bool:
        items = (await client.list(SLICES, namespace, label_selector="kubernetes.io/service-name=web"))["items"]
        return sum(e["conditions"]["ready"] for s in items for e in s["endpoints"]) == len(created)
    await wait_for(slice_ready, message="the EndpointSlice to list every pod ready")
    failed = [r.getMessage() for r in caplog.records if "endpoints: sync" in r.getMessage()]
    assert failed == [], "the endpoints controller's writes conflicted with its own"
