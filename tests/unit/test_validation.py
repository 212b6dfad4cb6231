"""Validation: the name/label syntax helpers (pklib.validation) with Kubernetes' own accept/reject
cases, then the kinds' semantic rules (apiserver.kinds) as pure functions over plain dicts."""
from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from apiserver.kinds import strategy_for
from pklib import validation as v
from pklib.resources import lookup


@pytest.mark.parametrize("ok", ["a", "ab", "a-b", "0", "123-abc", "a" * 63])
def test_dns1123_label_accepts(ok: str) -> None:
    assert v.is_dns1123_label(ok) == []


@pytest.mark.parametrize("bad", ["", "A", "-a", "a-", "a.b", "a_b", "a b", "ä"])
def test_dns1123_label_rejects(bad: str) -> None:
    errs = v.is_dns1123_label(bad)
    assert errs and "a lowercase RFC 1123 label must consist of" in errs[-1]


def test_dns1123_label_too_long() -> None:
    assert v.is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]


@pytest.mark.parametrize("ok", ["example.com", "a", "a.b-c.d", "1.2.3", "x" * 253])
def test_dns1123_subdomain_accepts(ok: str) -> None:
    assert v.is_dns1123_subdomain(ok) == []


@pytest.mark.parametrize("bad", ["", "Example.com", "a..b", ".a", "a.", "a_b", "a.-b"])
def test_dns1123_subdomain_rejects(bad: str) -> None:
    assert any("RFC 1123 subdomain" in e for e in v.is_dns1123_subdomain(bad))


def test_dns1123_subdomain_too_long() -> None:
    assert "must be no more than 253 characters" in v.is_dns1123_subdomain("x" * 254)


def test_dns1035_label_must_start_with_a_letter() -> None:
    assert v.is_dns1035_label("web-1") == []
    assert "DNS-1035 label" in v.is_dns1035_label("1web")[0]


@pytest.mark.parametrize("ok", ["app", "App_1", "my.name", "example.com/MyName", "k8s.io/a-b", "a" * 63,
                                "kubernetes.io/" + "a" * 63])
def test_qualified_name_accepts(ok: str) -> None:
    assert v.is_qualified_name(ok) == []


@pytest.mark.parametrize("bad, fragment", [
    ("", "name part must be non-empty"),
    ("/a", "prefix part must be non-empty"),
    ("a/", "name part must be non-empty"),
    ("a/b/c", "a qualified name must consist of"),
    ("-a", "name part must consist of"),
    ("Example.com/a", "prefix part a lowercase RFC 1123 subdomain"),
    ("a" * 64, "name part must be no more than 63 characters"),
    ("a b", "name part must consist of"),
])
def test_qualified_name_rejects(bad: str, fragment: str) -> None:
    assert any(fragment in e for e in v.is_qualified_name(bad)), v.is_qualified_name(bad)


@pytest.mark.parametrize("ok", ["", "a", "MyValue", "my_value", "1.2-3", "a" * 63])
def test_label_value_accepts(ok: str) -> None:
    assert v.is_label_value(ok) == []


@pytest.mark.parametrize("bad", ["-a", "a-", "a b", "a/b", "a" * 64])
def test_label_value_rejects(bad: str) -> None:
    assert v.is_label_value(bad)


@pytest.mark.parametrize("ok", ["http", "web-80", "a1", "x" * 15])
def test_port_name_accepts(ok: str) -> None:
    assert v.is_valid_port_name(ok) == []


@pytest.mark.parametrize("bad, fragment", [
    ("HTTP", "only alpha-numeric"),
    ("80", "at least one letter"),
    ("a--b", "consecutive hyphens"),
    ("-a", "begin or end with a hyphen"),
    ("x" * 16, "no more than 15"),
])
def test_port_name_rejects(bad: str, fragment: str) -> None:
    assert any(fragment in e for e in v.is_valid_port_name(bad))


