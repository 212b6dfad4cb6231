"""The ruleset generator: Services + Endpoints -> nftables text (pure; no kernel involved)."""
from __future__ import annotations

import re
from typing import Any

import pytest

from proxy import nft, rules


def svc(name: str, ip: str = "10.96.0.10", ports: list[dict[str, Any]] | None = None, ns: str = "ns",
        **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": ports or [{"port": 80, "protocol": "TCP"}], **spec}}


def eps(*subsets: tuple[list[str], list[dict[str, Any]]], node: str = "") -> dict[str, Any]:
    return {"subsets": [{"addresses": [{"ip": ip, **({"nodeName": node} if node else {})} for ip in ips],
                         "ports": ports} for ips, ports in subsets]}


def chain(text: str, name: str) -> list[str]:
    m = re.search(r"^  chain " + re.escape(name) + r" \{\n(.*?)^  \}", text, re.S | re.M)
    assert m, f"chain {name} not in ruleset"
    return [line.strip() for line in m.group(1).splitlines()]


def services_map(text: str) -> str:
    return "\n".join(chain(text, "services"))


def test_clusterip_spreads_over_every_ready_endpoint_with_equal_weight() -> None:
    r = rules.build("t", [svc("web", ports=[{"port": 80, "protocol": "TCP", "targetPort": 8080}])],
                    {"ns/web": eps((["10.1.0.3", "10.1.0.2", "10.1.0.4"], [{"port": 8080, "protocol": "TCP"}]))})
    assert "10.96.0.10 . tcp . 80 : goto svc-ns/web/tcp/80" in services_map(r.text)
    pick = chain(r.text, "svc-ns/web/tcp/80")[-1]
    assert pick == ("meta l4proto tcp dnat ip to numgen random mod 3 map "
                    "{ 0 : 10.1.0.2 . 8080, 1 : 10.1.0.3 . 8080, 2 : 10.1.0.4 . 8080 }")
    assert not any(c.startswith("ep-") for c in r.chains)  # one chain per Service port, not per endpoint


def test_not_ready_addresses_get_no_traffic() -> None:
    ep = {"subsets": [{"addresses": [{"ip": "10.1.0.2"}], "notReadyAddresses": [{"ip": "10.1.0.9"}],
                       "ports": [{"port": 80, "protocol": "TCP"}]}]}
    r = rules.build("t", [svc("web")], {"ns/web": ep})
    assert "10.1.0.9" not in r.text
    assert "numgen random mod 1 map { 0 : 10.1.0.2 . 80 }" in r.text


def test_named_target_port_resolved_per_endpoint_subset() -> None:
    # Two pod versions serve port "http" on different numbers: Endpoints carries two subsets.
    r = rules.build("t", [svc("web", ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}])],
                    {"ns/web": eps((["10.1.0.2"], [{"name": "http", "port": 8080, "protocol": "TCP"}]),
                                   (["10.1.0.3"], [{"name": "http", "port": 9090, "protocol": "TCP"}]))})
    assert "numgen random mod 2 map { 0 : 10.1.0.2 . 8080, 1 : 10.1.0.3 . 9090 }" in \
        chain(r.text, "svc-ns/web/tcp/http")[-1]


def test_ports_are_matched_by_name_and_protocol() -> None:
    r = rules.build("t", [svc("dns", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])],
                    {"ns/dns": eps((["10.1.0.2"], [{"name": "dns", "port": 5353, "protocol": "UDP"},
                                                   {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}]))})
    assert "meta l4proto udp dnat ip to numgen random mod 1 map { 0 : 10.1.0.2 . 5353 }" in \
        chain(r.text, "svc-ns/dns/udp/dns")
    assert "meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 10.1.0.2 . 5354 }" in \
        chain(r.text, "svc-ns/dns/tcp/dns-tcp")
    assert "10.96.0.10 . udp . 53" in services_map(r.text) and "10.96.0.10 . tcp . 53" in services_map(r.text)


