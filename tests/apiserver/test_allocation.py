"""ClusterIP and NodePort allocation through the real apiserver on a real etcd.

Tests share the control plane, so values a test requests by number are drawn at random
among those no Service holds yet."""
from __future__ import annotations

import asyncio
import ipaddress
import random
from typing import Any

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.util import unique

SVC = lookup("services")
CIDR = ipaddress.ip_network("10.96.0.0/12")
RESERVED = {str(CIDR.network_address + 1), str(CIDR.network_address + 10)}


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


class Unused:
    """Random cluster IPs and node ports that no Service holds, none handed out twice."""

    def __init__(self, services: list[dict[str, Any]]):
        self.ips = {s["spec"].get("clusterIP") for s in services}
        self.ports = {p.get("nodePort") for s in services for p in s["spec"].get("ports") or []}

    def ip(self) -> str:
        for _ in range(1000):
            ip = str(CIDR.network_address + random.randrange(4096, CIDR.num_addresses - 2))
            if ip not in self.ips:
                self.ips.add(ip)
                return ip
        raise AssertionError("no unused cluster IP found")

    def port(self) -> int:
        free = sorted(set(range(30000, 32768)) - self.ports)
        port = random.choice(free)
        self.ports.add(port)
        return port


async def unused(client: Client) -> Unused:
    return Unused((await client.list_all(SVC))["items"])


async def expect_invalid(client: Client, body: dict[str, Any], namespace: str, field: str, fragment: str) -> None:
    with pytest.raises(ApiError) as err:
        await client.create(SVC, body, namespace=namespace)
    assert (err.value.code, err.value.reason) == (422, "Invalid"), err.value.status
    assert any(c["field"] == field and fragment in c["message"] for c in err.value.causes), err.value.causes
    with pytest.raises(ApiError) as gone:
        await client.get(SVC, body["metadata"]["name"], namespace)
    assert gone.value.code == 404


async def test_concurrent_creates_never_share_a_cluster_ip_or_node_port(client: Client, namespace: str) -> None:
    bodies = [service(unique("c"), type="NodePort", ports=[{"port": 80, "name": "http"},
                                                            {"port": 53, "name": "dns", "protocol": "UDP"}])
              for _ in range(50)]
    created = await asyncio.gather(*(client.create(SVC, b, namespace=namespace) for b in bodies))
    ips = [s["spec"]["clusterIP"] for s in created]
    assert len(set(ips)) == 50
    assert all(ipaddress.ip_address(ip) in CIDR and ip not in RESERVED for ip in ips)
    tcp = [s["spec"]["ports"][0]["nodePort"] for s in created]
    udp = [s["spec"]["ports"][1]["nodePort"] for s in created]
    assert len(set(tcp)) == 50 and len(set(udp)) == 50
    assert all(30000 <= p <= 32767 for p in tcp + udp)
    # What was stored is what was answered.
    stored = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in (await client.list(SVC, namespace))["items"]}
    assert sorted(stored.values()) == sorted(ips)


async def test_requested_cluster_ip_taken_or_out_of_range_is_422(client: Client, namespace: str) -> None:
    ip = (await unused(client)).ip()
    first = await client.create(SVC, service(unique("a"), clusterIP=ip), namespace=namespace)
    assert first["spec"]["clusterIP"] == ip and first["spec"]["clusterIPs"] == [ip]
    await expect_invalid(client, service(unique("b"), clusterIP=ip), namespace,
                         "spec.clusterIPs[0]", f"Invalid value: \"{ip}\": provided IP is already allocated")
    await expect_invalid(client, service(unique("c"), clusterIP="192.168.7.7"), namespace, "spec.clusterIPs[0]",
                         "provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12")
    await expect_invalid(client, service(unique("d"), clusterIP="not-an-ip"), namespace, "spec.clusterIPs[0]",
                         "must be a valid IP address")


async def test_requested_node_port_taken_or_out_of_range_is_422(client: Client, namespace: str) -> None:
    port = (await unused(client)).port()
    first = await client.create(SVC, service(unique("a"), type="NodePort", ports=[{"port": 80, "nodePort": port}]),
                                namespace=namespace)
    assert first["spec"]["ports"][0]["nodePort"] == port
    await expect_invalid(client, service(unique("b"), type="NodePort", ports=[{"port": 81, "nodePort": port}]),
                         namespace, "spec.ports[0].nodePort", f"Invalid value: {port}: provided port is already "
                                                              f"allocated")
    await expect_invalid(client, service(unique("c"), type="NodePort", ports=[{"port": 80, "nodePort": 8080}]),
                         namespace, "spec.ports[0].nodePort",
                         "provided port is not in the valid range. The range of valid ports is 30000-32767")
    # The same number on the other protocol is a different node port.
    udp = await client.create(SVC, service(unique("u"), type="NodePort",
                                           ports=[{"port": 53, "protocol": "UDP", "nodePort": port}]),
                              namespace=namespace)
    assert udp["spec"]["ports"][0]["nodePort"] == port


