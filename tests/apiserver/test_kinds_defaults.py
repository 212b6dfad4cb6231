"""Defaults as a user sees them: create a minimal manifest, read back what the server stored."""
from __future__ import annotations

import base64

from pklib.client import Client
from pklib.resources import lookup
from tests.util import unique


async def test_pod_defaults_are_stored(client: Client, namespace: str) -> None:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": unique("p")},
            "spec": {"containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 8080}],
                                     "resources": {"limits": {"cpu": "250m", "memory": "32Mi"}},
                                     "readinessProbe": {"httpGet": {"port": 8080}}},
                                    {"name": "side", "image": "busybox:1.36"}]}}
    await client.create(lookup("pods"), body, namespace=namespace)
    got = await client.get(lookup("pods"), body["metadata"]["name"], namespace)
    spec = got["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["schedulerName"]) == ("Always", "ClusterFirst",
                                                                                 "default-scheduler")
    assert spec["terminationGracePeriodSeconds"] == 30 and spec["enableServiceLinks"] is True
    app, side = spec["containers"]
    assert app["imagePullPolicy"] == "Always" and side["imagePullPolicy"] == "IfNotPresent"
    assert app["ports"][0]["protocol"] == "TCP"
    assert app["resources"]["requests"] == {"cpu": "250m", "memory": "32Mi"}
    assert app["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert (app["readinessProbe"]["timeoutSeconds"], app["readinessProbe"]["periodSeconds"],
            app["readinessProbe"]["successThreshold"], app["readinessProbe"]["failureThreshold"]) == (1, 10, 1, 3)
    assert app["terminationMessagePath"] == "/dev/termination-log"
    assert got["status"]["phase"] == "Pending" and got["status"]["qosClass"] == "Burstable"


async def test_workload_defaults_are_stored(client: Client, namespace: str) -> None:
    template = {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}
    selector = {"matchLabels": {"app": "w"}}
    deploy = await client.create(lookup("deploy"), {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": unique("d")},
        "spec": {"selector": selector, "template": template}}, namespace=namespace)
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    assert spec["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"

    sts = await client.create(lookup("sts"), {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": unique("s")},
        "spec": {"serviceName": "s", "selector": selector, "template": template}}, namespace=namespace)
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}

    ds = await client.create(lookup("ds"), {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": unique("ds")},
        "spec": {"selector": selector, "template": template}}, namespace=namespace)
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}


async def test_service_defaults_are_stored(client: Client, namespace: str) -> None:
    svc = await client.create(lookup("svc"), {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": unique("s")},
        "spec": {"selector": {"app": "w"}, "ports": [{"port": 80}]}}, namespace=namespace)
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert spec["ipFamilies"] == ["IPv4"] and spec["internalTrafficPolicy"] == "Cluster"
    assert spec["clusterIPs"] == [spec["clusterIP"]]


async def test_config_and_storage_defaults_are_stored(client: Client, namespace: str) -> None:
    secret = await client.create(lookup("secrets"), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": unique("s")},
        "stringData": {"password": "hunter2"}}, namespace=namespace)
    assert secret["type"] == "Opaque" and "stringData" not in secret
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"

    pvc = await client.create(lookup("pvc"), {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": unique("c")},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
        namespace=namespace)
    assert pvc["spec"]["storageClassName"] == "local-path" and pvc["spec"]["volumeMode"] == "Filesystem"


async def test_namespace_defaults_are_stored(client: Client) -> None:
    name = unique("ns")
    ns = await client.create(lookup("ns"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        assert ns["spec"]["finalizers"] == ["kubernetes"] and ns["status"]["phase"] == "Active"
    finally:
        await client.delete(lookup("ns"), name)
