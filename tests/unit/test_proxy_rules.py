"""The ruleset generator: Services + EndpointSlices -> nftables text (pure; no kernel involved)."""
from __future__ import annotations

import re
from typing import Any

import pytest

from proxy import nft, rules
from proxy.rules import NO_ENDPOINT_IPS, NO_ENDPOINT_NODEPORTS, SERVICE_IPS, SERVICE_NODEPORTS


def svc(name: str, ip: str = "10.96.0.10", ports: list[dict[str, Any]] | None = None, ns: str = "ns",
        **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": ports or [{"port": 80, "protocol": "TCP"}], **spec}}


def eps(service: str, *groups: tuple[list[str], list[dict[str, Any]]], node: str = "", ns: str = "ns",
        **conditions: bool) -> list[dict[str, Any]]:
    """One EndpointSlice per (addresses, ports) group, labelled for `service`."""
    return [{"metadata": {"namespace": ns, "name": f"{service}-{i}",
                          "labels": {"kubernetes.io/service-name": service}},
             "addressType": "IPv4", "ports": ports,
             "endpoints": [{"addresses": [ip], "conditions": {"ready": True, **conditions},
                            **({"nodeName": node} if node else {})} for ip in ips]}
            for i, (ips, ports) in enumerate(groups)]


def chain(text: str, name: str) -> list[str]:
    m = re.search(r"^  chain " + re.escape(name) + r" \{\n(.*?)^  \}", text, re.S | re.M)
    assert m, f"chain {name} not in ruleset"
    return [line.strip() for line in m.group(1).splitlines()]


def targets(text: str, name: str) -> list[str]:
    """The endpoints a chain's DNAT cascade picks from, in order; asserting that each gets an equal share:
    rule i of n takes the packet with probability 1/(n - i), the last one whatever is left."""
    picks = [r for r in chain(text, name) if "dnat" in r]
    for i, rule in enumerate(picks[:-1]):
        assert f"numgen random mod {len(picks) - i} 0 dnat" in rule, rule
    assert "numgen" not in picks[-1]
    return [r.rsplit(" ", 1)[1] for r in picks]


def test_clusterip_spreads_over_every_ready_endpoint_with_equal_weight() -> None:
    r = rules.build("t", [svc("web", ports=[{"port": 80, "protocol": "TCP", "targetPort": 8080}])],
                    eps("web", (["10.1.0.3", "10.1.0.2", "10.1.0.4"], [{"port": 8080, "protocol": "TCP"}])))
    assert r.elements[SERVICE_IPS] == {"10.96.0.10 . tcp . 80": "goto svc-ns/web/tcp/80"}
    assert "elements = { 10.96.0.10 . tcp . 80 : goto svc-ns/web/tcp/80 }" in r.text
    assert chain(r.text, "svc-ns/web/tcp/80")[1:] == ["meta l4proto tcp numgen random mod 3 0 dnat ip to 10.1.0.2:8080",
                                                     "meta l4proto tcp numgen random mod 2 0 dnat ip to 10.1.0.3:8080",
                                                     "meta l4proto tcp dnat ip to 10.1.0.4:8080"]
    assert "{" not in r.chains["svc-ns/web/tcp/80"]  # no anonymous map: nft loads those in quadratic time
    assert not any(c.startswith("ep-") for c in r.chains)  # one chain per Service port, not per endpoint
    # The lookups never change: a Service coming or going is a map element, not a rule rewrite.
    assert chain(r.text, "services") == ["ip daddr . meta l4proto . th dport vmap @service-ips",
                                         "fib daddr type local meta l4proto . th dport vmap @service-nodeports"]


def test_slices_of_one_service_are_merged_and_other_services_slices_ignored() -> None:
    port = [{"port": 80, "protocol": "TCP"}]
    slices = eps("web", (["10.1.0.2"], port), (["10.1.0.3", "10.1.0.2"], port)) + eps("other", (["10.1.0.9"], port))
    r = rules.build("t", [svc("web")], slices)
    assert targets(r.text, "svc-ns/web/tcp/80") == ["10.1.0.2:80", "10.1.0.3:80"]  # 10.1.0.2 once
    assert "10.1.0.9" not in r.text
    # The same name in another namespace is another Service.
    assert "10.1.0.5" not in rules.build("t", [svc("web")], eps("web", (["10.1.0.5"], port), ns="elsewhere")).text


def test_not_ready_endpoints_get_no_traffic_and_terminating_ones_only_as_a_last_resort() -> None:
    port = [{"port": 80, "protocol": "TCP"}]
    ready = eps("web", (["10.1.0.2"], port))[0]
    not_ready = eps("web", (["10.1.0.9"], port), ready=False)[0]
    draining = eps("web", (["10.1.0.7"], port), ready=False, serving=True, terminating=True)[0]
    not_ready["metadata"]["name"], draining["metadata"]["name"] = "web-nr", "web-dr"
    r = rules.build("t", [svc("web")], [ready, not_ready, draining])
    assert targets(r.text, "svc-ns/web/tcp/80") == ["10.1.0.2:80"] and "10.1.0.9" not in r.text
    assert "10.1.0.7" not in r.text
    # No ready endpoint left: the serving-while-terminating one keeps connections going (kube-proxy does this).
    r = rules.build("t", [svc("web")], [not_ready, draining])
    assert targets(r.text, "svc-ns/web/tcp/80") == ["10.1.0.7:80"]
    # Absent conditions mean ready.
    bare = eps("web", (["10.1.0.4"], port))[0]
    del bare["endpoints"][0]["conditions"]
    assert targets(rules.build("t", [svc("web")], [bare]).text, "svc-ns/web/tcp/80") == ["10.1.0.4:80"]


def test_named_target_port_resolved_per_endpoint_slice() -> None:
    # Two pod versions serve port "http" on different numbers: two slices with different port numbers.
    r = rules.build("t", [svc("web", ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}])],
                    eps("web", (["10.1.0.2"], [{"name": "http", "port": 8080, "protocol": "TCP"}]),
                        (["10.1.0.3"], [{"name": "http", "port": 9090, "protocol": "TCP"}])))
    assert targets(r.text, "svc-ns/web/tcp/http") == ["10.1.0.2:8080", "10.1.0.3:9090"]