async def test_delete_releases_ip_and_node_port_for_reuse(client: Client, namespace: str) -> None:
    free = await unused(client)
    ip, port = free.ip(), free.port()
    name = unique("r")
    await client.create(SVC, service(name, type="NodePort", clusterIP=ip, ports=[{"port": 80, "nodePort": port}]),
                        namespace=namespace)
    await client.delete(SVC, name, namespace)
    again = await client.create(SVC, service(unique("r2"), type="NodePort", clusterIP=ip,
                                             ports=[{"port": 80, "nodePort": port}]), namespace=namespace)
    assert again["spec"]["clusterIP"] == ip and again["spec"]["ports"][0]["nodePort"] == port


async def test_failed_create_gives_back_what_it_reserved(client: Client, namespace: str) -> None:
    free = await unused(client)
    taken, wanted, ip = free.port(), free.port(), free.ip()
    await client.create(SVC, service(unique("t"), type="NodePort", ports=[{"port": 80, "nodePort": taken}]),
                        namespace=namespace)
    # The IP and the first port are reserved before the second port fails: both must be released.
    await expect_invalid(client, service(unique("f"), type="NodePort", clusterIP=ip, ports=[
        {"name": "a", "port": 80, "nodePort": wanted}, {"name": "b", "port": 81, "nodePort": taken}]),
        namespace, "spec.ports[1].nodePort", "provided port is already allocated")
    # A create that loses on the name (409) after reserving must release too.
    existing = unique("e")
    await client.create(SVC, service(existing), namespace=namespace)
    with pytest.raises(ApiError) as err:
        await client.create(SVC, service(existing, type="NodePort", clusterIP=ip,
                                         ports=[{"port": 80, "nodePort": wanted}]), namespace=namespace)
    assert err.value.code == 409
    ok = await client.create(SVC, service(unique("ok"), type="NodePort", clusterIP=ip,
                                          ports=[{"port": 80, "nodePort": wanted}]), namespace=namespace)
    assert ok["spec"]["clusterIP"] == ip and ok["spec"]["ports"][0]["nodePort"] == wanted


async def test_headless_and_external_name_get_no_cluster_ip(client: Client, namespace: str) -> None:
    headless = await client.create(SVC, service(unique("h"), clusterIP="None"), namespace=namespace)
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["clusterIPs"] == ["None"]
    resent = headless
    resent["spec"].pop("clusterIP")
    resent["spec"].pop("clusterIPs")
    assert (await client.update(SVC, resent))["spec"]["clusterIP"] == "None"  # stays headless
    external = await client.create(SVC, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": unique("x")},
                                         "spec": {"type": "ExternalName", "externalName": "db.example.com"}},
                                   namespace=namespace)
    assert "clusterIP" not in external["spec"]


async def test_type_change_releases_and_allocates_node_ports(client: Client, namespace: str) -> None:
    port = (await unused(client)).port()
    name = unique("t")
    svc = await client.create(SVC, service(name, type="NodePort", ports=[{"port": 80, "nodePort": port}]),
                              namespace=namespace)
    ip = svc["spec"]["clusterIP"]
    # NodePort → ClusterIP: the node port goes away (also when the client sends it back) and is free again.
    as_cluster_ip = await client.patch(SVC, name, {"spec": {"type": "ClusterIP"}}, namespace)
    assert "nodePort" not in as_cluster_ip["spec"]["ports"][0]
    assert as_cluster_ip["spec"]["clusterIP"] == ip
    other = await client.create(SVC, service(unique("o"), type="NodePort", ports=[{"port": 80, "nodePort": port}]),
                                namespace=namespace)
    assert other["spec"]["ports"][0]["nodePort"] == port
    # ClusterIP → NodePort: a fresh node port is allocated.
    back = await client.patch(SVC, name, {"spec": {"type": "NodePort"}}, namespace)
    new_port = back["spec"]["ports"][0]["nodePort"]
    assert 30000 <= new_port <= 32767 and new_port != port
    # A PUT without nodePort keeps the allocated one.
    put = back
    put["spec"]["ports"][0].pop("nodePort")
    kept = await client.update(SVC, put)
    assert kept["spec"]["ports"][0]["nodePort"] == new_port


async def test_external_name_switch_releases_the_cluster_ip(client: Client, namespace: str) -> None:
    ip = (await unused(client)).ip()
    name = unique("x")
    await client.create(SVC, service(name, clusterIP=ip), namespace=namespace)
    switched = await client.patch(SVC, name, {"spec": {"type": "ExternalName", "externalName": "db.example.com"}},
                                  namespace)
    assert "clusterIP" not in switched["spec"]
    reuse = await client.create(SVC, service(unique("y"), clusterIP=ip), namespace=namespace)
    assert reuse["spec"]["clusterIP"] == ip
