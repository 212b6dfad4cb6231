"""Pods' hostPorts -> the proxy table's fragment (pure; no kernel involved)."""
from __future__ import annotations

from typing import Any

from proxy import hostports, nft, rules
from proxy.state import stale_udp
from proxy.rules import HOSTPORT_IPS, HOSTPORTS


def pod(name: str = "web", ip: str = "10.1.0.5", ports: list[dict[str, Any]] | None = None, **status: Any
        ) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name},
            "spec": {"containers": [{"name": "c", "ports": ports if ports is not None else
                                     [{"containerPort": 80, "hostPort": 8080}]}]},
            "status": {"podIP": ip, "phase": "Running", **status}}


def test_hostport_on_every_address_dnats_to_the_pod_and_masquerades_host_clients() -> None:
    frag = hostports.fragment(pod())
    assert frag is not None
    assert frag.elements[HOSTPORTS] == {"tcp . 8080": "goto hostport-ns/web/tcp/0.0.0.0/8080"}
    assert frag.chains["hostport-ns/web/tcp/0.0.0.0/8080"] == [
        "fib saddr type local jump mark-for-masquerade", "meta l4proto tcp dnat ip to 10.1.0.5:80"]
    assert frag.hairpin == {"10.1.0.5"}  # the pod reaching itself through the node's address


def test_hostip_udp_and_several_containers() -> None:
    p = pod(ports=[{"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "192.0.2.7"}])
    p["spec"]["containers"].append({"name": "d", "ports": [{"containerPort": 9000, "hostPort": 9001}]})
    frag = hostports.fragment(p)
    assert frag is not None
    assert frag.elements[HOSTPORT_IPS] == {"192.0.2.7 . udp . 5353": "goto hostport-ns/web/udp/192.0.2.7/5353"}
    assert frag.elements[HOSTPORTS] == {"tcp . 9001": "goto hostport-ns/web/tcp/0.0.0.0/9001"}


def test_nothing_published_without_ip_after_the_end_or_with_host_network() -> None:
    assert hostports.fragment(pod(ports=[{"containerPort": 80}])) is None
    assert hostports.fragment(pod(ip="")) is None
    assert hostports.fragment(pod(phase="Succeeded")) is None
    assert hostports.fragment(pod(phase="Failed")) is None
    host_net = pod()
    host_net["spec"]["hostNetwork"] = True
    assert hostports.fragment(host_net) is None
    assert hostports.fragment(pod(ports=[{"containerPort": 80, "hostPort": 70000}])) is None


def test_table_looks_up_hostports_after_services_and_partial_sync_touches_only_the_pod() -> None:
    base = rules.assemble("t", [])
    assert base.chains["nat-prerouting"][1:] == ["jump services", "jump hostports"]
    assert base.chains["hostports"] == ["fib daddr type local ip daddr . meta l4proto . th dport vmap @hostport-ips",
                                        "fib daddr type local meta l4proto . th dport vmap @hostport-any"]
    frag = hostports.fragment(pod())
    assert frag is not None
    with_pod = rules.assemble("t", [frag])
    script = nft.incremental(base, with_pod) or ""
    assert "add element ip t hostport-any { tcp . 8080 : goto hostport-ns/web/tcp/0.0.0.0/8080 }" in script
    assert "add rule ip t hostport-ns/web/tcp/0.0.0.0/8080 meta l4proto tcp dnat ip to 10.1.0.5:80" in script
    gone = nft.incremental(with_pod, base) or ""
    assert "delete element ip t hostport-any { tcp . 8080 }" in gone
    assert "delete chain ip t hostport-ns/web/tcp/0.0.0.0/8080" in gone


def test_udp_flows_of_a_gone_pod_are_stale() -> None:
    frag = hostports.fragment(pod(ports=[{"containerPort": 53, "hostPort": 5353, "protocol": "UDP"}]))
    assert frag is not None
    assert stale_udp(rules.assemble("t", [frag]), rules.assemble("t", [])) == {("nodeport", 5353, "10.1.0.5")}
