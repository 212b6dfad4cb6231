"""networking.k8s.io/v1 NetworkPolicy against the real apiserver: Kubernetes' defaults (policyTypes, TCP), validation
that names the field (422), the short name in discovery and the Table columns (`kubectl get netpol`)."""
from __future__ import annotations

from typing import Any

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import NETWORKPOLICIES

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def ingress_from(*peers: dict[str, Any], ports: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    rule: dict[str, Any] = {"from": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return [rule]


@pytest.mark.parametrize("spec, field, message", [
    ({"podSelector": {"matchLabels": {"bad key!": "x"}}}, "spec.podSelector.matchLabels", "name part must consist"),
    ({"ingress": ingress_from(ports=[{"protocol": "ICMP"}])}, "spec.ingress[0].ports[0].protocol",
     'Unsupported value: "ICMP"'),
    ({"ingress": ingress_from(ports=[{"port": 70000}])}, "spec.ingress[0].ports[0].port",
     "must be between 1 and 65535"),
    ({"ingress": ingress_from(ports=[{"port": 90, "endPort": 80}])}, "spec.ingress[0].ports[0].endPort",
     "must be greater than or equal to `port`"),
    ({"egress": [{"ports": [{"port": "http", "endPort": 90}]}]}, "spec.egress[0].ports[0].endPort",
     "may not be specified when `port` is non-numeric"),
    ({"ingress": ingress_from(ports=[{"endPort": 90}])}, "spec.ingress[0].ports[0].endPort",
     "may not be specified when `port` is not specified"),
    ({"ingress": ingress_from(ports=[{"port": "Bad_Name"}])}, "spec.ingress[0].ports[0].port", "alpha-numeric"),
    ({"ingress": ingress_from({})}, "spec.ingress[0].from[0]", "must specify a peer"),
    ({"ingress": ingress_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}})}, "spec.ingress[0].from[0]",
     "may not specify both ipBlock and another peer"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}]}, "spec.egress[0].to[0].ipBlock.cidr",
     "must be a valid CIDR value"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]", "must be a strict subset of `cidr`"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]", "must be a strict subset of `cidr`"),
    ({"policyTypes": ["Ingress", "Sideways"]}, "spec.policyTypes[1]", 'Unsupported value: "Sideways"'),
    ({"policyTypes": ["Ingress", "Egress", "Ingress"]}, "spec.policyTypes", "may not specify more than two"),
    ({"ingress": [{"ports": [{"port": True}]}]}, "spec.ingress[0].ports[0].port", ""),
])
async def test_bad_policy_is_422_naming_the_field(client: Client, namespace: str, spec: dict[str, Any],
                                                  field: str, message: str) -> None:
    with pytest.raises(ApiError) as e:
        await client.create(NETWORKPOLICIES, policy("bad", **spec), namespace)
    assert e.value.code == 422
    causes = {c["field"]: c["message"] for c in e.value.causes}
    assert field in causes, causes
    assert message in causes[field]


async def test_defaults_and_table(client: Client, namespace: str) -> None:
    deny = await client.create(NETWORKPOLICIES, policy("default-deny"), namespace)
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    web = await client.create(NETWORKPOLICIES, policy(
        "web", podSelector={"matchLabels": {"app": "web"}},
        ingress=ingress_from({"podSelector": {"matchLabels": {"role": "frontend"}}}, ports=[{"port": 8080}]),
        egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                 "ports": [{"protocol": "UDP", "port": 53}, {"port": 30000, "endPort": 32767}]}]), namespace)
    assert web["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert web["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert web["spec"]["egress"][0]["ports"][1] == {"port": 30000, "endPort": 32767, "protocol": "TCP"}
    egress_only = await client.create(NETWORKPOLICIES, policy("egress-only", policyTypes=["Egress"]), namespace)
    assert egress_only["spec"]["policyTypes"] == ["Egress"]  # given types are kept

    table = await client.request("GET", NETWORKPOLICIES.path(namespace), headers={"Accept": TABLE})
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Pod-Selector", "Age"]
    rows = {r["cells"][0]: r["cells"][1] for r in table["rows"]}
    assert rows == {"default-deny": "<none>", "web": "app=web", "egress-only": "<none>"}

    resources = await client.request("GET", "/apis/networking.k8s.io/v1")
    found = next(r for r in resources["resources"] if r["name"] == "networkpolicies")
    assert found["namespaced"] and found["shortNames"] == ["netpol"] and found["kind"] == "NetworkPolicy"