@pytest.mark.parametrize("port, ok", [(1, True), (65535, True), (0, False), (65536, False), (-1, False),
                                      (True, False), ("80", False)])
def test_port_number(port: object, ok: bool) -> None:
    assert (v.is_valid_port_num(port) == []) is ok  # type: ignore[arg-type]


@pytest.mark.parametrize("name, ok", [("PATH", True), ("my.env-name", True), ("_x", True), ("1X", False),
                                      ("A B", False), ("", False)])
def test_env_var_name(name: str, ok: bool) -> None:
    assert (v.is_env_var_name(name) == []) is ok


@pytest.mark.parametrize("key, ok", [("key.name", True), ("KEY_NAME", True), (".env", True), (".", False),
                                     ("..", False), ("..x", False), ("a/b", False), ("", False)])
def test_config_map_key(key: str, ok: bool) -> None:
    assert (v.is_config_map_key(key) == []) is ok


# --- kind rules (apiserver.kinds) -------------------------------------------------------------

def causes_of(kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    s = strategy_for(lookup(kind))
    s.default(obj)
    if old is not None:
        s.default(old)
    return [(c["field"], c["message"]) for c in s.validate(obj, old)]


def has(causes: list[tuple[str, str]], field: str, fragment: str) -> bool:
    return any(f == field and fragment in m for f, m in causes)


def a_pod(**container: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "busybox", **container}]}}


def test_valid_pod_has_no_causes() -> None:
    assert causes_of("pods", a_pod()) == []


@pytest.mark.parametrize("probe, field, fragment", [
    ({}, "spec.containers[0].livenessProbe", "must specify a handler type"),
    ({"exec": {"command": ["x"]}, "tcpSocket": {"port": 1}}, "spec.containers[0].livenessProbe.tcpSocket",
     "may not specify more than 1 handler type"),
    ({"exec": {"command": ["x"]}, "successThreshold": 2}, "spec.containers[0].livenessProbe.successThreshold",
     "must be 1"),
    ({"httpGet": {"port": "HTTP"}}, "spec.containers[0].livenessProbe.httpGet.port", "only alpha-numeric"),
    ({"httpGet": {"port": 0}}, "spec.containers[0].livenessProbe.httpGet.port", "between 1 and 65535"),
    ({"httpGet": {"port": 80, "scheme": "FTP"}}, "spec.containers[0].livenessProbe.httpGet.scheme",
     "Unsupported value: \"FTP\""),
    ({"exec": {"command": ["x"]}, "periodSeconds": -1}, "spec.containers[0].livenessProbe.periodSeconds",
     "must be greater than or equal to 0"),
])
def test_probe_rules(probe: dict[str, Any], field: str, fragment: str) -> None:
    assert has(causes_of("pods", a_pod(livenessProbe=probe)), field, fragment)


def test_readiness_probe_may_need_several_successes() -> None:
    assert causes_of("pods", a_pod(readinessProbe={"exec": {"command": ["x"]}, "successThreshold": 3})) == []


@pytest.mark.parametrize("toleration, field, fragment", [
    ({"key": "a", "operator": "Maybe"}, "spec.tolerations[0].operator", "Unsupported value: \"Maybe\""),
    ({"operator": "Equal", "value": "x"}, "spec.tolerations[0].operator", "operator must be Exists when `key` is"),
    ({"key": "a", "operator": "Exists", "value": "x"}, "spec.tolerations[0].operator", "value must be empty"),
    ({"key": "a", "effect": "NoSchedule", "tolerationSeconds": 5}, "spec.tolerations[0].effect",
     "effect must be 'NoExecute'"),
    ({"key": "a", "effect": "Sometimes"}, "spec.tolerations[0].effect", "Unsupported value"),
])
def test_toleration_rules(toleration: dict[str, Any], field: str, fragment: str) -> None:
    pod = a_pod()
    pod["spec"]["tolerations"] = [toleration]
    assert has(causes_of("pods", pod), field, fragment)


