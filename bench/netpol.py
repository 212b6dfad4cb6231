"""NetworkPolicy benchmark: the node's ruleset for a big cluster (one JSON document).

    .venv/bin/python -m bench.netpol [--pods 5000] [--nodes 50] [--namespaces 20] [--rounds 5]

Needs root (nftables). No apiserver: the objects are made up (pods spread over --nodes nodes; per namespace a
default deny, an allow from role=frontend on port 8080, an allow from the namespaces of the same team and an
egress rule with an ipBlock and except) and proxy/netpol_rules.py turns them into this node's table, which is
applied with the proxy's libnftables transactions inside a network namespace made for the run (deleted after;
no packet is sent). Measures (medians of --rounds): building the ruleset, the full transaction into an empty
table and over an existing one, and the incremental transaction for one remote pod's new address and for one
new policy (size in nft commands and time).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

from bench.common import ROOT, parse_flags, report
from pklib.api.networkpolicy import apply_defaults
from proxy import netpol_rules as r
from proxy import nft
from tests.util import unique


def _pod(ns: str, i: int, node: str, role: str) -> dict[str, Any]:
    ip = f"10.{64 + i // 65000}.{(i // 250) % 256}.{i % 250 + 2}"
    return {"metadata": {"namespace": ns, "name": f"p{i}", "labels": {"role": role, "app": f"app{i % 7}"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def _policies(ns: str, team: str) -> list[dict[str, Any]]:
    bodies = [
        {"metadata": {"namespace": ns, "name": "default-deny"}, "spec": {"podSelector": {}}},
        {"metadata": {"namespace": ns, "name": "from-frontend"}, "spec": {
            "podSelector": {"matchLabels": {"role": "backend"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}], "ports": [{"port": "http"}]}]}},
        {"metadata": {"namespace": ns, "name": "same-team"}, "spec": {
            "podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}]}]}},
        {"metadata": {"namespace": ns, "name": "egress"}, "spec": {
            "podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.200.0.0/16"]}}],
                        "ports": [{"port": 8080}, {"protocol": "UDP", "port": 53}]}]}},
    ]
    for b in bodies:
        apply_defaults(b)
    return bodies


def _cluster(pods: int, nodes: int, namespaces: int) -> r.Cluster:
    names = [f"ns{i}" for i in range(namespaces)]
    items = [_pod(names[i % namespaces], i, f"node{i * nodes // pods}", ("frontend", "backend", "db")[i % 3])
             for i in range(pods)]
    ns_objs = {n: {"metadata": {"name": n, "labels": {"team": f"t{i % 4}"}}} for i, n in enumerate(names)}
    policies = [p for i, n in enumerate(names) for p in _policies(n, f"t{i % 4}")]
    return r.Cluster("node0", items, ns_objs, policies)


def _median(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 2)


def inner(pods: int, nodes: int, namespaces: int, rounds: int) -> dict[str, Any]:
    table = "bench-netpol"
    cluster = _cluster(pods, nodes, namespaces)
    ruleset = r.build(table, cluster)
    result: dict[str, Any] = {
        "pods": pods, "nodes": nodes, "namespaces": namespaces, "policies": len(cluster.policies),
        "local_pods": len(cluster.local_pods()), "chains": len(ruleset.chains), "sets": len(ruleset.sets),
        "set_elements": sum(len(e) for _, e in ruleset.sets.values()),
        "build_ms": _median(lambda: r.build(table, cluster), rounds)}

    def full_into_empty() -> None:
        nft.delete_table(table)
        nft.apply_script(r.full(ruleset, set(), set()))
    result["full_into_empty_ms"] = _median(full_into_empty, rounds)
    chains, sets = nft.current_objects(table)
    result["full_rewrite_ms"] = _median(lambda: nft.apply_script(r.full(ruleset, chains, sets)), rounds)

    moved = next(p for p in cluster.pods if p["spec"]["nodeName"] != "node0" and p["metadata"]["namespace"] == "ns0")
    moved["status"] = {**moved["status"], "podIP": "10.250.0.9", "podIPs": [{"ip": "10.250.0.9"}]}
    cluster = r.Cluster(cluster.node, cluster.pods, cluster.namespaces, cluster.policies)  # a new snapshot
    after = r.build(table, cluster)
    script = r.incremental(ruleset, after) or ""
    result["pod_address_change"] = {"commands": len(script.splitlines()),
                                    "apply_ms": _flip(ruleset, after, rounds)}
    extra = _policies("ns1", "t1")[1]
    extra["metadata"]["name"] = "another"
    grown = r.build(table, r.Cluster(cluster.node, cluster.pods, cluster.namespaces, [*cluster.policies, extra]))
    script = r.incremental(after, grown) or ""
    result["new_policy"] = {"commands": len(script.splitlines()),
                            "apply_ms": _flip(after, grown, rounds)}
    nft.delete_table(table)
    return result


def _flip(a: r.Ruleset, b: r.Ruleset, rounds: int) -> float:
    """Median ms of the a -> b transaction; b -> a (untimed) puts the table back for the next round."""
    forward, back = r.incremental(a, b) or "", r.incremental(b, a) or ""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        nft.apply_script(forward)
        times.append(time.perf_counter() - t)
        nft.apply_script(back)
    return round(statistics.median(times) * 1000, 2)


def main() -> int:
    flags = parse_flags(__doc__, pods=5000, nodes=50, namespaces=20, rounds=5, inner=0)
    if flags.inner:
        print(json.dumps(inner(flags.pods, flags.nodes, flags.namespaces, flags.rounds)))
        return 0
    if os.geteuid() != 0:
        print("bench.netpol: needs root (nftables in a network namespace)", file=sys.stderr)
        return 1
    ns = unique("bnp")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "bench.netpol", "--inner", "1",
                              "--pods", str(flags.pods), "--nodes", str(flags.nodes), "--namespaces",
                              str(flags.namespaces), "--rounds", str(flags.rounds)],
                             cwd=ROOT, capture_output=True, text=True, timeout=900, check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return report(json.loads(out.stdout))


if __name__ == "__main__":
    sys.exit(main())