def test_ports_are_matched_by_name_and_protocol() -> None:
    r = rules.build("t", [svc("dns", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])],
                    eps("dns", (["10.1.0.2"], [{"name": "dns", "port": 5353, "protocol": "UDP"},
                                               {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}])))
    assert "meta l4proto udp dnat ip to 10.1.0.2:5353" in chain(r.text, "svc-ns/dns/udp/dns")
    assert "meta l4proto tcp dnat ip to 10.1.0.2:5354" in chain(r.text, "svc-ns/dns/tcp/dns-tcp")
    assert set(r.elements[SERVICE_IPS]) == {"10.96.0.10 . udp . 53", "10.96.0.10 . tcp . 53"}


def test_no_ready_endpoints_rejects_instead_of_dnat() -> None:
    r = rules.build("t", [svc("empty", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])],
                    eps("empty", (["10.1.0.2"], [{"port": 80, "protocol": "TCP"}]), ready=False))
    assert r.elements[NO_ENDPOINT_IPS] == {"10.96.0.10 . tcp . 80": "goto reject-no-endpoints"}
    assert r.elements[NO_ENDPOINT_NODEPORTS] == {"tcp . 30080": "goto reject-no-endpoints"}
    assert chain(r.text, "endpoints-check") == [
        "ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        "fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports"]
    assert chain(r.text, "reject-no-endpoints") == ["meta l4proto tcp reject with tcp reset", "reject"]
    assert "svc-ns/empty" not in r.text and r.elements[SERVICE_IPS] == {} and r.elements[SERVICE_NODEPORTS] == {}


def test_headless_externalname_and_unallocated_services_get_no_rules() -> None:
    r = rules.build("t", [svc("headless", ip="None"), svc("ext", ip="", type="ExternalName", externalName="x.org"),
                          svc("pending", ip="")],
                    eps("headless", (["10.1.0.2"], [{"port": 80, "protocol": "TCP"}])))
    assert r.ports == [] and all(not e for e in r.elements.values()) and r.chains == rules.base_chains()


def test_nodeport_on_every_local_address_and_masqueraded_with_policy_cluster() -> None:
    r = rules.build("t", [svc("web", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])],
                    eps("web", (["10.1.0.2"], [{"port": 80, "protocol": "TCP"}])))
    assert r.elements[SERVICE_NODEPORTS] == {"tcp . 30080": "goto ext-ns/web/tcp/80"}
    assert chain(r.text, "ext-ns/web/tcp/80") == ["jump mark-for-masquerade", "goto svc-ns/web/tcp/80"]