def test_no_ready_endpoints_rejects_instead_of_dnat() -> None:
    r = rules.build("t", [svc("empty", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])],
                    {"ns/empty": {"subsets": [{"notReadyAddresses": [{"ip": "10.1.0.2"}],
                                               "ports": [{"port": 80, "protocol": "TCP"}]}]}})
    check = "\n".join(chain(r.text, "endpoints-check"))
    assert "10.96.0.10 . tcp . 80 : goto reject-no-endpoints" in check
    assert "fib daddr type local meta l4proto . th dport vmap { tcp . 30080 : goto reject-no-endpoints }" in check
    assert chain(r.text, "reject-no-endpoints") == ["meta l4proto tcp reject with tcp reset", "reject"]
    assert "svc-ns/empty" not in r.text and chain(r.text, "services") == []


def test_headless_externalname_and_unallocated_services_get_no_rules() -> None:
    r = rules.build("t", [svc("headless", ip="None"), svc("ext", ip="", type="ExternalName", externalName="x.org"),
                          svc("pending", ip="")],
                    {"ns/headless": eps((["10.1.0.2"], [{"port": 80, "protocol": "TCP"}]))})
    assert r.ports == [] and chain(r.text, "services") == [] and chain(r.text, "endpoints-check") == []


def test_nodeport_on_every_local_address_and_masqueraded_with_policy_cluster() -> None:
    r = rules.build("t", [svc("web", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])],
                    {"ns/web": eps((["10.1.0.2"], [{"port": 80, "protocol": "TCP"}]))})
    assert "fib daddr type local meta l4proto . th dport vmap { tcp . 30080 : goto ext-ns/web/tcp/80 }" \
        in services_map(r.text)
    assert chain(r.text, "ext-ns/web/tcp/80") == ["jump mark-for-masquerade", "goto svc-ns/web/tcp/80"]


def test_policy_local_uses_only_this_nodes_endpoints_and_drops_without_them() -> None:
    spec: dict[str, Any] = {"type": "NodePort", "externalTrafficPolicy": "Local",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}
    endpoints = {"ns/web": {"subsets": [{"addresses": [{"ip": "10.1.0.2", "nodeName": "n1"},
                                                       {"ip": "10.1.0.3", "nodeName": "n2"}],
                                         "ports": [{"port": 80, "protocol": "TCP"}]}]}}
    r = rules.build("t", [svc("web", **spec)], endpoints, node_name="n1")
    ext = chain(r.text, "ext-ns/web/tcp/80")
    # Traffic starting on this node is treated like Cluster (and masqueraded in the svc chain); external
    # clients keep their source address (no mark) and only reach the local endpoint.
    assert ext == ["fib saddr type local goto svc-ns/web/tcp/80", "goto local-ns/web/tcp/80"]
    local = chain(r.text, "local-ns/web/tcp/80")
    assert local == ["meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 10.1.0.2 . 80 }"]
    assert "numgen random mod 2" in chain(r.text, "svc-ns/web/tcp/80")[-1]  # ClusterIP still uses both
    r3 = rules.build("t", [svc("web", **spec)], endpoints, node_name="n3")
    assert chain(r3.text, "ext-ns/web/tcp/80")[-1] == "drop"


def test_loadbalancer_ingress_and_external_ips_are_served_on_the_service_port() -> None:
    s = svc("lb", type="LoadBalancer", externalIPs=["192.0.2.50"],
            ports=[{"port": 443, "protocol": "TCP", "nodePort": 30443}])
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}
    r = rules.build("t", [s], {"ns/lb": eps((["10.1.0.2"], [{"port": 443, "protocol": "TCP"}]))})
    m = services_map(r.text)
    assert "192.0.2.7 . tcp . 443 : goto ext-ns/lb/tcp/443" in m
    assert "192.0.2.50 . tcp . 443 : goto ext-ns/lb/tcp/443" in m
    assert "tcp . 30443 : goto ext-ns/lb/tcp/443" in m


