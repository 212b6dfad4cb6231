"""Patches: merge (RFC 7386), JSON (RFC 6902), strategic merge, and the 3-way apply patch.

Many cases follow Kubernetes' "Update API Objects in Place Using kubectl patch" task page.
"""
from __future__ import annotations

import copy

import pytest

from pklib.patch import (PatchError, json_patch, merge_key_for, merge_patch, strategic_merge_patch,
                         three_way_strategic_patch)


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "patch-demo", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{"name": "patch-demo-ctr", "image": "nginx",
                                    "ports": [{"containerPort": 80}],
                                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}],
                    "tolerations": [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}],
                },
            },
        },
    }


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


# --- merge keys ---------------------------------------------------------------------------

@pytest.mark.parametrize("path, key", [
    (("spec", "containers"), "name"),
    (("spec", "template", "spec", "containers"), "name"),
    (("spec", "template", "spec", "initContainers", "env"), "name"),
    (("spec", "containers", "ports"), "containerPort"),
    (("spec", "ports"), "port"),
    (("spec", "template", "spec", "containers", "volumeMounts"), "mountPath"),
    (("spec", "volumes"), "name"),
    (("status", "conditions"), "type"),
    (("metadata", "ownerReferences"), "uid"),
    (("spec", "tolerations"), None),
    (("spec", "containers", "args"), None),
    (("spec", "containers", "envFrom"), None),
])
def test_merge_keys_by_path(path: tuple[str, ...], key: str | None) -> None:
    assert merge_key_for(path) == key


# --- RFC 7386 ------------------------------------------------------------------------------

def test_merge_patch_rfc7386_examples() -> None:
    # The example from RFC 7386 section 3.
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
              "tags": ["example", "sample"], "content": "This will be unchanged"}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None},
             "tags": ["example"]}
    assert merge_patch(target, patch) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
        "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"}
    assert target["title"] == "Goodbye!"  # input untouched


def test_merge_patch_replaces_lists_of_containers() -> None:
    patched = merge_patch(deployment(), {"spec": {"template": {"spec": {
        "containers": [{"name": "patch-demo-ctr-3", "image": "gcr.io/google-samples/hello-app:2.0"}]}}}})
    assert [c["name"] for c in containers(patched)] == ["patch-demo-ctr-3"]


def test_merge_patch_non_object_patch_replaces_whole() -> None:
    assert merge_patch({"a": 1}, [1, 2]) == [1, 2]
    assert merge_patch({"a": {"b": 1}}, {"a": "x"}) == {"a": "x"}


# --- RFC 6902 ------------------------------------------------------------------------------

def test_json_patch_operations() -> None:
    obj = deployment()
    out = json_patch(obj, [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
        {"op": "remove", "path": "/spec/template/spec/tolerations"},
        {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "side", "image": "busybox"}},
        {"op": "test", "path": "/spec/replicas", "value": 5},
    ])
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["labels"] == {"app": "nginx", "tier": "web"}
    assert "tolerations" not in out["spec"]["template"]["spec"]
    assert [c["name"] for c in containers(out)] == ["patch-demo-ctr", "side"]
    assert obj == deployment()


@pytest.mark.parametrize("ops, fragment", [
    ([{"op": "test", "path": "/spec/replicas", "value": 7}], "test failed"),
    ([{"op": "remove", "path": "/spec/nothere"}], "cannot be applied"),
    ([{"op": "bogus", "path": "/spec"}], "cannot be applied"),
    ({"op": "add"}, "must be a list"),
    ([{"path": "/spec"}], "\"op\""),
])
def test_json_patch_errors(ops: object, fragment: str) -> None:
    with pytest.raises(PatchError, match=fragment):
        json_patch(deployment(), ops)


# --- strategic merge patch ------------------------------------------------------------------

def test_strategic_adds_container_by_name() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}}}
    out = strategic_merge_patch(deployment(), patch)
    assert [(c["name"], c["image"]) for c in containers(out)] == [("patch-demo-ctr", "nginx"),
                                                                   ("patch-demo-ctr-2", "redis")]


def test_strategic_merges_existing_container_and_env_by_name() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{
        "name": "patch-demo-ctr", "image": "nginx:1.27",
        "env": [{"name": "B", "value": "22"}, {"name": "C", "value": "3"}]}]}}}}
    c = containers(strategic_merge_patch(deployment(), patch))[0]
    assert c["image"] == "nginx:1.27"
    assert c["ports"] == [{"containerPort": 80}]
    assert c["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "22"}, {"name": "C", "value": "3"}]


def test_strategic_replaces_lists_without_merge_key() -> None:
    patch = {"spec": {"template": {"spec": {"tolerations": [
        {"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]}}}}
    out = strategic_merge_patch(deployment(), patch)
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"effect": "NoSchedule", "key": "disktype",
                                                                "value": "ssd"}]


def test_strategic_container_ports_merge_by_container_port() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{
        "name": "patch-demo-ctr", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]}}}}
    c = containers(strategic_merge_patch(deployment(), patch))[0]
    assert c["ports"] == [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]


def test_strategic_service_ports_merge_by_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 443, "targetPort": 9443}]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 9443}]


