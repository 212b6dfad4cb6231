"""Discovery documents: shaped as Kubernetes' so kubectl and client libraries understand them."""
from __future__ import annotations

import re

from apiserver import discovery
from pklib.resources import RESOURCES


def test_version_info_is_semver_and_names_platform() -> None:
    info = discovery.version_info()
    assert (info["major"], info["minor"]) == ("1", "32")
    assert re.fullmatch(r"v1\.32\.\d+(-[0-9A-Za-z.-]+)?", info["gitVersion"])
    assert re.fullmatch(r"[a-z0-9]+/[a-z0-9_]+", info["platform"])


def test_api_versions_lists_core_v1() -> None:
    doc = discovery.api_versions("127.0.0.1:6443")
    assert doc["kind"] == "APIVersions" and doc["versions"] == ["v1"]
    assert doc["serverAddressByClientCIDRs"][0]["serverAddress"] == "127.0.0.1:6443"
    assert "serverAddressByClientCIDRs" not in discovery.api_versions()


def test_group_list_has_every_named_group_once_with_preferred_version() -> None:
    doc = discovery.api_group_list()
    assert doc["kind"] == "APIGroupList"
    names = [g["name"] for g in doc["groups"]]
    assert sorted(names) == sorted({r.group for r in RESOURCES if r.group})
    apps = next(g for g in doc["groups"] if g["name"] == "apps")
    assert apps["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert apps["versions"] == [{"groupVersion": "apps/v1", "version": "v1"}]


def test_api_group() -> None:
    assert discovery.api_group("apps")["kind"] == "APIGroup"
    assert discovery.api_group("nope.example.com") is None


def _by_name(doc: dict) -> dict[str, dict]:
    return {r["name"]: r for r in doc["resources"]}


def test_core_v1_resources() -> None:
    doc = discovery.api_resource_list("", "v1")
    assert doc["groupVersion"] == "v1" and doc["kind"] == "APIResourceList"
    res = _by_name(doc)
    pods = res["pods"]
    assert pods["singularName"] == "pod" and pods["namespaced"] is True and pods["kind"] == "Pod"
    assert pods["shortNames"] == ["po"] and "all" in pods["categories"]
    assert pods["verbs"] == ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    assert res["nodes"]["namespaced"] is False and res["nodes"]["shortNames"] == ["no"]
    for name, short in [("services", "svc"), ("namespaces", "ns"), ("configmaps", "cm"),
                        ("persistentvolumeclaims", "pvc"), ("persistentvolumes", "pv"), ("endpoints", "ep")]:
        assert short in res[name]["shortNames"]
    assert res["pods/status"]["verbs"] == ["get", "patch", "update"] and res["pods/status"]["kind"] == "Pod"
    assert res["pods/binding"] == {"name": "pods/binding", "singularName": "", "namespaced": True,
                                   "kind": "Binding", "verbs": ["create"]}
    assert res["pods/log"]["kind"] == "Pod" and res["pods/exec"]["kind"] == "PodExecOptions"
    # Nothing from other groups leaks into core.
    assert "deployments" not in res


def test_apps_v1_scale_subresources_are_autoscaling_scale() -> None:
    res = _by_name(discovery.api_resource_list("apps", "v1"))
    assert {"deployments", "replicasets", "daemonsets", "statefulsets"} <= set(res)
    for name in ("deployments/scale", "replicasets/scale", "statefulsets/scale"):
        assert res[name]["kind"] == "Scale"
        assert (res[name]["group"], res[name]["version"]) == ("autoscaling", "v1")
    assert "daemonsets/scale" not in res
    assert res["deployments"]["shortNames"] == ["deploy"]


def test_every_table_row_is_discoverable() -> None:
    for r in RESOURCES:
        doc = discovery.api_resource_list(r.group, r.version)
        assert r.plural in _by_name(doc), r


def test_unknown_group_version_is_none() -> None:
    assert discovery.api_resource_list("apps", "v2") is None
    assert discovery.api_resource_list("nope", "v1") is None