@pytest.mark.parametrize("volumes, field, fragment", [
    ([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}], "spec.volumes[1].name", "Duplicate value"),
    ([{"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}}], "spec.volumes[0].hostPath",
     "may not specify more than 1 volume type"),
    ([{"name": "a", "hostPath": {"path": "rel"}}], "spec.volumes[0].hostPath.path", "must be an absolute path"),
    ([{"name": "a", "configMap": {}}], "spec.volumes[0].configMap.name", "Required value"),
    ([{"name": "a", "secret": {}}], "spec.volumes[0].secret.secretName", "Required value"),
    ([{"name": "A_b", "emptyDir": {}}], "spec.volumes[0].name", "RFC 1123 label"),
    ([{"name": "a", "configMap": {"name": "c", "defaultMode": 0o1777}}], "spec.volumes[0].configMap.defaultMode",
     "must be a number between 0 and 0777 (octal), both inclusive"),
    ([{"name": "a", "secret": {"secretName": "s", "items": [{"key": "k", "path": "k", "mode": "0644"}]}}],
     "spec.volumes[0].secret.items[0].mode", "must be a number between 0 and 0777"),
    ([{"name": "a", "projected": {"sources": [{"secret": {"name": "s", "items": [{"key": "k", "path": "k",
                                                                                 "mode": 4096}]}}]}}],
     "spec.volumes[0].projected.sources[0].secret.items[0].mode", "must be a number between 0 and 0777"),
    ([{"name": "a", "configMap": {"name": "c", "items": [{"key": "k", "path": "../x"}]}}],
     "spec.volumes[0].configMap.items[0].path", "must not contain '..'"),
    ([{"name": "a", "downwardAPI": {"items": [{"path": "..x", "fieldRef": {"fieldPath": "metadata.name"}}]}}],
     "spec.volumes[0].downwardAPI.items[0].path", "must not start with '..'"),
])
def test_volume_rules(volumes: list[dict[str, Any]], field: str, fragment: str) -> None:
    pod = a_pod()
    pod["spec"]["volumes"] = volumes
    assert has(causes_of("pods", pod), field, fragment)


def test_duplicate_mount_path_and_env_rules() -> None:
    pod = a_pod(volumeMounts=[{"name": "v", "mountPath": "/d"}, {"name": "v", "mountPath": "/d"}],
                env=[{"name": "1BAD"}, {"name": "OK", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}])
    pod["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    causes = causes_of("pods", pod)
    assert has(causes, "spec.containers[0].volumeMounts[1].mountPath", "must be unique")
    assert has(causes, "spec.containers[0].env[0].name", "a valid environment variable name")
    assert has(causes, "spec.containers[0].env[1].valueFrom", "may not be specified when `value` is not empty")


def test_resource_names_and_negative_quantities() -> None:
    causes = causes_of("pods", a_pod(resources={"limits": {"gpus": "1", "cpu": "-1"}}))
    assert has(causes, "spec.containers[0].resources.limits[gpus]", "must be a standard resource type")
    assert has(causes, "spec.containers[0].resources.limits[cpu]", "must be greater than or equal to 0")
    assert causes_of("pods", a_pod(resources={"limits": {"example.com/dongle": "1", "hugepages-2Mi": "2Mi"}})) == []


def test_host_network_ports_must_match() -> None:
    pod = a_pod(ports=[{"containerPort": 80, "hostPort": 81}])
    pod["spec"]["hostNetwork"] = True
    assert has(causes_of("pods", pod), "spec.containers[0].ports[0].hostPort", "must match `containerPort`")


def test_pod_update_allows_binding_once_but_not_moving() -> None:
    old = a_pod()
    bound = a_pod()
    bound["spec"]["nodeName"] = "n1"
    assert causes_of("pods", bound, old) == []
    moved = a_pod()
    moved["spec"]["nodeName"] = "n2"
    assert has(causes_of("pods", moved, bound), "spec", "pod updates may not change fields")


def test_pod_status_update_checks_the_status_against_the_schema() -> None:
    """An update that keeps the stored spec (a status write) skips re-checking it, never the status."""
    old = a_pod()
    new = a_pod()
    new["status"] = {"phase": "Running", "conditions": "not-a-list"}
    assert has(causes_of("pods", new, old), "status.conditions", "must be of type array")
    new["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert causes_of("pods", new, old) == []


def deployment_with(selector: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "d", "namespace": "x"},
            "spec": {"selector": selector, "template": {"metadata": {"labels": labels},
                                                        "spec": {"containers": [{"name": "c", "image": "x"}]}}}}


@pytest.mark.parametrize("selector, labels, field, fragment", [
    ({}, {"a": "b"}, "spec.selector", "empty selector is invalid for deployment"),
    ({"matchExpressions": [{"key": "a", "operator": "Near"}]}, {"a": "b"},
     "spec.selector.matchExpressions[0].operator", "not a valid selector operator"),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]}, {"a": "b"},
     "spec.selector.matchExpressions[0].values", "must be specified when `operator` is 'In' or 'NotIn'"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, {"a": "b"},
     "spec.selector.matchExpressions[0].values", "may not be specified"),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["b"]}]}, {"a": "b"},
     "spec.template.metadata.labels", "`selector` does not match template `labels`"),
])
def test_selector_rules(selector: dict[str, Any], labels: dict[str, str], field: str, fragment: str) -> None:
    assert has(causes_of("deployments", deployment_with(selector, labels)), field, fragment)