def test_policy_local_uses_only_this_nodes_endpoints_and_drops_without_them() -> None:
    spec: dict[str, Any] = {"type": "NodePort", "externalTrafficPolicy": "Local",
                            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}
    port = [{"port": 80, "protocol": "TCP"}]
    slices = eps("web", (["10.1.0.2"], port), node="n1") + eps("web", (["10.1.0.3"], port), node="n2")
    slices[1]["metadata"]["name"] = "web-n2"
    r = rules.build("t", [svc("web", **spec)], slices, node_name="n1")
    ext = chain(r.text, "ext-ns/web/tcp/80")
    # Traffic starting on this node is treated like Cluster (and masqueraded in the svc chain); external
    # clients keep their source address (no mark) and only reach the local endpoint.
    assert ext == ["fib saddr type local goto svc-ns/web/tcp/80", "goto local-ns/web/tcp/80"]
    local = chain(r.text, "local-ns/web/tcp/80")
    assert local == ["meta l4proto tcp dnat ip to 10.1.0.2:80"]
    assert targets(r.text, "svc-ns/web/tcp/80") == ["10.1.0.2:80", "10.1.0.3:80"]  # ClusterIP still uses both
    r3 = rules.build("t", [svc("web", **spec)], slices, node_name="n3")
    assert chain(r3.text, "ext-ns/web/tcp/80")[-1] == "drop"
    # This node's endpoint terminating while n2's is ready: external clients drain to the local one.
    draining = eps("web", (["10.1.0.2"], port), node="n1", ready=False, serving=True, terminating=True)
    r = rules.build("t", [svc("web", **spec)], draining + slices[1:], node_name="n1")
    assert chain(r.text, "local-ns/web/tcp/80") == ["meta l4proto tcp dnat ip to 10.1.0.2:80"]
    assert targets(r.text, "svc-ns/web/tcp/80") == ["10.1.0.3:80"]


def test_loadbalancer_ingress_and_external_ips_are_served_on_the_service_port() -> None:
    s = svc("lb", type="LoadBalancer", externalIPs=["192.0.2.50"],
            ports=[{"port": 443, "protocol": "TCP", "nodePort": 30443}])
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}
    r = rules.build("t", [s], eps("lb", (["10.1.0.2"], [{"port": 443, "protocol": "TCP"}])))
    assert r.elements[SERVICE_IPS] == {"10.96.0.10 . tcp . 443": "goto svc-ns/lb/tcp/443",
                                       "192.0.2.7 . tcp . 443": "goto ext-ns/lb/tcp/443",
                                       "192.0.2.50 . tcp . 443": "goto ext-ns/lb/tcp/443"}
    assert r.elements[SERVICE_NODEPORTS] == {"tcp . 30443": "goto ext-ns/lb/tcp/443"}


def test_masquerade_only_for_hairpin_host_and_external_traffic() -> None:
    r = rules.build("t", [svc("web")], eps("web", (["10.1.0.2"], [{"port": 80, "protocol": "TCP"}])))
    assert chain(r.text, "svc-ns/web/tcp/80")[0] == "fib saddr type local jump mark-for-masquerade"
    assert chain(r.text, "masquerading")[0] == "ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade"
    assert r.hairpin == {"10.1.0.2"} and rules.hairpin_elements(r.hairpin) == "{ 10.1.0.2 . 10.1.0.2 }"
    assert r.text.count("jump mark-for-masquerade") == 2  # nothing else marks
    assert chain(r.text, "masquerading")[-1] == "masquerade fully-random"


