"""Pods' hostPorts published by `pkube proxy` on its node: real nftables, "pods" in network namespaces.

The Pod objects are bound to the proxy's node and given the address of a test namespace running httpd
(what the scheduler and kubelet would do), so the proxy sees exactly what it sees on a real node.
"""
from __future__ import annotations

import socket
from typing import Any

import pytest

from pklib.client import Client
from pklib.resources import must_lookup
from tests.support.proxy import PodNet, ProxyProcess, fetch
from tests.util import free_port, wait_for_sync

pytestmark = pytest.mark.root

PODS = must_lookup("pods")
NAMESPACES = must_lookup("namespaces")


async def host_port_pod(c: Client, ns: str, name: str, node: str, ip: str, ports: list[dict[str, Any]]) -> None:
    await c.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                          "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                                                                     "ports": ports}]}})
    body = await c.get(PODS, name, ns)
    body["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    await c.update_status(PODS, body)


@pytest.fixture
async def hns(pclient: Client, pns: str) -> str:
    """The test namespace at Pod Security level privileged (baseline refuses hostPorts)."""
    body = await pclient.get(NAMESPACES, pns)
    body["metadata"].setdefault("labels", {})["pod-security.kubernetes.io/enforce"] = "privileged"
    await pclient.update(NAMESPACES, body)
    return pns


async def test_hostport_answers_on_localhost_and_node_ip_and_goes_with_the_pod(
        pclient: Client, hns: str, testnet: PodNet, proxy: ProxyProcess) -> None:
    web = testnet.add_pod("web", port=8080)
    port = free_port()
    await host_port_pod(pclient, hns, "web", proxy.node_name, web.ip, [{"containerPort": 8080, "hostPort": port}])
    for url in (f"http://127.0.0.1:{port}/", f"http://{testnet.gateway}:{port}/"):
        assert wait_for_sync(lambda: fetch(url) == "web", timeout=10, message=url)
    # The pod reaches itself through the node's address (hairpin).
    assert testnet.fetch_from(web, f"http://{testnet.gateway}:{port}/") == "web"

    await pclient.delete(PODS, "web", hns, grace_period_seconds=0)
    wait_for_sync(lambda: f"tcp . {port}" not in proxy.ruleset(), message="hostPort rules removed")
    assert fetch(f"http://127.0.0.1:{port}/", timeout=1) is None


async def test_udp_hostport_and_host_ip(pclient: Client, hns: str, testnet: PodNet, proxy: ProxyProcess) -> None:
    dns, web = testnet.add_pod("dns"), testnet.add_pod("only-gw", port=8080)
    udp_port, tcp_port = free_port(), free_port()
    testnet.udp_echo(dns, 5353)
    await host_port_pod(pclient, hns, "dns", proxy.node_name, dns.ip,
                        [{"containerPort": 5353, "hostPort": udp_port, "protocol": "UDP"}])
    await host_port_pod(pclient, hns, "only-gw", proxy.node_name, web.ip,
                        [{"containerPort": 8080, "hostPort": tcp_port, "hostIP": testnet.gateway}])

    def udp_answer() -> str | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            s.sendto(b"hi", ("127.0.0.1", udp_port))
            try:
                return s.recv(100).decode()
            except OSError:
                return None
    assert wait_for_sync(udp_answer, timeout=10, message="UDP hostPort") == "dns"
    assert wait_for_sync(lambda: fetch(f"http://{testnet.gateway}:{tcp_port}/") == "only-gw", timeout=10)
    # Published on that hostIP only.
    assert fetch(f"http://127.0.0.1:{tcp_port}/", timeout=1) is None
