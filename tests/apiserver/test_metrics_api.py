"""metrics.k8s.io/v1beta1 without kubelets: discovered as Kubernetes lists it, read-only, clear errors.
(With a real kubelet behind it: tests/e2e/test_autoscaling.py.)"""
from __future__ import annotations

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import NODEMETRICS, PODMETRICS


async def test_discovery_lists_nodes_and_pods_read_only(client: Client) -> None:
    doc = await client.request("GET", "/apis/metrics.k8s.io/v1beta1")
    verbs = {r["name"]: (r["kind"], r["namespaced"], r["verbs"]) for r in doc["resources"]}
    assert verbs == {"nodes": ("NodeMetrics", False, ["get", "list"]), "pods": ("PodMetrics", True, ["get", "list"])}


async def test_lists_and_errors(client: Client) -> None:
    listed = await client.list(PODMETRICS, "default")
    assert (listed["kind"], listed["apiVersion"], listed["items"]) == ("PodMetricsList", "metrics.k8s.io/v1beta1", [])
    assert (await client.list(NODEMETRICS))["kind"] == "NodeMetricsList"
    with pytest.raises(ApiError) as err:
        await client.get(PODMETRICS, "nope", "default")
    assert (err.value.code, err.value.message) == (404, 'pods.metrics.k8s.io "nope" not found')
    with pytest.raises(ApiError) as err:
        await client.list(PODMETRICS, "default", label_selector="a in (")
    assert err.value.code == 400
    for method, path in (("DELETE", "namespaces/default/pods/x"), ("POST", "namespaces/default/pods"),
                         ("POST", "nodes")):
        with pytest.raises(ApiError) as err:  # nothing is stored: only get and list
            await client.request(method, f"/apis/metrics.k8s.io/v1beta1/{path}", body={})
        assert (err.value.code, err.value.reason) == (405, "MethodNotAllowed")
