"""Allocator repair (apiserver/repair.py): leaks left by a crash are released, missing allocations recorded."""
from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from apiserver.allocators import IP_PREFIX, PORT_PREFIX
from apiserver.storage.etcd import EtcdStorage
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import SERVICES
from tests.support.controlplane import ApiServer, Etcd, _stop, etcd_prefix, start_apiserver
from tests.util import unique, wait_for


@pytest.fixture
async def repairing(session_tmp: str, etcd: Etcd) -> AsyncIterator[tuple[ApiServer, EtcdStorage, Client]]:
    server = start_apiserver(session_tmp, etcd.url, ["--allocator-repair-interval", "200ms",
                                                     "--service-cluster-ip-range", "10.123.0.0/24"])
    store = EtcdStorage([etcd.url], etcd_prefix(server))  # what the apiserver stores, seen directly
    try:
        async with Client(server.url, server.token) as c:
            yield server, store, c
    finally:
        await store.close()
        _stop(server.proc)


def _service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


async def _absent(store: EtcdStorage, key: str) -> bool:
    return await store.get(key) is None


async def test_leaked_cluster_ip_and_node_port_are_released(repairing: Any) -> None:
    _, store, c = repairing
    # What an apiserver killed between allocating and writing the Service leaves behind.
    leaked_ip, leaked_port = IP_PREFIX + "10.123.0.77", PORT_PREFIX + "tcp/31777"
    for key in (leaked_ip, leaked_port):
        await store.create(key, {"uid": unique("uid"), "service": "default/never-written"})
    await wait_for(lambda: _absent(store, leaked_ip), timeout=15, message="the leaked ClusterIP to be released")
    await wait_for(lambda: _absent(store, leaked_port), timeout=15, message="the leaked NodePort to be released")
    # Both can be had again.
    svc = await c.create(SERVICES, _service(unique("reuse"), type="NodePort", clusterIP="10.123.0.77",
                                            ports=[{"port": 80, "nodePort": 31777}]), "default")
    assert svc["spec"]["clusterIP"] == "10.123.0.77"
    # A Service's own allocations are never taken for leaks: once a later leak is released (so the repair ran
    # several times since the Service was written), they are still there.
    later = IP_PREFIX + "10.123.0.78"
    await store.create(later, {"uid": unique("uid"), "service": "default/never-written"})
    await wait_for(lambda: _absent(store, later), timeout=15, message="a later leak to be released")
    assert (await store.get(leaked_ip)).value["uid"] == svc["metadata"]["uid"]  # type: ignore[union-attr]
    assert (await store.get(leaked_port)) is not None


async def test_a_service_whose_ip_is_not_marked_gets_it_marked(repairing: Any) -> None:
    _, store, c = repairing
    svc = await c.create(SERVICES, _service(unique("held")), "default")
    ip = svc["spec"]["clusterIP"]
    await store.delete(IP_PREFIX + ip)  # lost (a crash, a restored backup)

    async def marked() -> bool:
        entry = await store.get(IP_PREFIX + ip)
        return entry is not None and entry.value["uid"] == svc["metadata"]["uid"]
    await wait_for(marked, timeout=15, message="the Service's ClusterIP to be marked allocated again")
    with pytest.raises(ApiError) as e:
        await c.create(SERVICES, _service(unique("thief"), clusterIP=ip), "default")
    assert e.value.code == 422 and "provided IP is already allocated" in e.value.message
