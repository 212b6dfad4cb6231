"""The LoadBalancer ingress every node's proxy writes (proxy/main.py): the same list from every proxy."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from proxy.main import ProxyServer


def _server(nodes: list[dict[str, Any]], node_ip: str | None) -> Any:
    return SimpleNamespace(nodes=SimpleNamespace(store=SimpleNamespace(list=lambda: nodes)), node_ip=node_ip)


def _node(*addresses: tuple[str, str]) -> dict[str, Any]:
    return {"status": {"addresses": [{"type": t, "address": a} for t, a in addresses]}}


def test_every_nodes_internal_ip_in_numeric_order_whoever_asks() -> None:
    nodes = [_node(("InternalIP", "10.0.0.10"), ("Hostname", "b")), _node(("InternalIP", "10.0.0.9")),
             _node(("ExternalIP", "203.0.113.1")), _node(("InternalIP", "10.0.0.10"))]
    want = [{"ip": "10.0.0.9"}, {"ip": "10.0.0.10"}]
    assert ProxyServer.loadbalancer_ingress(_server(nodes, "10.0.0.9")) == want
    assert ProxyServer.loadbalancer_ingress(_server(list(reversed(nodes)), "10.0.0.10")) == want


def test_without_nodes_the_proxys_own_address_or_nothing() -> None:
    assert ProxyServer.loadbalancer_ingress(_server([], "192.0.2.7")) == [{"ip": "192.0.2.7"}]
    assert ProxyServer.loadbalancer_ingress(_server([], None)) == []
