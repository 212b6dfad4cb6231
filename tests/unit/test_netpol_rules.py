"""NetworkPolicy semantics (pklib/api/networkpolicy.py) and the node's ruleset built from them
(proxy/netpol_rules.py): who is isolated, which peers and ports a rule allows, and the nft scripts."""
from __future__ import annotations

import ipaddress
from typing import Any

from pklib.api import networkpolicy as np
from proxy import netpol_rules as r
from proxy.netpol import table_for


def pod(ns: str, name: str, ip: str, labels: dict[str, str], node: str = "n1", phase: str = "Running",
        ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}], **spec},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}], "phase": phase}}


def policy(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {"metadata": {"namespace": ns, "name": name}, "spec": spec}
    np.apply_defaults(body)
    return body


NAMESPACES = {"a": {"metadata": {"name": "a"}}, "b": {"metadata": {"name": "b", "labels": {"team": "x"}}}}
WEB = pod("a", "web", "10.1.0.3", {"app": "web"}, ports=[{"name": "http", "containerPort": 8080}])
FRONT = pod("a", "front", "10.1.0.2", {"role": "frontend"})
REMOTE = pod("b", "remote", "10.2.0.9", {"role": "frontend"}, node="n2")
PODS = [WEB, FRONT, REMOTE]
BY_NS = np.by_namespace(PODS)


def build(*policies: dict[str, Any], pods: list[dict[str, Any]] = PODS) -> r.Ruleset:
    return r.build("t", r.Cluster("n1", pods, NAMESPACES, list(policies)))


def test_defaults_and_policy_types() -> None:
    assert policy("a", "p")["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    both = policy("a", "p", egress=[{"ports": [{"port": 53}]}])
    assert both["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert both["spec"]["egress"][0]["ports"] == [{"port": 53, "protocol": "TCP"}]
    assert np.policy_types({"spec": {"egress": [{}]}}) == ("Ingress", "Egress")
    assert np.policy_types({"spec": {"policyTypes": ["Egress"]}}) == ("Egress",)


def test_ip_block_minus_except() -> None:
    nets = np.block_networks({"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.1.2.0/24"]})
    assert not any(ipaddress.ip_address("10.1.5.5") in n for n in nets)
    assert any(ipaddress.ip_address("10.2.0.1") in n for n in nets)
    assert not any(ipaddress.ip_address("10.1.2.1") in n for n in nets)
    assert np.block_networks({"cidr": "2001:db8::/64"}) == []


def test_peers_pod_namespace_and_both() -> None:
    only_pods = {"podSelector": {"matchLabels": {"role": "frontend"}}}
    assert np.peer_pods(only_pods, "a", BY_NS, NAMESPACES) == [FRONT]  # the policy's namespace only
    only_ns = {"namespaceSelector": {"matchLabels": {"team": "x"}}}
    assert np.peer_pods(only_ns, "a", BY_NS, NAMESPACES) == [REMOTE]
    by_name = {"namespaceSelector": {"matchLabels": {np.NAMESPACE_NAME_LABEL: "a"}}}
    assert np.peer_pods(by_name, "b", BY_NS, NAMESPACES) == [WEB, FRONT]
    both = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}
    assert np.peer_pods(both, "b", BY_NS, NAMESPACES) == [WEB]


def test_unselected_pods_are_untouched() -> None:
    rs = build(policy("a", "p", podSelector={"matchLabels": {"app": "nothing"}}))
    assert rs.maps == {r.INGRESS_MAP: {}, r.EGRESS_MAP: {}}
    assert set(rs.chains) == {"ingress", "egress"}


def test_default_deny_and_allow_rules() -> None:
    deny = policy("a", "deny")
    allow = policy("a", "allow", podSelector={"matchLabels": {"app": "web"}}, ingress=[
        {"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}},
                  {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
         "ports": [{"port": "http"}, {"port": 9000, "endPort": 9010, "protocol": "UDP"}]}])
    rs = build(deny, allow)
    # Both local pods are isolated for ingress; the remote one is another node's business.
    assert rs.maps[r.INGRESS_MAP] == {"10.1.0.3": "jump pod-in-a/web", "10.1.0.2": "jump pod-in-a/front"}
    assert rs.maps[r.EGRESS_MAP] == {}
    assert rs.chains["pod-in-a/web"] == ["ip saddr 10.1.0.3 accept", "jump pol-in-a/allow", "jump pol-in-a/deny",
                                         "drop"]
    assert rs.chains["pol-in-a/deny"] == []
    named = "ip daddr . meta l4proto . th dport @ports-in-a/allow/0/0 accept"
    assert rs.chains["pol-in-a/allow"] == [
        f"ip saddr @peers-in-a/allow/0 {named}", f"ip saddr @blocks-in-a/allow/0 {named}",
        "ip saddr @peers-in-a/allow/0 meta l4proto udp th dport 9000-9010 accept",
        "ip saddr @blocks-in-a/allow/0 meta l4proto udp th dport 9000-9010 accept"]
    assert rs.sets["peers-in-a/allow/0"] == (r.PEERS_DECL, frozenset({"10.1.0.2"}))
    decl, blocks = rs.sets["blocks-in-a/allow/0"]
    assert decl == r.BLOCKS_DECL and "192.168.0.0/24" in blocks and "192.168.1.0/24" not in blocks
    assert rs.sets["ports-in-a/allow/0/0"] == (r.NAMED_PORTS_DECL, frozenset({"10.1.0.3 . tcp . 8080"}))


def test_egress_named_port_resolves_on_the_peers() -> None:
    out = policy("a", "out", podSelector={"matchLabels": {"role": "frontend"}}, policyTypes=["Egress"],
                 egress=[{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]},
                         {"ports": [{"protocol": "UDP", "port": 53}]}])
    rs = build(out)
    assert rs.maps[r.EGRESS_MAP] == {"10.1.0.2": "jump pod-out-a/front"}
    assert rs.sets["ports-out-a/out/0/0"][1] == frozenset({"10.1.0.3 . tcp . 8080"})
    assert rs.chains["pol-out-a/out"][1] == "meta l4proto udp th dport 53 accept"  # no peers: any address
    anywhere = policy("a", "any", podSelector={"matchLabels": {"role": "frontend"}}, policyTypes=["Egress"],
                      egress=[{"ports": [{"port": "http"}]}])
    assert build(anywhere).sets["ports-out-a/any/0/0"][1] == frozenset({"10.1.0.3 . tcp . 8080"})


def test_finished_and_host_network_pods_have_no_address() -> None:
    done = pod("a", "done", "10.1.0.7", {"app": "web"}, phase="Succeeded")
    host = pod("a", "host", "10.0.0.1", {"app": "web"}, hostNetwork=True)
    rs = build(policy("a", "deny"), pods=[done, host])
    assert rs.maps[r.INGRESS_MAP] == {}


def test_overlapping_blocks_collapse() -> None:
    # Two ipBlocks of one rule overlap: interval sets refuse overlapping elements.
    assert r.elements([ipaddress.IPv4Network("10.3.0.0/16"), ipaddress.IPv4Network("10.3.0.2/32")]) == \
        frozenset({"10.3.0.0/16"})
    assert r.elements([ipaddress.IPv4Network("10.1.0.2/32")]) == frozenset({"10.1.0.2"})


def test_incremental_touches_only_what_changed() -> None:
    allow = policy("a", "allow", podSelector={"matchLabels": {"app": "web"}},
                   ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}])
    before = build(allow)
    moved = pod("a", "front", "10.1.0.20", {"role": "frontend"})
    after = build(allow, pods=[WEB, moved, REMOTE])
    script = r.incremental(before, after)
    assert script is not None
    assert script.splitlines() == [
        "delete element ip t peers-in-a/allow/0 { 10.1.0.2 }", "add element ip t peers-in-a/allow/0 { 10.1.0.20 }"]
    assert r.incremental(after, after) is None
    gone = r.incremental(after, build())
    assert gone is not None and gone.splitlines()[-1] == "delete set ip t peers-in-a/allow/0"
    assert "delete element ip t ingress-pods { 10.1.0.3 }" in gone


def test_full_script_flushes_and_deletes_stale() -> None:
    script = r.full(build(), {"ingress", "egress", "pod-in-a/old"}, {"peers-in-a/old/0"})
    lines = script.splitlines()
    assert lines[:2] == ["add table ip t", "flush table ip t"]
    assert "flush set ip t peers-in-a/old/0" in lines and "flush map ip t ingress-pods" in lines
    assert lines[-2:] == ["delete chain ip t pod-in-a/old", "delete set ip t peers-in-a/old/0"]


def test_long_names_are_hashed_and_table_names() -> None:
    long_key = "a/" + "x" * 250
    assert len(r.name("pod-in", long_key)) < 64
    assert r.name("pod-in", "a/web") == "pod-in-a/web"
    assert table_for("pkube-proxy") == "pkube-netpol"
    assert table_for("pkube-t-1234") == "pkube-t-1234-netpol"
    assert len(table_for("t" * 64)) == 64
