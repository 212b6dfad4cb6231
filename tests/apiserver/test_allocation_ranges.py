"""Allocation with configured (small) ranges, across two apiservers sharing one etcd keyspace.

Small ranges make "every value handed out exactly once" checkable exhaustively, and two
servers prove that the store, not a process-local lock, prevents duplicates."""
from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from typing import Any, AsyncIterator, Iterator

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.controlplane import ApiServer, Etcd, start_apiserver
from tests.util import unique

SVC = lookup("services")
NS = lookup("namespaces")
CIDR = "10.200.0.0/27"  # 30 hosts; .1 and .10 only on request → 28 to hand out
PORTS = (31000, 31004)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def pair(session_tmp: str, etcd: Etcd) -> Iterator[tuple[ApiServer, ApiServer]]:
    prefix = "/" + unique("alloc")
    flags = ["--service-cluster-ip-range", CIDR, "--service-node-port-range", f"{PORTS[0]}-{PORTS[1]}",
             "--etcd-prefix", prefix]
    first = start_apiserver(session_tmp, etcd.url, flags)
    try:
        second = start_apiserver(session_tmp, etcd.url, flags)
    except BaseException:
        _stop(first.proc)
        raise
    yield first, second
    _stop(second.proc)
    _stop(first.proc)


@pytest.fixture
async def clients(pair: tuple[ApiServer, ApiServer]) -> AsyncIterator[tuple[Client, Client, str]]:
    a, b = Client(pair[0].url, pair[0].token), Client(pair[1].url, pair[1].token)
    ns = unique("ns")
    await a.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        yield a, b, ns
    finally:
        # Free the small ranges for the next test of this module.
        for svc in (await a.list(SVC, ns))["items"]:
            await a.delete(SVC, svc["metadata"]["name"], ns)
        await a.close()
        await b.close()


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}], **spec}}


async def test_whole_ip_range_is_handed_out_once_across_two_servers(clients: tuple[Client, Client, str]) -> None:
    a, b, ns = clients
    net = ipaddress.ip_network(CIDR)
    expected = {str(net.network_address + i) for i in range(1, 31)} - {"10.200.0.1", "10.200.0.10"}
    bodies = [service(unique("s")) for _ in range(len(expected))]
    created = await asyncio.gather(*((a if i % 2 else b).create(SVC, body, namespace=ns)
                                     for i, body in enumerate(bodies)))
    assert {s["spec"]["clusterIP"] for s in created} == expected
    with pytest.raises(ApiError) as err:
        await a.create(SVC, service(unique("full")), namespace=ns)
    assert err.value.code == 500 and "range is full" in err.value.message
    # The reserved addresses are still there for whoever asks for them by name.
    api = await b.create(SVC, service(unique("api"), clusterIP="10.200.0.1"), namespace=ns)
    dns = await a.create(SVC, service(unique("dns"), clusterIP="10.200.0.10"), namespace=ns)
    assert (api["spec"]["clusterIP"], dns["spec"]["clusterIP"]) == ("10.200.0.1", "10.200.0.10")
    # Deleting one frees exactly that address.
    freed = created[7]
    await b.delete(SVC, freed["metadata"]["name"], ns)
    again = await a.create(SVC, service(unique("again")), namespace=ns)
    assert again["spec"]["clusterIP"] == freed["spec"]["clusterIP"]


async def test_node_port_range_is_handed_out_once(clients: tuple[Client, Client, str]) -> None:
    a, b, ns = clients
    size = PORTS[1] - PORTS[0] + 1
    created = await asyncio.gather(*((a if i % 2 else b).create(SVC, service(unique("n"), type="NodePort"),
                                                                namespace=ns) for i in range(size)))
    assert sorted(s["spec"]["ports"][0]["nodePort"] for s in created) == list(range(PORTS[0], PORTS[1] + 1))
    with pytest.raises(ApiError) as err:
        await b.create(SVC, service(unique("full"), type="NodePort"), namespace=ns)
    assert err.value.code == 500 and "range is full" in err.value.message
    # The failed create did not keep its cluster IP: a ClusterIP Service still gets one.
    assert (await a.create(SVC, service(unique("ip")), namespace=ns))["spec"]["clusterIP"]
    with pytest.raises(ApiError) as err:
        await a.create(SVC, service(unique("out"), type="NodePort", ports=[{"port": 80, "nodePort": 30000}]),
                       namespace=ns)
    assert err.value.code == 422
    assert "The range of valid ports is 31000-31004" in err.value.causes[0]["message"]