def test_masquerade_only_for_hairpin_host_and_external_traffic() -> None:
    r = rules.build("t", [svc("web")], {"ns/web": eps((["10.1.0.2"], [{"port": 80, "protocol": "TCP"}]))})
    assert chain(r.text, "svc-ns/web/tcp/80")[0] == "fib saddr type local jump mark-for-masquerade"
    assert chain(r.text, "masquerading")[0] == "ip saddr . ip daddr @hairpin jump mark-for-masquerade"
    assert r.hairpin == {"10.1.0.2"} and rules.hairpin_elements(r.hairpin) == "{ 10.1.0.2 . 10.1.0.2 }"
    assert r.text.count("jump mark-for-masquerade") == 2  # nothing else marks
    assert chain(r.text, "masquerading")[-1] == "masquerade fully-random"


def test_client_ip_affinity_uses_one_timed_set_per_endpoint() -> None:
    s = svc("web", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    r = rules.build("t", [s], {"ns/web": eps((["10.1.0.2", "10.1.0.3"], [{"port": 80, "protocol": "TCP"}]))})
    sets = sorted(set(r.sets) - {"hairpin"})
    assert sets == ["aff60-ns/web/tcp/80__10.1.0.2/80", "aff60-ns/web/tcp/80__10.1.0.3/80"]
    assert "timeout 60s" in r.text
    pick = chain(r.text, "svc-ns/web/tcp/80")
    assert pick[1] == f"ip saddr @{sets[0]} goto ep-ns/web/tcp/80__10.1.0.2/80"
    assert pick[-1].startswith("numgen random mod 2")  # only when the client has no sticky endpoint
    assert chain(r.text, "ep-ns/web/tcp/80__10.1.0.3/80") == [f"update @{sets[1]} {{ ip saddr }}",
                                                             "meta l4proto tcp dnat to 10.1.0.3:80"]
    default = rules.build("t", [svc("web", sessionAffinity="ClientIP")],
                          {"ns/web": eps((["10.1.0.2"], [{"port": 80, "protocol": "TCP"}]))})
    assert "timeout 10800s" in default.text


def test_output_is_deterministic_whatever_the_input_order() -> None:
    services = [svc(f"s{i}", ip=f"10.96.0.{i + 1}") for i in range(5)]
    endpoints = {f"ns/s{i}": eps(([f"10.1.{i}.3", f"10.1.{i}.2"], [{"port": 80, "protocol": "TCP"}]))
                 for i in range(5)}
    a = rules.build("t", services, endpoints)
    b = rules.build("t", list(reversed(services)), dict(reversed(list(endpoints.items()))))
    assert a.text == b.text


def test_malformed_objects_are_skipped_without_breaking_the_ruleset() -> None:
    bad_ports: list[dict[str, Any]] = [{"port": 0}, {"port": "80"}, {"name": "x;y", "port": 81}]
    services = [svc("web"), svc("bad name"), svc("ports", ports=bad_ports)]
    ep = {"subsets": [{"addresses": [{"ip": "10.1.0.2"}, {"ip": "fd00::1"}, {"ip": "x; flush ruleset"}, {}],
                       "ports": [{"port": 80, "protocol": "TCP"}, {"port": 70000}]}]}
    r = rules.build("t", services, {"ns/web": ep})
    assert [sp.id for sp in r.ports] == ["ns/web/tcp/80"]
    assert r.ports[0].endpoints == [rules.Endpoint("10.1.0.2", 80)]
    assert "flush ruleset" not in r.text and "fd00" not in r.text


def test_port_cache_reuses_unchanged_services_and_sees_every_change() -> None:
    def obj(o: dict[str, Any], rv: str) -> dict[str, Any]:
        return {**o, "metadata": {**o.get("metadata", {}), "namespace": "ns", "resourceVersion": rv}}
    web, other = obj(svc("web"), "1"), obj(svc("other", ip="10.96.0.11"), "2")
    endpoints = {"ns/web": obj(eps((["10.1.0.2"], [{"port": 80}])), "3")}
    cache: rules.PortCache = {}
    first = rules.build("t", [web, other], endpoints, cache=cache)
    assert set(cache) == {"ns/web", "ns/other"}
    cached_ports = cache["ns/web"][1]
    assert rules.build("t", [web, other], endpoints, cache=cache).text == first.text
    assert cache["ns/web"][1] is cached_ports  # not parsed again
    changed = {"ns/web": obj(eps((["10.1.0.7"], [{"port": 80}])), "4")}
    r = rules.build("t", [web], changed, cache=cache)
    assert r.text == rules.build("t", [web], changed).text and "10.1.0.7" in r.text
    assert set(cache) == {"ns/web"}  # the deleted Service's entry is gone


def test_bad_table_names_are_refused() -> None:
    for bad in ("", "1abc", "a b", "x" * 65, "t;flush ruleset"):
        with pytest.raises(rules.RulesError):
            rules.build(bad, [], {})


def test_full_transaction_flushes_rules_and_deletes_only_stale_objects() -> None:
    r = rules.build("t", [svc("web")], {"ns/web": eps((["10.1.0.2"], [{"port": 80, "protocol": "TCP"}]))})
    script = nft.transaction(r, set(r.chains) | {"svc-ns/gone/tcp/80"}, {"aff60-old"})
    lines = script.splitlines()
    assert lines[:2] == ["table ip t {}", "flush table ip t"]
    assert "flush set ip t hairpin" in lines and "add element ip t hairpin { 10.1.0.2 . 10.1.0.2 }" in lines
    assert lines[-2:] == ["delete chain ip t svc-ns/gone/tcp/80", "delete set ip t aff60-old"]
    assert "flush set ip t aff" not in script  # affinity entries must survive


def test_incremental_transaction_touches_only_changed_chains() -> None:
    web = svc("web", sessionAffinity="ClientIP")
    other = svc("other", ip="10.96.0.11")
    before = rules.build("t", [web, other], {"ns/web": eps((["10.1.0.2", "10.1.0.3"], [{"port": 80}])),
                                             "ns/other": eps((["10.1.0.9"], [{"port": 80}]))})
    after = rules.build("t", [web, other], {"ns/web": eps((["10.1.0.2", "10.1.0.4"], [{"port": 80}])),
                                            "ns/other": eps((["10.1.0.9"], [{"port": 80}]))})
    script = nft.incremental(before, after)
    assert script is not None
    assert "flush chain ip t svc-ns/web/tcp/80" in script
    lines = script.splitlines()
    new_ep, new_set = "ep-ns/web/tcp/80__10.1.0.4/80", "aff10800-ns/web/tcp/80__10.1.0.4/80"
    assert f"add set ip t {new_set} {{ type ipv4_addr; flags dynamic,timeout; timeout 10800s; }}" in lines
    assert f"add rule ip t {new_ep} meta l4proto tcp dnat to 10.1.0.4:80" in lines
    # The new chain exists before the rule that jumps to it is added.
    assert lines.index(f"add chain ip t {new_ep}") < \
        next(i for i, line in enumerate(lines) if line.startswith("add rule ip t svc-ns/web/tcp/80") and new_ep in line)
    assert script.rstrip().splitlines()[-2:] == ["delete chain ip t ep-ns/web/tcp/80__10.1.0.3/80",
                                                 "delete set ip t aff10800-ns/web/tcp/80__10.1.0.3/80"]
    # Untouched: the other Service, the endpoint that stayed, the services map, the hooks.
    for name in ("svc-ns/other/tcp/80", "ep-ns/web/tcp/80__10.1.0.2/80", "services", "nat-prerouting"):
        assert f" {name} " not in script and not script.endswith(f" {name}\n"), name
    assert "delete element ip t hairpin { 10.1.0.3 . 10.1.0.3 }" in script
    assert "add element ip t hairpin { 10.1.0.4 . 10.1.0.4 }" in script
    assert nft.incremental(after, after) is None


def test_udp_targets_cover_cluster_ip_external_ips_and_node_ports() -> None:
    s = svc("dns", type="NodePort", externalIPs=["192.0.2.9"],
            ports=[{"port": 53, "protocol": "UDP", "nodePort": 30053}, {"name": "t", "port": 53, "protocol": "TCP"}])
    ports = rules.service_ports([s], {"ns/dns": eps((["10.1.0.2"], [{"port": 53, "protocol": "UDP"}]))})
    assert rules.udp_targets(ports) == {("10.96.0.10", 53, "10.1.0.2"), ("192.0.2.9", 53, "10.1.0.2"),
                                        ("nodeport", 30053, "10.1.0.2")}