def test_strategic_delete_directive_on_list_element_and_map() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "patch-demo-ctr", "env": [{"name": "A", "$patch": "delete"}]}]}},
        "strategy": {"$patch": "delete"}}}
    out = strategic_merge_patch(deployment(), patch)
    assert containers(out)[0]["env"] == [{"name": "B", "value": "2"}]
    assert "strategy" not in out["spec"]


def test_strategic_replace_directive_on_map_and_list() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "busybox"}]}},
        "strategy": {"$patch": "replace", "type": "Recreate"}}}
    out = strategic_merge_patch(deployment(), patch)
    assert containers(out) == [{"name": "only", "image": "busybox"}]
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_strategic_retain_keys_clears_other_fields() -> None:
    # The docs' example: switching the strategy to Recreate must drop rollingUpdate.
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = strategic_merge_patch(deployment(), patch)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_strategic_null_deletes_key() -> None:
    out = strategic_merge_patch(deployment(), {"metadata": {"labels": {"app": None}}, "spec": {"replicas": None}})
    assert out["metadata"]["labels"] == {}
    assert "replicas" not in out["spec"]


def test_strategic_primitive_merge_list_and_delete_from_primitive_list() -> None:
    obj = {"metadata": {"finalizers": ["a", "b"]}}
    assert strategic_merge_patch(obj, {"metadata": {"finalizers": ["c", "a"]}})["metadata"]["finalizers"] == [
        "a", "b", "c"]
    out = strategic_merge_patch(obj, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]


def test_strategic_set_element_order() -> None:
    obj = {"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                      "containers": [{"name": "a", "image": "x"}]}}
    out = strategic_merge_patch(obj, patch)
    assert out["spec"]["containers"] == [{"name": "c"}, {"name": "a", "image": "x"}, {"name": "b"}]


def test_strategic_set_element_order_keeps_unlisted_items_in_place() -> None:
    obj = {"spec": {"containers": [{"name": "a"}, {"name": "server-added"}, {"name": "b"}]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}
    out = strategic_merge_patch(obj, patch)
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "server-added", "a"]


def test_strategic_new_field_drops_directives_and_nulls() -> None:
    out = strategic_merge_patch({}, {"spec": {"containers": [{"name": "a", "x": None},
                                                             {"name": "b", "$patch": "delete"}]}})
    assert out == {"spec": {"containers": [{"name": "a"}]}}


@pytest.mark.parametrize("patch, fragment", [
    ({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, "merge key 'name'"),
    ({"spec": {"template": {"spec": {"containers": ["x"]}}}}, "must be an object"),
    ({"spec": {"$patch": "explode"}}, "unknown patch directive"),
    ({"spec": {"template": {"spec": {"tolerations": [{"$patch": "delete", "key": "x"}]}}}}, "without a merge key"),
    ({"spec": {"$retainKeys": "type"}}, "must be a list"),
    ([1], "JSON object"),
])
def test_strategic_errors(patch: object, fragment: str) -> None:
    with pytest.raises(PatchError, match=fragment):
        strategic_merge_patch(deployment(), patch)  # type: ignore[arg-type]


def test_strategic_does_not_mutate_inputs() -> None:
    obj, patch = deployment(), {"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr",
                                                                               "image": "z"}]}}}}
    obj_copy, patch_copy = copy.deepcopy(obj), copy.deepcopy(patch)
    strategic_merge_patch(obj, patch)
    assert obj == obj_copy and patch == patch_copy


# --- three-way (client-side apply) -----------------------------------------------------------

def apply(last: dict | None, modified: dict, current: dict) -> dict:
    return strategic_merge_patch(current, three_way_strategic_patch(last, modified, current))


def test_three_way_removing_field_from_manifest_removes_it() -> None:
    last = deployment()
    modified = deployment()
    del modified["metadata"]["labels"]
    del containers(modified)[0]["env"][0]  # drop env A
    del modified["spec"]["template"]["spec"]["tolerations"]
    current = deployment()
    current["metadata"]["annotations"] = {"set-by": "server"}
    containers(current)[0]["imagePullPolicy"] = "Always"
    out = apply(last, modified, current)
    assert "labels" not in out["metadata"]
    assert out["metadata"]["annotations"] == {"set-by": "server"}  # not ours: kept
    assert containers(out)[0]["env"] == [{"name": "B", "value": "2"}]
    assert containers(out)[0]["imagePullPolicy"] == "Always"  # defaulted by the server: kept
    assert "tolerations" not in out["spec"]["template"]["spec"]


