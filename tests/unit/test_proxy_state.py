"""Partial syncs (proxy/state.py): only the changed Services' objects go into the transaction."""
from __future__ import annotations

from typing import Any

from proxy import nft, rules
from proxy.state import TableState, stale_udp


def frag(name: str, ip: str, endpoints: list[str], proto: str = "TCP") -> rules.Fragment:
    svc = {"metadata": {"namespace": "ns", "name": name},
           "spec": {"clusterIP": ip, "ports": [{"port": 80, "protocol": proto}]}}
    slices: list[dict[str, Any]] = [{
        "metadata": {"namespace": "ns", "name": f"{name}-a", "labels": {"kubernetes.io/service-name": name}},
        "ports": [{"port": 8080, "protocol": proto}],
        "endpoints": [{"addresses": [e], "conditions": {"ready": True}} for e in endpoints]}]
    return rules.fragment(rules.service_ports(svc, slices))


def test_partial_transaction_covers_only_the_changed_service() -> None:
    state = TableState("t")
    state.replace({f"ns/s{i}": frag(f"s{i}", f"10.96.0.{i + 1}", [f"10.1.{i}.2"]) for i in range(50)})
    before, after = state.partial({"ns/s7": frag("s7", "10.96.0.8", ["10.1.7.3"])})
    script = nft.incremental(before, after) or ""
    assert "flush chain ip t svc-ns/s7/tcp/80" in script and "10.1.7.3:8080" in script
    assert "s6" not in script and "s8" not in script and "service-ips" not in script
    assert "delete element ip t hairpin { 10.1.7.2 . 10.1.7.2 }" in script
    state.update({"ns/s7": frag("s7", "10.96.0.8", ["10.1.7.3"])})
    # After the update, the state is what a full sync of the same objects would produce.
    fresh = TableState("t")
    fresh.replace(state.fragments)
    assert state.whole().text == fresh.whole().text and "10.1.7.2" not in state.whole().text


def test_shared_endpoint_stays_in_the_hairpin_set_while_any_service_uses_it() -> None:
    state = TableState("t")
    state.replace({"ns/a": frag("a", "10.96.0.1", ["10.1.0.2"]), "ns/b": frag("b", "10.96.0.2", ["10.1.0.2"])})
    before, after = state.partial({"ns/a": None})  # Service a deleted
    script = nft.incremental(before, after) or ""
    assert "delete element ip t service-ips { 10.96.0.1 . tcp . 80 }" in script
    assert "hairpin" not in script  # b still has 10.1.0.2
    state.update({"ns/a": None})
    before, after = state.partial({"ns/b": None})
    assert "delete element ip t hairpin { 10.1.0.2 . 10.1.0.2 }" in (nft.incremental(before, after) or "")


def test_new_service_and_unchanged_service() -> None:
    state = TableState("t")
    state.replace({})
    before, after = state.partial({"ns/a": frag("a", "10.96.0.1", ["10.1.0.2"])})
    lines = (nft.incremental(before, after) or "").splitlines()
    assert lines[0] == "add chain ip t svc-ns/a/tcp/80"
    assert "add element ip t service-ips { 10.96.0.1 . tcp . 80 : goto svc-ns/a/tcp/80 }" in lines
    state.update({"ns/a": frag("a", "10.96.0.1", ["10.1.0.2"])})
    assert nft.incremental(*state.partial({"ns/a": frag("a", "10.96.0.1", ["10.1.0.2"])})) is None


def test_stale_udp_flows_of_a_changed_service() -> None:
    state = TableState("t")
    state.replace({"ns/dns": frag("dns", "10.96.0.10", ["10.1.0.2", "10.1.0.3"], "UDP")})
    before, after = state.partial({"ns/dns": frag("dns", "10.96.0.10", ["10.1.0.3"], "UDP")})
    assert stale_udp(before, after) == {("10.96.0.10", 80, "10.1.0.2")}