def test_client_ip_affinity_uses_one_timed_set_per_endpoint() -> None:
    s = svc("web", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    r = rules.build("t", [s], eps("web", (["10.1.0.2", "10.1.0.3"], [{"port": 80, "protocol": "TCP"}])))
    sets = sorted(set(r.sets) - {"hairpin"})
    assert sets == ["aff60-ns/web/tcp/80__10.1.0.2/80", "aff60-ns/web/tcp/80__10.1.0.3/80"]
    assert "timeout 60s" in r.text
    pick = chain(r.text, "svc-ns/web/tcp/80")
    assert pick[1] == f"ip saddr @{sets[0]} goto ep-ns/web/tcp/80__10.1.0.2/80"
    # only when the client has no sticky endpoint: one of the two at random
    assert pick[3:] == ["numgen random mod 2 0 goto ep-ns/web/tcp/80__10.1.0.2/80", "goto ep-ns/web/tcp/80__10.1.0.3/80"]
    assert chain(r.text, "ep-ns/web/tcp/80__10.1.0.3/80") == [f"update @{sets[1]} {{ ip saddr }}",
                                                             "meta l4proto tcp dnat to 10.1.0.3:80"]
    default = rules.build("t", [svc("web", sessionAffinity="ClientIP")],
                          eps("web", (["10.1.0.2"], [{"port": 80, "protocol": "TCP"}])))
    assert "timeout 10800s" in default.text


def test_output_is_deterministic_whatever_the_input_order() -> None:
    services = [svc(f"s{i}", ip=f"10.96.0.{i + 1}") for i in range(5)]
    slices = [s for i in range(5) for s in eps(f"s{i}", ([f"10.1.{i}.3", f"10.1.{i}.2"],
                                                         [{"port": 80, "protocol": "TCP"}]))]
    a = rules.build("t", services, slices)
    b = rules.build("t", list(reversed(services)), list(reversed(slices)))
    assert a.text == b.text


def test_malformed_objects_are_skipped_without_breaking_the_ruleset() -> None:
    bad_ports: list[dict[str, Any]] = [{"port": 0}, {"port": "80"}, {"name": "x;y", "port": 81}]
    services = [svc("web"), svc("bad name"), svc("ports", ports=bad_ports)]
    [good] = eps("web", (["10.1.0.2", "x; flush ruleset"], [{"port": 80, "protocol": "TCP"}, {"port": 70000}]))
    good["endpoints"] += [{"addresses": []}, {}]
    v6 = {**eps("web", (["fd00::1"], [{"port": 80, "protocol": "TCP"}]))[0], "addressType": "IPv6"}
    v6["metadata"] = {**v6["metadata"], "name": "web-v6"}
    r = rules.build("t", services, [good, v6, {"metadata": {"name": "unlabelled"}}])
    assert [sp.id for sp in r.ports] == ["ns/web/tcp/80"]
    assert r.ports[0].endpoints == [rules.Endpoint("10.1.0.2", 80)]
    assert "flush ruleset" not in r.text and "fd00" not in r.text


def test_bad_table_names_are_refused() -> None:
    for bad in ("", "1abc", "a b", "x" * 65, "t;flush ruleset"):
        with pytest.raises(rules.RulesError):
            rules.build(bad, [], [])


def test_full_transaction_flushes_rules_and_maps_and_deletes_only_stale_objects() -> None:
    r = rules.build("t", [svc("web")], eps("web", (["10.1.0.2"], [{"port": 80, "protocol": "TCP"}])))
    script = nft.transaction(r, set(r.chains) | {"svc-ns/gone/tcp/80"}, {"aff60-old"})
    lines = script.splitlines()
    assert lines[:2] == ["table ip t {}", "flush table ip t"]
    assert "flush set ip t hairpin" in lines and "add element ip t hairpin { 10.1.0.2 . 10.1.0.2 }" in lines
    assert "flush map ip t service-ips" in lines and "flush map ip t no-endpoint-nodeports" in lines
    assert "add element ip t service-ips { 10.96.0.10 . tcp . 80 : goto svc-ns/web/tcp/80 }" in lines
    assert lines[-2:] == ["delete chain ip t svc-ns/gone/tcp/80", "delete set ip t aff60-old"]
    assert "flush set ip t aff" not in script  # affinity entries must survive


def test_incremental_transaction_touches_only_changed_chains_and_elements() -> None:
    web = svc("web", sessionAffinity="ClientIP")
    other = svc("other", ip="10.96.0.11")
    before = rules.build("t", [web, other], eps("web", (["10.1.0.2", "10.1.0.3"], [{"port": 80}]))
                         + eps("other", (["10.1.0.9"], [{"port": 80}])))
    after = rules.build("t", [web, other], eps("web", (["10.1.0.2", "10.1.0.4"], [{"port": 80}]))
                        + eps("other", (["10.1.0.9"], [{"port": 80}])))
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
    # Untouched: the other Service, the endpoint that stayed, the service maps, the hooks.
    for name in ("svc-ns/other/tcp/80", "ep-ns/web/tcp/80__10.1.0.2/80", "services", "nat-prerouting",
                 "service-ips"):
        assert f" {name} " not in script and not script.endswith(f" {name}\n"), name
    assert "delete element ip t hairpin { 10.1.0.3 . 10.1.0.3 }" in script
    assert "add element ip t hairpin { 10.1.0.4 . 10.1.0.4 }" in script
    assert nft.incremental(after, after) is None


def test_incremental_moves_map_elements_before_deleting_chains() -> None:
    web = svc("web", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])
    served = rules.build("t", [web], eps("web", (["10.1.0.2"], [{"port": 80}])))
    empty = rules.build("t", [web], [])
    lines = (nft.incremental(served, empty) or "").splitlines()
    assert lines == ["delete element ip t service-ips { 10.96.0.10 . tcp . 80 }",
                     "delete element ip t service-nodeports { tcp . 30080 }",
                     "add element ip t no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-no-endpoints }",
                     "add element ip t no-endpoint-nodeports { tcp . 30080 : goto reject-no-endpoints }",
                     "delete element ip t hairpin { 10.1.0.2 . 10.1.0.2 }",
                     # flushed first: the ext chain's rule jumps to the svc chain
                     "flush chain ip t ext-ns/web/tcp/80", "flush chain ip t svc-ns/web/tcp/80",
                     "delete chain ip t ext-ns/web/tcp/80", "delete chain ip t svc-ns/web/tcp/80"]
    # A key whose verdict changes (the address moved from a ClusterIP to an external IP) is deleted and
    # added again in one transaction.
    plain = rules.build("t", [svc("web", ip="192.0.2.1")], eps("web", (["10.1.0.2"], [{"port": 80}])))
    ext = rules.build("t", [svc("web", ip="10.96.0.10", externalIPs=["192.0.2.1"])],
                      eps("web", (["10.1.0.2"], [{"port": 80}])))
    script = nft.incremental(plain, ext) or ""
    assert "delete element ip t service-ips { 192.0.2.1 . tcp . 80 }" in script
    assert script.index("delete element ip t service-ips") < \
        script.index("add element ip t service-ips { 10.96.0.10 . tcp . 80 : goto svc-ns/web/tcp/80, "
                     "192.0.2.1 . tcp . 80 : goto ext-ns/web/tcp/80 }")