def test_three_way_changes_and_additions() -> None:
    last, current = deployment(), deployment()
    modified = deployment()
    modified["spec"]["replicas"] = 4
    containers(modified)[0]["image"] = "nginx:1.27"
    containers(modified).append({"name": "side", "image": "busybox"})
    out = apply(last, modified, current)
    assert out["spec"]["replicas"] == 4
    assert [(c["name"], c["image"]) for c in containers(out)] == [("patch-demo-ctr", "nginx:1.27"),
                                                                   ("side", "busybox")]


def test_three_way_removed_container_is_deleted_but_foreign_one_kept() -> None:
    last = deployment()
    containers(last).append({"name": "mine", "image": "busybox"})
    current = copy.deepcopy(last)
    containers(current).append({"name": "injected", "image": "proxy"})
    modified = deployment()
    out = apply(last, modified, current)
    assert [c["name"] for c in containers(out)] == ["patch-demo-ctr", "injected"]


def test_three_way_reverts_drift_in_fields_we_own() -> None:
    last, modified = deployment(), deployment()
    current = deployment()
    current["spec"]["replicas"] = 9  # someone scaled it by hand
    assert apply(last, modified, current)["spec"]["replicas"] == 2


def test_three_way_without_last_applied_only_sets() -> None:
    current = deployment()
    current["metadata"]["labels"]["extra"] = "x"
    modified = deployment()
    patch = three_way_strategic_patch(None, modified, current)
    assert patch == {}
    assert apply(None, modified, current)["metadata"]["labels"] == {"app": "nginx", "extra": "x"}


def test_three_way_finalizers_primitive_list() -> None:
    last = {"metadata": {"finalizers": ["a", "b"]}}
    modified = {"metadata": {"finalizers": ["b", "c"]}}
    current = {"metadata": {"finalizers": ["a", "b", "server"]}}
    out = apply(last, modified, current)
    assert sorted(out["metadata"]["finalizers"]) == ["b", "c", "server"]


def test_three_way_replace_list_changes() -> None:
    last = {"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}}
    modified = {"spec": {"containers": [{"name": "a", "args": ["3"]}]}}
    assert apply(last, modified, copy.deepcopy(last))["spec"]["containers"][0]["args"] == ["3"]


def test_three_way_reorders_containers() -> None:
    last = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    modified = {"spec": {"containers": [{"name": "b"}, {"name": "a"}]}}
    out = apply(last, modified, copy.deepcopy(last))
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a"]


def test_three_way_noop_is_empty() -> None:
    assert three_way_strategic_patch(deployment(), deployment(), deployment()) == {}


def test_three_way_switch_to_recreate_drops_rolling_update() -> None:
    # kubectl's retainKeys for Deployment.spec.strategy: without it the defaulted rollingUpdate
    # would survive and the Deployment would be invalid.
    last = deployment()
    del last["spec"]["strategy"]
    modified = copy.deepcopy(last)
    modified["spec"]["strategy"] = {"type": "Recreate"}
    current = deployment()  # the server defaulted RollingUpdate 25%/25%
    patch = three_way_strategic_patch(last, modified, current)
    assert patch["spec"]["strategy"]["$retainKeys"] == ["type"]
    assert apply(last, modified, current)["spec"]["strategy"] == {"type": "Recreate"}


def test_three_way_switch_volume_source_drops_the_old_one() -> None:
    # First apply over an object made with `create`: no last-applied, so only retainKeys can
    # remove the old source.
    current = {"spec": {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}}}
    modified = {"spec": {"template": {"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/data"}}]}}}}
    out = apply(None, modified, current)
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/data"}}]


def test_merge_patch_result_shares_nothing_with_its_inputs() -> None:
    obj = {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [{"x": 1}]}, "big": 2 ** 70}
    patch = {"metadata": {"labels": {"b": "2"}}, "status": {"conditions": [{"type": "Ready"}]}}
    out = merge_patch(obj, patch)
    assert out == {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [{"x": 1}]}, "big": 2 ** 70,
                   "status": {"conditions": [{"type": "Ready"}]}}
    out["metadata"]["labels"]["c"] = "3"
    out["spec"]["list"][0]["x"] = 2
    out["status"]["conditions"][0]["type"] = "changed"
    assert obj == {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [{"x": 1}]}, "big": 2 ** 70}
    assert patch == {"metadata": {"labels": {"b": "2"}}, "status": {"conditions": [{"type": "Ready"}]}}