def test_selector_expressions_that_match_are_fine() -> None:
    sel = {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]},
                                                           {"key": "gone", "operator": "DoesNotExist"}]}
    assert causes_of("deployments", deployment_with(sel, {"a": "b", "t": "y"})) == []


@pytest.mark.parametrize("strategy, field, fragment", [
    ({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}, "spec.strategy.rollingUpdate", "may not be specified"),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x%"}}, "spec.strategy.rollingUpdate.maxSurge",
     "a valid percent string"),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%"}},
     "spec.strategy.rollingUpdate.maxUnavailable", "must not be greater than 100%"),
    ({"type": "Sideways"}, "spec.strategy.type", "Unsupported value"),
])
def test_deployment_strategy_rules(strategy: dict[str, Any], field: str, fragment: str) -> None:
    d = deployment_with({"matchLabels": {"a": "b"}}, {"a": "b"})
    d["spec"]["strategy"] = strategy
    assert has(causes_of("deployments", d), field, fragment)


def test_progress_deadline_must_exceed_min_ready() -> None:
    d = deployment_with({"matchLabels": {"a": "b"}}, {"a": "b"})
    d["spec"].update(minReadySeconds=30, progressDeadlineSeconds=10)
    assert has(causes_of("deployments", d), "spec.progressDeadlineSeconds", "must be greater than minReadySeconds")


def a_service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "s", "namespace": "d"}, "spec": {"ports": [{"port": 80}], **spec}}


