"""Partial syncs against the real kernel: after any sequence of changes, the table a proxy built change by change
is the table a full sync writes for the same objects, and a full sync over it changes nothing.

Random Services (types, policies, affinity, named ports, load balancer status) and EndpointSlices (conditions,
nodes, several slices per Service) are mutated step by step; no packet is sent to any of these addresses.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
from typing import Any, Iterator

import pytest

from proxy import nft
from proxy.proxier import Proxier
from tests.util import unique

pytestmark = pytest.mark.root

NODE = "this-node"


def random_service(rng: random.Random, i: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"clusterIP": f"172.30.250.{i + 1}",
                            "type": rng.choice(["ClusterIP", "NodePort", "LoadBalancer"]),
                            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 31000 + i}]}
    if rng.random() < 0.4:
        spec["ports"].append({"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 31100 + i})
    if spec["type"] == "ClusterIP":
        for p in spec["ports"]:
            del p["nodePort"]
    elif rng.random() < 0.5:
        spec["externalTrafficPolicy"] = "Local"
    if rng.random() < 0.3:
        spec["externalIPs"] = [f"192.0.2.{100 + i}"]
    if rng.random() < 0.3:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": rng.choice([60, 120])}}
    svc = {"metadata": {"namespace": "ns", "name": f"s{i}", "resourceVersion": str(rng.random())}, "spec": spec}
    if spec["type"] == "LoadBalancer" and rng.random() < 0.7:
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": f"198.51.100.{i + 1}"}]}}
    return svc


def random_slices(rng: random.Random, i: int) -> list[dict[str, Any]]:
    out = []
    for n in range(rng.randint(0, 2)):
        endpoints = []
        for _ in range(rng.randint(0, 3)):
            ready = rng.random() < 0.7
            endpoints.append({"addresses": [f"10.250.{i}.{rng.randint(1, 6)}"], "nodeName": rng.choice([NODE, "other"]),
                              "conditions": {"ready": ready, "serving": ready or rng.random() < 0.5,
                                             "terminating": not ready and rng.random() < 0.5}})
        out.append({"metadata": {"namespace": "ns", "name": f"s{i}-{n}",
                                 "labels": {"kubernetes.io/service-name": f"s{i}"}},
                    "addressType": "IPv4", "endpoints": endpoints,
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                              {"name": "dns", "port": 5353, "protocol": "UDP"}]})
    return out


def normalized(table: str) -> dict[str, Any]:
    """The table's chains (rules in order), sets and maps (elements sorted), without handles or the table name."""
    out = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True, check=True)
    found: dict[str, Any] = {"chain": {}, "rule": {}, "set": {}, "map": {}}
    for item in json.loads(out.stdout)["nftables"]:
        kind, body = next(iter(item.items()))
        if kind not in found:
            continue
        body = {k: v for k, v in body.items() if k not in ("handle", "table", "family")}
        if kind == "rule":
            found["rule"].setdefault(body["chain"], []).append(json.dumps(body["expr"], sort_keys=True))
        else:
            if "elem" in body:
                body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
            found[kind][body["name"]] = body
    return found


@pytest.fixture
def tables() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    a, b = unique("pkube-t"), unique("pkube-t")
    try:
        yield a, b
    finally:
        nft.delete_table(a)
        nft.delete_table(b)


def test_partial_syncs_leave_exactly_what_a_full_sync_writes(tables: tuple[str, str]) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    incremental, reference = tables
    objects: dict[int, tuple[dict[str, Any] | None, list[dict[str, Any]]]] = {
        i: (random_service(rng, i), random_slices(rng, i)) for i in range(6)}

    def current() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return ([svc for svc, _ in objects.values() if svc is not None],
                [s for svc, slices in objects.values() if svc is not None for s in slices])

    proxier = Proxier(incremental, NODE)
    proxier.sync_full(*current())
    for step in range(25):
        changed = rng.sample(sorted(objects), rng.randint(1, 3))
        for i in changed:
            svc, slices = objects[i]
            what = rng.random()
            if what < 0.15:
                objects[i] = (None, [])  # deleted
            elif what < 0.5 or svc is None:
                objects[i] = (random_service(rng, i), random_slices(rng, i))
            else:
                objects[i] = (svc, random_slices(rng, i))
        proxier.sync_partial({f"ns/s{i}": objects[i] for i in changed})
        Proxier(reference, NODE).sync_full(*current())
        assert normalized(incremental) == normalized(reference), f"seed {seed}, step {step}"
    # A full reconcile (what a restarted proxy does first) finds nothing to change.
    before = nft.list_table(incremental)
    Proxier(incremental, NODE).sync_full(*current())
    assert nft.list_table(incremental) == before, f"seed {seed}"
