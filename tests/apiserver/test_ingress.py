"""networking.k8s.io/v1 Ingress and IngressClass against the real apiserver: validation that names the field,
the DefaultIngressClass admission, the status subresource and the Table columns (`kubectl get ingress`)."""
from __future__ import annotations

from typing import Any

import pytest

from pklib.api.ingress import DEFAULT_INGRESS_CLASS_ANNOTATION
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import INGRESSCLASSES, INGRESSES
from tests.util import unique

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def backend(service: str = "web", port: int = 80) -> dict[str, Any]:
    return {"service": {"name": service, "port": {"number": port}}}


def ingress(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("rules", [{"host": "web.example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": backend()}]}}])
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name}, "spec": spec}


def ingress_class(name: str, default: bool = False, controller: str = "example.com/ingress") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {DEFAULT_INGRESS_CLASS_ANNOTATION: "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}


def path_rule(path: str = "/", path_type: str | None = "Prefix", **backend_: Any) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {"path": path, "backend": backend_ or backend()}
    if path_type is not None:
        entry["pathType"] = path_type
    return [{"host": "web.example.com", "http": {"paths": [entry]}}]


@pytest.mark.parametrize("spec, field, message", [
    ({"rules": path_rule(path_type=None)}, "spec.rules[0].http.paths[0].pathType", "Required value"),
    ({"rules": path_rule(path_type="Regex")}, "spec.rules[0].http.paths[0].pathType", "Unsupported value"),
    ({"rules": path_rule(path="api")}, "spec.rules[0].http.paths[0].path", "must be an absolute path"),
    ({"rules": path_rule(service={"name": "web"})}, "spec.rules[0].http.paths[0].backend",
     "port name or number is required"),
    ({"rules": path_rule(service={"name": "web", "port": {"number": 80}},
                         resource={"kind": "Bucket", "name": "b"})},
     "spec.rules[0].http.paths[0].backend", "cannot set both resource and service backends"),
    ({"rules": [{"host": "10.0.0.1", "http": {"paths": path_rule()[0]["http"]["paths"]}}]},
     "spec.rules[0].host", "must be a DNS name, not an IP address"),
    ({"rules": [], "tls": [{"hosts": ["Bad_Host"], "secretName": "tls"}]}, "spec", "either `defaultBackend` or"),
    ({"tls": [{"hosts": ["Bad_Host"], "secretName": "tls"}]}, "spec.tls[0].hosts[0]", "RFC 1123"),
])
async def test_bad_ingress_is_422_naming_the_field(client: Client, namespace: str, spec: dict[str, Any],
                                                   field: str, message: str) -> None:
    with pytest.raises(ApiError) as e:
        await client.create(INGRESSES, ingress("bad", **spec), namespace)
    assert e.value.code == 422
    causes = {c["field"]: c["message"] for c in e.value.causes}
    assert field in causes, causes
    assert message in causes[field]


async def test_ingress_class_controller_is_required_and_immutable(client: Client) -> None:
    name = unique("ic")
    with pytest.raises(ApiError) as e:
        await client.create(INGRESSCLASSES, {**ingress_class(name), "spec": {}})
    assert e.value.code == 422 and e.value.causes[0]["field"] == "spec.controller"
    created = await client.create(INGRESSCLASSES, ingress_class(name))
    try:
        created["spec"]["controller"] = "example.com/other"
        with pytest.raises(ApiError) as e:
            await client.update(INGRESSCLASSES, created)
        assert e.value.code == 422 and "field is immutable" in e.value.causes[0]["message"]
    finally:
        await client.delete(INGRESSCLASSES, name)


async def test_default_class_is_given_to_new_ingresses_without_one(client: Client, namespace: str) -> None:
    default, other = unique("default"), unique("other")
    await client.create(INGRESSCLASSES, ingress_class(default, default=True))
    await client.create(INGRESSCLASSES, ingress_class(other))
    try:
        plain = await client.create(INGRESSES, ingress("plain"), namespace)
        assert plain["spec"]["ingressClassName"] == default
        chosen = await client.create(INGRESSES, ingress("chosen", ingressClassName=other), namespace)
        assert chosen["spec"]["ingressClassName"] == other
    finally:
        await client.delete(INGRESSCLASSES, default)
        await client.delete(INGRESSCLASSES, other)
    later = await client.create(INGRESSES, ingress("later"), namespace)
    assert "ingressClassName" not in later["spec"]  # no default class any more


async def test_status_subresource_and_table(client: Client, namespace: str) -> None:
    created = await client.create(INGRESSES, ingress(
        "web", ingressClassName="pkube", tls=[{"hosts": ["web.example.com"], "secretName": "web-tls"}],
        status={"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}), namespace)
    assert created.get("status", {}).get("loadBalancer", {}).get("ingress") is None  # status only via /status
    created["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    await client.update_status(INGRESSES, created)
    table = await client.request("GET", INGRESSES.path(namespace), headers={"Accept": TABLE})
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    assert table["rows"][0]["cells"][:5] == ["web", "pkube", "web.example.com", "192.0.2.1", "80, 443"]
