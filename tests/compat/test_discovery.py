"""Discovery as clients read it: legacy and aggregated documents, OpenAPI v3, `kubectl api-resources`."""
from __future__ import annotations

import json
import re
import ssl
import urllib.request
from typing import Any

from pklib import kubeconfig
from tests.support.controlplane import ApiServer
from tests.support.kubectl import Kubectl

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _get(api: ApiServer, path: str, accept: str = "application/json") -> tuple[str, Any]:
    access = kubeconfig.load(api.kubeconfig)
    ctx = access.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)  # https, verified with the kubeconfig's CA
    req = urllib.request.Request(api.url + path, headers={"Accept": accept, "Authorization": f"Bearer {api.token}"})
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        return r.headers["Content-Type"], json.loads(r.read())


def test_api_resources_lists_our_kinds(kubectl: Kubectl) -> None:
    out = kubectl("api-resources").stdout.splitlines()
    rows: dict[str, list[str]] = {}
    for line in out[1:]:  # the first row of a name: metrics.k8s.io also has pods and nodes, listed after core's
        rows.setdefault(re.split(r"\s+", line.strip())[0], re.split(r"\s+", line.strip()))
    assert rows["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert rows["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert rows["nodes"] == ["nodes", "no", "v1", "false", "Node"]
    assert rows["leases"][1:] == ["coordination.k8s.io/v1", "true", "Lease"]
    wide = kubectl("api-resources", "--api-group=apps", "-o", "wide").stdout
    assert re.search(r"^deployments\s+deploy\s+apps/v1\s+true\s+Deployment\s+"
                     r"create,delete,deletecollection,get,list,patch,update,watch\s+all$", wide, re.M)
    assert kubectl("version", "-o", "json").stdout and \
        json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["minor"] == "32"


def test_aggregated_discovery_when_asked(tls_apiserver: ApiServer) -> None:
    ctype, doc = _get(tls_apiserver, "/apis", AGGREGATED + ",application/json")
    assert ctype == AGGREGATED
    assert doc["kind"] == "APIGroupDiscoveryList" and doc["apiVersion"] == "apidiscovery.k8s.io/v2"
    apps = next(g for g in doc["items"] if g["metadata"]["name"] == "apps")
    deployments = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deployments["scope"] == "Namespaced" and deployments["responseKind"]["kind"] == "Deployment"
    scale = next(s for s in deployments["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    ctype, core = _get(tls_apiserver, "/api", AGGREGATED)
    assert [g["metadata"]["name"] for g in core["items"]] == [""]
    # Without the Accept parameters: the legacy documents.
    ctype, legacy = _get(tls_apiserver, "/apis")
    assert ctype.startswith("application/json") and legacy["kind"] == "APIGroupList"
    _, resources = _get(tls_apiserver, "/apis/apps/v1")
    scale = next(r for r in resources["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")


def test_openapi_v3_documents(tls_apiserver: ApiServer) -> None:
    _, index = _get(tls_apiserver, "/openapi/v3")
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    _, doc = _get(tls_apiserver, url)
    schemas = doc["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [{"group": "apps", "version": "v1",
                                                              "kind": "Deployment"}]
    containers = next(s for name, s in schemas.items() if name.endswith(".PodSpec"))["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