def test_udp_targets_cover_cluster_ip_external_ips_and_node_ports() -> None:
    s = svc("dns", type="NodePort", externalIPs=["192.0.2.9"],
            ports=[{"port": 53, "protocol": "UDP", "nodePort": 30053}, {"name": "t", "port": 53, "protocol": "TCP"}])
    ports = rules.service_ports(s, eps("dns", (["10.1.0.2"], [{"port": 53, "protocol": "UDP"}])))
    assert rules.udp_targets(ports) == {("10.96.0.10", 53, "10.1.0.2"), ("192.0.2.9", 53, "10.1.0.2"),
                                        ("nodeport", 30053, "10.1.0.2")}


def test_an_address_listed_twice_counts_once_whatever_the_slice_order() -> None:
    port = [{"port": 80, "protocol": "TCP"}]
    here, there = eps("web", (["10.1.0.2"], port), node="n1"), eps("web", (["10.1.0.2"], port), node="n2")
    there[0]["metadata"]["name"] = "web-other"
    a = rules.build("t", [svc("web")], here + there)
    b = rules.build("t", [svc("web")], there + here)
    assert a.ports[0].endpoints == b.ports[0].endpoints == [rules.Endpoint("10.1.0.2", 80, "n1")]
    assert a.text == b.text


def test_affinity_with_a_local_terminating_fallback_has_chains_for_every_endpoint_it_names() -> None:
    port = [{"port": 80, "protocol": "TCP"}]
    elsewhere = eps("web", (["10.1.0.3"], port), node="n2")
    draining = eps("web", (["10.1.0.2"], port), node="n1", ready=False, serving=True, terminating=True)
    draining[0]["metadata"]["name"] = "web-n1"
    s = svc("web", type="NodePort", externalTrafficPolicy="Local", sessionAffinity="ClientIP",
            ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])
    r = rules.build("t", [s], elsewhere + draining, node_name="n1")
    named = {m for rule in chain(r.text, "local-ns/web/tcp/80") for m in re.findall(r"(?:goto |@)([^ ,}]+)", rule)}
    assert "ep-ns/web/tcp/80__10.1.0.2/80" in named
    assert named <= set(r.chains) | set(r.sets), named - set(r.chains) - set(r.sets)


def test_loopback_is_closed_to_other_interfaces_unless_dnated() -> None:
    """CVE-2020-8558: route_localnet must not expose 127.0.0.1-only host services (tests/security/test_localnet.py
    replays the attack); the rule is static, so every table, however synced, has it."""
    r = rules.build("t", [], [])
    assert chain(r.text, "filter-input")[:2] == [
        "type filter hook input priority filter; policy accept;",
        'iifname != "lo" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop']
    assert "127.0.0.0/8" not in "".join(chain(r.text, "filter-forward") + chain(r.text, "filter-output"))
