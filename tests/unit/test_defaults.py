"""Defaulting: what Kubernetes fills in for omitted fields, kind by kind."""
from __future__ import annotations

import base64
from typing import Any

import pytest

from apiserver.kinds import strategy_for
from apiserver.kinds.podspec import pull_policy_for
from pklib.api.qos import qos_class
from pklib.resources import lookup


def defaulted(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    strategy_for(lookup(kind)).default(obj)
    return obj


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def template(labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"labels": labels or {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}


@pytest.mark.parametrize("image, policy", [
    ("busybox", "Always"),
    ("busybox:latest", "Always"),
    ("busybox:1.36", "IfNotPresent"),
    ("localhost:5000/busybox", "Always"),
    ("localhost:5000/busybox:v1", "IfNotPresent"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy_follows_the_tag(image: str, policy: str) -> None:
    assert pull_policy_for(image) == policy
    p = defaulted("pods", {"spec": {"containers": [{"name": "c", "image": image}]}})
    assert p["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_pod_spec_defaults() -> None:
    spec = defaulted("pods", pod())["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    c = spec["containers"][0]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"


def test_pod_defaults_keep_what_the_user_set() -> None:
    spec = defaulted("pods", pod(restartPolicy="Never", dnsPolicy="Default", terminationGracePeriodSeconds=0))["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"]) == ("Never", "Default", 0)


def test_container_ports_probes_and_env() -> None:
    p = pod()
    c = p["spec"]["containers"][0]
    c["ports"] = [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]
    c["livenessProbe"] = {"httpGet": {"port": 80}}
    c["readinessProbe"] = {"tcpSocket": {"port": 80}, "periodSeconds": 3}
    c["env"] = [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    c = defaulted("pods", p)["spec"]["containers"][0]
    assert [x["protocol"] for x in c["ports"]] == ["TCP", "UDP"]
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                  "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["readinessProbe"]["periodSeconds"] == 3
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"


def test_pod_requests_default_to_limits_but_not_in_templates() -> None:
    resources = {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}
    p = pod()
    p["spec"]["containers"][0]["resources"] = resources
    c = defaulted("pods", p)["spec"]["containers"][0]
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    d = {"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template()}}
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    c = defaulted("deployments", d)["spec"]["template"]["spec"]["containers"][0]
    assert "requests" not in c["resources"]


def test_volume_defaults() -> None:
    p = pod(volumes=[{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "x"}},
                     {"name": "s", "secret": {"secretName": "s", "defaultMode": 0o400}}])
    vols = defaulted("pods", p)["spec"]["volumes"]
    assert vols[0]["emptyDir"] == {}
    assert vols[1]["configMap"]["defaultMode"] == 0o644
    assert vols[2]["secret"]["defaultMode"] == 0o400


@pytest.mark.parametrize("resources, qos", [
    ([{}], "BestEffort"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}], "Guaranteed"),
    ([{"requests": {"cpu": "1"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
])
def test_qos_class(resources: list[dict[str, Any]], qos: str) -> None:
    spec = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}
    assert qos_class(spec) == qos


def test_pod_status_gets_qos_class() -> None:
    p = pod()
    p["status"] = {"phase": "Pending"}
    assert defaulted("pods", p)["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_service_defaults() -> None:
    svc = defaulted("services", {"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}],
                                          "selector": {"app": "a"}}})
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert spec["ports"][1]["targetPort"] == "dns"
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec


def test_service_node_port_and_load_balancer_defaults() -> None:
    spec = defaulted("services", {"spec": {"type": "NodePort", "ports": [{"port": 80}]}})["spec"]
    assert spec["externalTrafficPolicy"] == "Cluster"
    spec = defaulted("services", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})["spec"]
    assert spec["externalTrafficPolicy"] == "Cluster" and spec["allocateLoadBalancerNodePorts"] is True


def test_service_session_affinity_client_ip_timeout() -> None:
    spec = defaulted("services", {"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}})["spec"]
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_external_name_service_gets_no_ip_fields() -> None:
    spec = defaulted("services", {"spec": {"type": "ExternalName", "externalName": "db.example.com"}})["spec"]
    assert "ipFamilies" not in spec and "clusterIP" not in spec


def test_deployment_defaults() -> None:
    d = defaulted("deployments", {"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template()}})
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    c = spec["template"]["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert spec["template"]["spec"]["restartPolicy"] == "Always"


def test_deployment_recreate_gets_no_rolling_update() -> None:
    d = defaulted("deployments", {"spec": {"strategy": {"type": "Recreate"}, "template": template()}})
    assert d["spec"]["strategy"] == {"type": "Recreate"}


def test_replicaset_daemonset_statefulset_defaults() -> None:
    rs = defaulted("replicasets", {"spec": {"template": template()}})
    assert rs["spec"]["replicas"] == 1
    ds = defaulted("daemonsets", {"spec": {"template": template()}})
    assert "replicas" not in ds["spec"]
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10
    sts = defaulted("statefulsets", {"spec": {"template": template(), "volumeClaimTemplates": [
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})
    spec = sts["spec"]
    assert spec["replicas"] == 1 and spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"


def test_namespace_defaults() -> None:
    ns = defaulted("namespaces", {"metadata": {"name": "x"}})
    assert ns["spec"] == {"finalizers": ["kubernetes"]} and ns["status"] == {"phase": "Active"}


def test_secret_defaults_and_string_data() -> None:
    s = defaulted("secrets", {"metadata": {"name": "s"}, "data": {"a": base64.b64encode(b"1").decode()},
                              "stringData": {"b": "two"}})
    assert s["type"] == "Opaque"
    assert "stringData" not in s
    assert base64.b64decode(s["data"]["b"]) == b"two" and base64.b64decode(s["data"]["a"]) == b"1"


def test_pv_pvc_storageclass_defaults() -> None:
    pv = defaulted("pv", {"spec": {"capacity": {"storage": "1Gi"}}})
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and pv["spec"]["volumeMode"] == "Filesystem"
    pvc = defaulted("pvc", {"spec": {"accessModes": ["ReadWriteOnce"]}})
    assert pvc["spec"]["volumeMode"] == "Filesystem" and pvc["spec"]["storageClassName"] == "local-path"
    explicit_none = defaulted("pvc", {"spec": {"storageClassName": ""}})
    assert explicit_none["spec"]["storageClassName"] == ""
    sc = defaulted("sc", {"provisioner": "x"})
    assert sc["reclaimPolicy"] == "Delete" and sc["volumeBindingMode"] == "Immediate"


@pytest.mark.parametrize("kind", ["pods", "deployments", "statefulsets", "daemonsets", "services", "secrets",
                                  "pvc", "pv", "endpoints", "endpointslices"])
@pytest.mark.parametrize("junk", [{"spec": "x"}, {"spec": {"containers": "x", "template": 1, "ports": 5}},
                                  {"spec": {"containers": [1, None]}}, {"subsets": [1], "ports": [2]}])
def test_defaulting_never_crashes_on_malformed_input(kind: str, junk: dict[str, Any]) -> None:
    # Defaulting runs before validation; it must leave junk for validation to report.
    defaulted(kind, junk)


def test_nulls_mean_unset() -> None:
    # Clients send explicit nulls (Go's nil pointers, `namespace: None` of cluster-scoped owners).
    p = defaulted("pods", pod(terminationGracePeriodSeconds=None, nodeSelector=None))
    assert p["spec"]["terminationGracePeriodSeconds"] == 30 and "nodeSelector" not in p["spec"]
    ev = {"metadata": {"name": "n.1", "namespace": "default"},
          "involvedObject": {"kind": "Node", "name": "n", "namespace": None, "uid": None}}
    strategy = strategy_for(lookup("events"))
    strategy.default(ev)
    assert ev["involvedObject"] == {"kind": "Node", "name": "n"}
    assert strategy.validate(ev, None) == []