@pytest.mark.parametrize("spec, field, fragment", [
    ({"type": "NodePort", "clusterIP": "None"}, "spec.clusterIP", "may not be set to 'None' for NodePort"),
    ({"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]}, "spec.ports[1]", "Duplicate value"),
    ({"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]}, "spec.ports[1].name", "Duplicate value"),
    ({"ports": []}, "spec.ports", "Required value"),
    ({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.6"]}, "spec.clusterIPs", "first value must match"),
    ({"type": "ExternalName"}, "spec.externalName", "Required value"),
    ({"type": "ExternalName", "externalName": "x.com", "clusterIP": "10.96.0.5"}, "spec.clusterIP",
     "may not be set for ExternalName services"),
    ({"ports": [{"port": 80, "targetPort": "Web_"}]}, "spec.ports[0].targetPort", "only alpha-numeric"),
    ({"sessionAffinity": "Sticky"}, "spec.sessionAffinity", "Unsupported value"),
    ({"type": "NodePort", "ports": [{"port": 80, "name": "a", "nodePort": 30001},
                                    {"port": 81, "name": "b", "nodePort": 30001}]},
     "spec.ports[1].nodePort", "Duplicate value: 30001"),
])
def test_service_rules(spec: dict[str, Any], field: str, fragment: str) -> None:
    assert has(causes_of("services", a_service(**spec)), field, fragment)


def test_headless_service_needs_no_ports() -> None:
    assert causes_of("services", a_service(clusterIP="None", ports=[])) == []


@pytest.mark.parametrize("kind, obj, field, fragment", [
    ("nodes", {"metadata": {"name": "n"}, "spec": {"taints": [{"key": "a", "effect": "NoSchedule"},
                                                              {"key": "a", "effect": "NoSchedule"}]}},
     "spec.taints[1]", "Duplicate value"),
    ("nodes", {"metadata": {"name": "n"}, "spec": {"podCIDR": "10.0.0.0/99"}}, "spec.podCIDRs[0]",
     "must be a valid CIDR value"),
    ("endpoints", {"metadata": {"name": "e", "namespace": "d"},
                   "subsets": [{"addresses": [{"ip": "10.0.0.300"}], "ports": [{"port": 80}, {"port": 81}]}]},
     "subsets[0].addresses[0].ip", "must be a valid IP address"),
    ("endpoints", {"metadata": {"name": "e", "namespace": "d"},
                   "subsets": [{"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 80}, {"port": 81}]}]},
     "subsets[0].ports[0].name", "Required value"),
    ("endpointslices", {"metadata": {"name": "e", "namespace": "d"}, "addressType": "IPv4",
                        "endpoints": [{"addresses": ["fd00::1"]}]},
     "endpoints[0].addresses[0]", "must be an IPv4 address"),
    ("endpointslices", {"metadata": {"name": "e", "namespace": "d"}, "addressType": "IPv5", "endpoints": []},
     "addressType", "Unsupported value"),
    ("pv", {"metadata": {"name": "v"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}},
     "spec", "must specify a volume type"),
    ("pv", {"metadata": {"name": "v"}, "spec": {"capacity": {"storage": "0"}, "accessModes": ["Sometimes"],
                                                "hostPath": {"path": "/x"}}},
     "spec.capacity[storage]", "must be greater than zero"),
    ("pvc", {"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": [],
                                                                   "resources": {"requests": {"storage": "1Gi"}}}},
     "spec.accessModes", "Required value"),
    ("sc", {"metadata": {"name": "s"}, "provisioner": "x", "volumeBindingMode": "Later"}, "volumeBindingMode",
     "Unsupported value"),
    ("leases", {"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}},
     "spec.leaseDurationSeconds", "must be greater than 0"),
    ("events", {"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "namespace": "d"},
                "type": "Loud"}, "type", "Unsupported value"),
    ("secrets", {"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {}},
     "data[tls.crt]", "Required value"),
    ("configmaps", {"metadata": {"name": "c", "namespace": "d"}, "data": {"a/b": "x"}}, "data",
     "a valid config key must consist of"),
    ("configmaps", {"metadata": {"name": "c", "namespace": "d"}, "data": {"k": "x"}, "binaryData": {"k": "eA=="}},
     "data", "duplicate of key present in binaryData"),
    ("namespaces", {"metadata": {"name": "a.b"}}, "metadata.name", "RFC 1123 label"),
    ("configmaps", {"metadata": {"name": "c", "namespace": "d", "finalizers": ["orphan", "foregroundDeletion"]}},
     "metadata.finalizers", "cannot be both set"),
    ("configmaps", {"metadata": {"name": "c", "namespace": "d", "ownerReferences": [
        {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": True}]}},
     "metadata.ownerReferences", "Only one reference can have Controller set to true"),
    ("configmaps", {"metadata": {"name": "c", "namespace": "d", "ownerReferences": [
        {"apiVersion": "v1", "kind": "A", "name": "a"}]}}, "metadata.ownerReferences[0].uid", "Required value"),
])
def test_other_kind_rules(kind: str, obj: dict[str, Any], field: str, fragment: str) -> None:
    causes = causes_of(kind, obj)
    assert has(causes, field, fragment), causes


def test_annotation_size_limit() -> None:
    obj = {"metadata": {"name": "c", "namespace": "d", "annotations": {"big": "x" * (256 * 1024)}}}
    assert has(causes_of("configmaps", obj), "metadata.annotations", "Too long: must have at most 262144 bytes")


def test_namespace_and_uid_are_immutable() -> None:
    old = {"metadata": {"name": "c", "namespace": "d", "uid": "1"}}
    new = {"metadata": {"name": "c", "namespace": "e", "uid": "2"}}
    causes = causes_of("configmaps", new, old)
    assert has(causes, "metadata.namespace", "field is immutable") and has(causes, "metadata.uid", "immutable")


def test_cluster_scoped_kind_refuses_a_namespace() -> None:
    assert has(causes_of("nodes", {"metadata": {"name": "n", "namespace": "d"}}), "metadata.namespace",
               "not allowed on this type")


def test_schema_errors_name_map_keys_in_brackets() -> None:
    causes = causes_of("pods", {"metadata": {"name": "p", "labels": {"a": 1}}, "spec": {"containers": [
        {"name": "c", "image": "x", "resources": {"limits": {"cpu": [1]}}}]}})
    assert has(causes, "metadata.labels[a]", "must be of type string")
    assert has(causes, "spec.containers[0].resources.limits[cpu]", "must be of type string or number")


def test_non_object_body_is_a_cause_not_a_crash() -> None:
    assert strategy_for(lookup("pods")).validate([], None)  # type: ignore[arg-type]


# --- robustness: junk anywhere is reported, never a crash -------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "pods": {"metadata": {"name": "p", "namespace": "d", "labels": {"a": "b"}}, "spec": {
        "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "name": "h"}],
                        "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                        "resources": {"limits": {"cpu": "1"}}, "livenessProbe": {"httpGet": {"port": 80}}}],
        "volumes": [{"name": "v", "emptyDir": {}}], "tolerations": [{"key": "k", "operator": "Exists"}]}},
    "deployments": {"metadata": {"name": "d", "namespace": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}},
    "statefulsets": {"metadata": {"name": "s", "namespace": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}}, "volumeClaimTemplates": [{"metadata": {"name": "x"}, "spec": {}}],
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}},
    "services": {"metadata": {"name": "s", "namespace": "d"}, "spec": {
        "type": "NodePort", "ports": [{"port": 80, "nodePort": 30001, "targetPort": "h"}], "selector": {"a": "b"}}},
    "secrets": {"metadata": {"name": "s", "namespace": "d"}, "data": {"a": "YQ=="}, "stringData": {"b": "c"}},
    "configmaps": {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "b"}, "binaryData": {"c": "YQ=="}},
    "pvc": {"metadata": {"name": "c", "namespace": "d"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
    "pv": {"metadata": {"name": "v"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                               "hostPath": {"path": "/x"}}},
    "nodes": {"metadata": {"name": "n"}, "spec": {"podCIDR": "10.0.0.0/24", "taints": [{"key": "a", "effect":
                                                                                       "NoSchedule"}]}},
    "endpoints": {"metadata": {"name": "e", "namespace": "d"}, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]},
    "endpointslices": {"metadata": {"name": "e", "namespace": "d"}, "addressType": "IPv4",
                       "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]},
    "events": {"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "namespace": "d"}},
    "leases": {"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 10}},
}
JUNK: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], [1, "a", None], {}, {"a": [None]}]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, val in obj.items():
            out += _paths(val, prefix + (k,))
    elif isinstance(obj, list):
        for i, val in enumerate(obj):
            out += _paths(val, prefix + (i,))
    return out


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_samples_pass_and_junk_anywhere_is_reported_without_crashing(kind: str) -> None:
    s = strategy_for(lookup(kind))
    sample = copy.deepcopy(VALID[kind])
    s.default(sample)
    assert s.validate(sample, None) == []
    rng = random.Random(kind)  # deterministic per kind
    for path in _paths(VALID[kind]):
        for junk in rng.sample(JUNK, 4):
            obj = copy.deepcopy(VALID[kind])
            target = obj
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = copy.deepcopy(junk)
            s.default(obj)
            causes = s.validate(obj, None)
            assert isinstance(causes, list)
            assert s.validate(obj, copy.deepcopy(sample)) is not None  # update rules survive junk too


def test_only_init_containers_may_be_sidecars() -> None:
    pod = a_pod(restartPolicy="Always")
    assert has(causes_of("pods", pod), "spec.containers[0].restartPolicy", "may not be set for non-init containers")
    pod = a_pod()
    pod["spec"]["initContainers"] = [{"name": "side", "image": "x", "restartPolicy": "Always"}]
    assert causes_of("pods", pod) == []
    pod["spec"]["initContainers"][0]["restartPolicy"] = "Never"
    assert has(causes_of("pods", pod), "spec.initContainers[0].restartPolicy", "supported values: \"Always\"")


def test_node_name_and_external_ips_syntax() -> None:
    pod = a_pod()
    pod["spec"]["nodeName"] = "Node_1"
    assert has(causes_of("pods", pod), "spec.nodeName", "RFC 1123 subdomain")
    assert has(causes_of("services", a_service(externalIPs=["1.2.3"])), "spec.externalIPs[0]",
               "must be a valid IP address")


@pytest.mark.parametrize("sc, field, fragment", [
    ({"seccompProfile": {"type": "Bogus"}}, "spec.containers[0].securityContext.seccompProfile.type",
     'Unsupported value: "Bogus": supported values: "Localhost", "RuntimeDefault", "Unconfined"'),
    ({"seccompProfile": {}}, "spec.containers[0].securityContext.seccompProfile.type", "Required value"),
    ({"seccompProfile": {"type": "Localhost"}}, "spec.containers[0].securityContext.seccompProfile.localhostProfile",
     "must be set when seccomp type is Localhost"),
    ({"seccompProfile": {"type": "RuntimeDefault", "localhostProfile": "a.json"}},
     "spec.containers[0].securityContext.seccompProfile.localhostProfile",
     "can only be set when seccomp type is Localhost"),
    ({"seccompProfile": {"type": "Localhost", "localhostProfile": "../x.json"}},
     "spec.containers[0].securityContext.seccompProfile.localhostProfile", "must not contain '..'"),
    ({"seccompProfile": {"type": "Localhost", "localhostProfile": "/etc/x.json"}},
     "spec.containers[0].securityContext.seccompProfile.localhostProfile", "must be a relative path"),
    ({"allowPrivilegeEscalation": False, "privileged": True}, "spec.containers[0].securityContext",
     "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"),
    ({"allowPrivilegeEscalation": False, "capabilities": {"add": ["SYS_ADMIN"]}}, "spec.containers[0].securityContext",
     "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"),
])
def test_container_security_context_rules(sc: dict[str, Any], field: str, fragment: str) -> None:
    assert has(causes_of("pods", a_pod(securityContext=sc)), field, fragment)


def test_pod_seccomp_profile_rules() -> None:
    p = a_pod()
    p["spec"]["securityContext"] = {"seccompProfile": {"type": "Localhost", "localhostProfile": "ok/profile.json"}}
    assert causes_of("pods", p) == []
    p["spec"]["securityContext"] = {"seccompProfile": {"type": "unconfined"}}
    assert has(causes_of("pods", p), "spec.securityContext.seccompProfile.type", 'Unsupported value: "unconfined"')
    assert causes_of("pods", a_pod(securityContext={"seccompProfile": {"type": "Unconfined"},
                                                    "allowPrivilegeEscalation": False})) == []
