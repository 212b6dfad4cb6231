"""Rules on update: immutable fields refuse to change (422, nothing written); allowed changes go through."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import Resource, lookup
from tests.util import unique


async def refused(client: Client, res: Resource, obj: dict[str, Any], field: str, fragment: str) -> None:
    """Updating to `obj` must fail with 422 naming `field`, and the stored object must not change."""
    name, ns = obj["metadata"]["name"], obj["metadata"].get("namespace")
    before = await client.get(res, name, ns)
    with pytest.raises(ApiError) as err:
        await client.update(res, obj)
    assert err.value.code == 422, err.value.status
    assert any(c["field"] == field and fragment in c["message"] for c in err.value.causes), err.value.causes
    after = await client.get(res, name, ns)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_pod_spec_is_immutable_except_image(client: Client, namespace: str) -> None:
    pods = lookup("pods")
    pod = await client.create(pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": unique("p")},
                                     "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}],
                                              "tolerations": [{"key": "a", "operator": "Exists"}]}},
                              namespace=namespace)
    changed = copy.deepcopy(pod)
    changed["spec"]["containers"][0]["command"] = ["sleep", "1"]
    await refused(client, pods, changed, "spec", "pod updates may not change fields other than")
    removed = copy.deepcopy(pod)
    removed["spec"]["tolerations"] = []
    await refused(client, pods, removed, "spec.tolerations", "existing toleration can not be modified")

    allowed = copy.deepcopy(pod)
    allowed["spec"]["containers"][0]["image"] = "busybox:1.37"
    allowed["spec"]["tolerations"].append({"key": "b", "operator": "Exists", "effect": "NoSchedule"})
    allowed["spec"]["activeDeadlineSeconds"] = 600
    updated = await client.update(pods, allowed)
    assert updated["spec"]["containers"][0]["image"] == "busybox:1.37"
    assert len(updated["spec"]["tolerations"]) == 2
    longer = copy.deepcopy(updated)
    longer["spec"]["activeDeadlineSeconds"] = 700
    await refused(client, pods, longer, "spec.activeDeadlineSeconds", "must be less than or equal to previous value")


async def test_workload_selector_is_immutable(client: Client, namespace: str) -> None:
    for plural in ("deployments", "replicasets", "daemonsets", "statefulsets"):
        res = lookup(plural)
        spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "a"}},
                                "template": {"metadata": {"labels": {"app": "a", "v": "1"}},
                                             "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}
        obj = await client.create(res, {"apiVersion": "apps/v1", "kind": res.kind,
                                        "metadata": {"name": unique(plural[:5])}, "spec": spec}, namespace=namespace)
        changed = copy.deepcopy(obj)
        changed["spec"]["selector"] = {"matchLabels": {"app": "a", "v": "1"}}
        await refused(client, res, changed, "spec.selector", "field is immutable")
        # The template may change (that is how rollouts happen).
        ok = copy.deepcopy(obj)
        ok["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
        assert (await client.update(res, ok))["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"


async def test_statefulset_fixed_fields(client: Client, namespace: str) -> None:
    res = lookup("sts")
    obj = await client.create(res, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": unique("s")},
                                    "spec": {"serviceName": "a", "selector": {"matchLabels": {"app": "a"}},
                                             "template": {"metadata": {"labels": {"app": "a"}},
                                                          "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}},
                              namespace=namespace)
    changed = copy.deepcopy(obj)
    changed["spec"]["serviceName"] = "b"
    await refused(client, res, changed, "spec", "updates to statefulset spec for fields other than")
    scaled = copy.deepcopy(obj)
    scaled["spec"]["replicas"] = 3
    assert (await client.update(res, scaled))["spec"]["replicas"] == 3


async def test_service_cluster_ip_is_immutable_and_kept_when_omitted(client: Client, namespace: str) -> None:
    res = lookup("svc")
    svc = await client.create(res, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": unique("s")},
                                    "spec": {"ports": [{"port": 80}]}}, namespace=namespace)
    ip = svc["spec"]["clusterIP"]
    changed = copy.deepcopy(svc)
    other = "10.96.0.77" if ip != "10.96.0.77" else "10.96.0.78"
    changed["spec"]["clusterIP"] = changed["spec"]["clusterIPs"][0] = other
    await refused(client, res, changed, "spec.clusterIP", "field is immutable")
    # A PUT that leaves clusterIP out keeps it (as Kubernetes does).
    omitted = copy.deepcopy(svc)
    omitted["spec"].pop("clusterIP")
    omitted["spec"].pop("clusterIPs")
    omitted["spec"]["ports"][0]["port"] = 81
    omitted["spec"]["ports"][0]["targetPort"] = 81
    updated = await client.update(res, omitted)
    assert updated["spec"]["clusterIP"] == ip and updated["spec"]["ports"][0]["port"] == 81


async def test_pvc_spec_is_immutable_except_requests(client: Client, namespace: str) -> None:
    res = lookup("pvc")
    pvc = await client.create(res, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                    "metadata": {"name": unique("c")},
                                    "spec": {"accessModes": ["ReadWriteOnce"],
                                             "resources": {"requests": {"storage": "1Gi"}}}}, namespace=namespace)
    changed = copy.deepcopy(pvc)
    changed["spec"]["accessModes"] = ["ReadWriteMany"]
    await refused(client, res, changed, "spec", "spec is immutable after creation")
    grown = copy.deepcopy(pvc)
    grown["spec"]["resources"]["requests"]["storage"] = "2Gi"
    grown["spec"]["volumeName"] = "pv-1"  # the binder sets volumeName once
    updated = await client.update(res, grown)
    assert updated["spec"]["resources"]["requests"]["storage"] == "2Gi" and updated["spec"]["volumeName"] == "pv-1"
    rebound = copy.deepcopy(updated)
    rebound["spec"]["volumeName"] = "pv-2"
    await refused(client, res, rebound, "spec", "spec is immutable after creation")


async def test_immutable_configmap_and_secret(client: Client, namespace: str) -> None:
    for plural, data in (("configmaps", {"k": "v"}), ("secrets", {"k": "dg=="})):
        res = lookup(plural)
        obj = await client.create(res, {"apiVersion": "v1", "kind": res.kind, "metadata": {"name": unique("i")},
                                        "data": data, "immutable": True}, namespace=namespace)
        changed = copy.deepcopy(obj)
        changed["data"] = {"k": "dzI="}
        await refused(client, res, changed, "data", "field is immutable when `immutable` is set")
        unlocked = copy.deepcopy(obj)
        unlocked["immutable"] = False
        await refused(client, res, unlocked, "immutable", "field is immutable when `immutable` is set")
        relabeled = copy.deepcopy(obj)
        relabeled["metadata"]["labels"] = {"x": "y"}  # metadata stays editable
        assert (await client.update(res, relabeled))["metadata"]["labels"] == {"x": "y"}


async def test_secret_type_is_immutable(client: Client, namespace: str) -> None:
    res = lookup("secrets")
    obj = await client.create(res, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": unique("s")},
                                    "data": {"k": "dg=="}}, namespace=namespace)
    changed = copy.deepcopy(obj)
    changed["type"] = "example.com/other"
    await refused(client, res, changed, "type", "field is immutable")


async def test_patch_that_breaks_a_rule_is_refused(client: Client, namespace: str) -> None:
    res = lookup("deploy")
    obj = await client.create(res, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": unique("d")},
                                    "spec": {"selector": {"matchLabels": {"app": "a"}},
                                             "template": {"metadata": {"labels": {"app": "a"}},
                                                          "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}},
                              namespace=namespace)
    name = obj["metadata"]["name"]
    with pytest.raises(ApiError) as err:
        await client.patch(res, name, {"spec": {"template": {"metadata": {"labels": {"app": "b"}}}}}, namespace)
    assert err.value.code == 422
    assert err.value.causes[0]["field"] == "spec.template.metadata.labels"
    got = await client.get(res, name, namespace)
    assert got["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
