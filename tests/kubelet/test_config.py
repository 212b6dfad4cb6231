"""Environment and volumes on the real kubelet: fieldRef/configMap env, emptyDir, configMap, PVC, errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from pklib.client import Client
from pklib.resources import lookup
from tests.support.node import Node, cond, cstatus, ctr, exec_in, pod, running, wait_pod
from tests.util import unique, wait_for

pytestmark = pytest.mark.root

PODS = lookup("pods")
CONFIGMAPS = lookup("configmaps")
SECRETS = lookup("secrets")
SERVICES = lookup("services")
PVS = lookup("persistentvolumes")
PVCS = lookup("persistentvolumeclaims")
assert PODS and CONFIGMAPS and SECRETS and SERVICES and PVS and PVCS


async def env_of(node: Node, p: dict, container: str = "c") -> dict[str, str]:
    r = await exec_in(node, p, container, ["env"])
    return dict(line.split("=", 1) for line in r.stdout.decode().splitlines() if "=" in line)


async def test_env_from_field_refs_configmap_secret_and_expansion(node: Node, kc: Client, ns: str) -> None:
    await kc.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                                 "data": {"mode": "fast", "level": "3"}}, ns)
    await kc.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                              "data": {"password": "czNjcjN0"}}, ns)  # s3cr3t
    await kc.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "my-db"},
                               "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}, ns)
    c = ctr("c", "exec sleep 3600", env=[
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": True}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "GREETING", "value": "hi $(POD_NAME) in $(MODE), $$(POD_NAME) stays"}],
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        resources={"limits": {"memory": "64Mi"}})
    await kc.create(PODS, pod("envy", c, labels={"team": "blue"}), ns)
    p = await wait_pod(kc, ns, "envy", running, what="envy Running")
    env = await env_of(node, p)
    assert env["POD_IP"] == p["status"]["podIP"]
    assert env["HOST_IP"] == p["status"]["hostIP"] != ""
    assert (env["POD_NAME"], env["TEAM"], env["MODE"], env["PASSWORD"]) == ("envy", "blue", "fast", "s3cr3t")
    assert "MISSING" not in env
    assert env["MEM"] == "64"
    assert env["GREETING"] == "hi envy in fast, $(POD_NAME) stays"
    assert (env["CFG_mode"], env["CFG_level"]) == ("fast", "3")
    svc = await kc.get(SERVICES, "my-db", ns)
    assert env["MY_DB_SERVICE_HOST"] == svc["spec"]["clusterIP"] and env["MY_DB_SERVICE_PORT"] == "5432"


async def test_missing_configmap_is_a_config_error_until_created(kc: Client, ns: str) -> None:
    c = ctr("c", "exec sleep 3600", env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "k"}}}])
    await kc.create(PODS, pod("waits", c), ns)
    p = await wait_pod(kc, ns, "waits", lambda p: cstatus(p, "c").get("state", {}).get("waiting", {}).get("reason")
                       == "CreateContainerConfigError", what="CreateContainerConfigError")
    assert 'configmap "late" not found' in cstatus(p, "c")["state"]["waiting"]["message"]
    assert p["status"]["phase"] == "Pending"
    await kc.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"},
                                 "data": {"k": "v"}}, ns)
    await wait_pod(kc, ns, "waits", running, 15, "Running once the ConfigMap exists")


async def test_image_never_pulled_is_reported(kc: Client, ns: str) -> None:
    c = {"name": "c", "image": "pkube.local/not-there:v1", "imagePullPolicy": "Never"}
    await kc.create(PODS, pod("noimage", c), ns)
    p = await wait_pod(kc, ns, "noimage", lambda p: cstatus(p, "c").get("state", {}).get("waiting", {}).get("reason")
                       == "ErrImageNeverPull", what="ErrImageNeverPull")
    assert "not present with pull policy of Never" in cstatus(p, "c")["state"]["waiting"]["message"]


async def test_empty_dir_shared_and_configmap_volume(node: Node, kc: Client, ns: str) -> None:
    await kc.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "files"},
                                 "data": {"app.conf": "port=80\n", "other": "x"}}, ns)
    await kc.create(PODS, pod(
        "vols",
        ctr("writer", "echo shared-data > /data/msg; exec sleep 3600",
            volumeMounts=[{"name": "scratch", "mountPath": "/data"}]),
        ctr("reader", "exec sleep 3600", volumeMounts=[
            {"name": "scratch", "mountPath": "/in"}, {"name": "mem", "mountPath": "/mem"},
            {"name": "conf", "mountPath": "/etc/app", "readOnly": True}]),
        volumes=[{"name": "scratch", "emptyDir": {}}, {"name": "mem", "emptyDir": {"medium": "Memory",
                                                                                    "sizeLimit": "8Mi"}},
                 {"name": "conf", "configMap": {"name": "files", "items": [{"key": "app.conf", "path": "app.conf"}]}}]),
        ns)
    p = await wait_pod(kc, ns, "vols", running, what="vols Running")

    async def shared():
        r = await exec_in(node, p, "reader", ["cat", "/in/msg"])
        return r.stdout.decode().strip() == "shared-data"
    await wait_for(shared, 10, 0.2, message="reader sees the writer's file")
    r = await exec_in(node, p, "reader", ["cat", "/etc/app/app.conf"])
    assert r.stdout.decode() == "port=80\n"
    assert (await exec_in(node, p, "reader", ["ls", "/etc/app"])).stdout.decode().split() == ["app.conf"]
    assert (await exec_in(node, p, "reader", ["touch", "/etc/app/x"])).exit_code != 0  # readOnly
    r = await exec_in(node, p, "reader", ["sh", "-c", "grep ' /mem ' /proc/mounts"])
    assert "tmpfs" in r.stdout.decode() and "size=8192k" in r.stdout.decode()
    # an update of the ConfigMap reaches the running pod (sync frequency 2 s in the test kubelet)
    await kc.patch(CONFIGMAPS, "files", {"data": {"app.conf": "port=8080\n"}}, ns)

    async def updated():
        r = await exec_in(node, p, "reader", ["cat", "/etc/app/app.conf"])
        return r.stdout.decode() == "port=8080\n"
    await wait_for(updated, 15, 0.2, message="configMap update propagated into the volume")


async def test_volumes_made_beside_the_sandbox_or_after_it_for_the_pod_ip(node: Node, kc: Client, ns: str) -> None:
    # volumes are made while the sandbox is (Kubernetes mounts them before the sandbox): a missing configMap holds
    # the container back until it exists
    c = ctr("c", "exec sleep 3600", volumeMounts=[{"name": "conf", "mountPath": "/conf"},
                                                  {"name": "info", "mountPath": "/info"}])
    await kc.create(PODS, pod("beside", c, volumes=[
        {"name": "conf", "configMap": {"name": "later"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]),
        ns)
    p = await wait_pod(kc, ns, "beside", lambda p: cstatus(p, "c").get("state", {}).get("waiting", {}).get("reason")
                       == "CreateContainerConfigError", what="CreateContainerConfigError")
    assert 'configmap "later" not found' in cstatus(p, "c")["state"]["waiting"]["message"]
    await kc.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"},
                                 "data": {"k": "v"}}, ns)
    p = await wait_pod(kc, ns, "beside", running, 15, "Running once the ConfigMap exists")
    assert (await exec_in(node, p, "c", ["cat", "/conf/k", "/info/name"])).stdout.decode() == "vbeside"
    # a file with the pod's IP waits for the sandbox, which gives the pod its IP
    await kc.create(PODS, pod("ip-file", ctr("c", "exec sleep 3600", volumeMounts=[
        {"name": "info", "mountPath": "/info"}]), volumes=[{"name": "info", "projected": {"sources": [
            {"downwardAPI": {"items": [{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}}]}}]), ns)
    p = await wait_pod(kc, ns, "ip-file", running, what="ip-file Running")
    assert (await exec_in(node, p, "c", ["cat", "/info/ip"])).stdout.decode() == p["status"]["podIP"] != ""


async def test_pvc_backed_pod_keeps_data_across_delete_and_recreate(node: Node, kc: Client, ns: str) -> None:
    pv_name = unique("pv")
    data_dir = node.tmp / "pv-data" / pv_name
    await kc.create(PVS, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
                          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                   "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Retain",
                                   "hostPath": {"path": str(data_dir), "type": "DirectoryOrCreate"}}})
    try:
        await kc.create(PVCS, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                               "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                                        "resources": {"requests": {"storage": "1Gi"}}}}, ns)

        async def bound():
            return (await kc.get(PVCS, "data", ns)).get("status", {}).get("phase") == "Bound"
        await wait_for(bound, 20, 0.2, message="PVC bound")
        spec = {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}
        mount = [{"name": "d", "mountPath": "/data"}]
        await kc.create(PODS, pod("keeper", ctr("c", "echo $(date +%s%N) >> /data/log; exec sleep 3600",
                                                volumeMounts=mount), **spec), ns)
        p = await wait_pod(kc, ns, "keeper", running, what="keeper Running")
        first = (await exec_in(node, p, "c", ["cat", "/data/log"])).stdout.decode().split()
        assert len(first) == 1
        await kc.delete(PODS, "keeper", ns, grace_period_seconds=1)

        async def gone():
            return not any(i["metadata"]["name"] == "keeper" for i in (await kc.list(PODS, ns))["items"])
        await wait_for(gone, 20, 0.2, message="keeper deleted")
        await kc.create(PODS, pod("keeper", ctr("c", "echo $(date +%s%N) >> /data/log; exec sleep 3600",
                                                volumeMounts=mount), **spec), ns)
        p = await wait_pod(kc, ns, "keeper", running, what="keeper Running again")
        second = (await exec_in(node, p, "c", ["cat", "/data/log"])).stdout.decode().split()
        assert second[0] == first[0] and len(second) == 2
        assert Path(data_dir, "log").read_text().split() == second
    finally:
        await kc.delete(PVS, pv_name)


async def test_status_is_not_rewritten_while_nothing_changes(kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("calm", ctr("c", "exec sleep 3600")), ns)
    p = await wait_pod(kc, ns, "calm", lambda p: cond(p, "Ready") == "True", what="calm Ready")
    rv = p["metadata"]["resourceVersion"]

    async def changed():
        return (await kc.get(PODS, "calm", ns))["metadata"]["resourceVersion"] != rv
    with pytest.raises(AssertionError):
        await wait_for(changed, 3, 0.2, message="a needless status write")


async def test_dns_policy_hostname_subdomain_and_post_start_hook(node: Node, kc: Client, ns: str) -> None:
    hook = {"postStart": {"exec": {"command": ["sh", "-c", "echo hooked > /tmp/hook"]}}}
    await kc.create(PODS, pod("named", ctr("c", "exec sleep 3600", lifecycle=hook), hostname="db-0",
                              subdomain="db", hostAliases=[{"ip": "10.1.2.3", "hostnames": ["legacy.example"]}]),
                    ns)
    await kc.create(PODS, pod("custom", ctr("c", "exec sleep 3600"), dnsPolicy="None",
                              dnsConfig={"nameservers": ["10.9.9.9"], "searches": ["corp.example"],
                                         "options": [{"name": "ndots", "value": "2"}]}), ns)
    p = await wait_pod(kc, ns, "named", running, what="named Running")
    resolv = (await exec_in(node, p, "c", ["cat", "/etc/resolv.conf"])).stdout.decode()
    assert "nameserver 10.96.0.10" in resolv
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv and "ndots:5" in resolv
    hosts = (await exec_in(node, p, "c", ["cat", "/etc/hosts"])).stdout.decode()
    assert f"{p['status']['podIP']}\tdb-0.db.{ns}.svc.cluster.local\tdb-0" in hosts
    assert "10.1.2.3\tlegacy.example" in hosts
    assert (await exec_in(node, p, "c", ["hostname"])).stdout.decode().strip() == "db-0"
    assert (await exec_in(node, p, "c", ["cat", "/tmp/hook"])).stdout.decode().strip() == "hooked"
    p = await wait_pod(kc, ns, "custom", running, what="custom Running")
    resolv = (await exec_in(node, p, "c", ["cat", "/etc/resolv.conf"])).stdout.decode()
    assert resolv.split("\n")[:3] == ["search corp.example", "nameserver 10.9.9.9", "options ndots:2"]


async def test_failed_pull_is_err_image_pull_then_back_off(kc: Client, ns: str) -> None:
    from tests.util import free_port
    ref = f"127.0.0.1:{free_port()}/nothing:v1"  # a closed loopback port: the pull fails at once
    await kc.create(PODS, pod("nopull", {"name": "c", "image": ref, "imagePullPolicy": "IfNotPresent"}), ns)
    reasons: set[str] = set()

    async def both():
        p = await kc.get(PODS, "nopull", ns)
        reasons.add(cstatus(p, "c").get("state", {}).get("waiting", {}).get("reason", ""))
        return {"ErrImagePull", "ImagePullBackOff"} <= reasons
    await wait_for(both, 20, 0.05, message="ErrImagePull, then ImagePullBackOff")
    p = await kc.get(PODS, "nopull", ns)
    assert p["status"]["phase"] == "Pending"
    events = (await kc.list(lookup("events"), ns)).get("items") or []
    assert any(e["reason"] == "Failed" and ref in e["message"] for e in events)
