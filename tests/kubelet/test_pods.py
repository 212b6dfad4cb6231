"""Pods on the real kubelet: networking inside the pod, Deployments, restart policies, init containers."""
from __future__ import annotations

import pytest

from pklib.client import Client
from pklib.resources import lookup
from tests.support.node import (BUSYBOX, Node, cond, cstatus, ctr, exec_in, phase, pod, running, wait_pod)
from tests.util import wait_for

pytestmark = pytest.mark.root

PODS = lookup("pods")
DEPLOYMENTS = lookup("deployments")
assert PODS and DEPLOYMENTS

SERVE = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"


async def test_two_containers_reach_each_other_on_localhost(node: Node, kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("duo", ctr("web", SERVE), ctr("client", "exec sleep 3600")), ns)
    p = await wait_pod(kc, ns, "duo", lambda p: cond(p, "Ready") == "True", what="pod duo Ready")
    assert phase(p) == "Running"
    st = p["status"]
    assert st["podIP"].startswith(node.cidr.rsplit(".", 1)[0] + ".")
    assert st["hostIP"] and st["qosClass"] == "BestEffort" and st["startTime"]
    for name in ("web", "client"):
        cs = cstatus(p, name)
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
        assert cs["containerID"].startswith("runc://") and cs["image"] == BUSYBOX

    async def fetched():
        r = await exec_in(node, p, "client", ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])
        return r if r.exit_code == 0 else None
    r = await wait_for(fetched, 10, 0.2, message="wget over localhost from the second container")
    assert r.stdout.decode().strip() == "hello-from-duo"


async def test_deployment_of_three_gets_three_ready_pods_with_distinct_ips(node: Node, kc: Client, ns: str) -> None:
    await kc.create(DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"terminationGracePeriodSeconds": 1, "containers": [ctr("web", SERVE)]}}}}, ns)

    async def three_ready():
        items = (await kc.list(PODS, ns, label_selector="app=web")).get("items") or []
        ready = [p for p in items if cond(p, "Ready") == "True" and not p["metadata"].get("deletionTimestamp")]
        return ready if len(ready) == 3 else None
    pods = await wait_for(three_ready, 40, 0.2, message="3 Ready pods of the Deployment")
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3
    assert all(p["spec"]["nodeName"] == node.name for p in pods)


async def test_restart_policy_never_and_onfailure_outcomes(kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("never-ok", ctr("c", "exit 0"), restartPolicy="Never"), ns)
    await kc.create(PODS, pod("never-fail", ctr("c", "exit 3"), restartPolicy="Never"), ns)
    await kc.create(PODS, pod("onfail", ctr("c", "if [ -e /tmp/x ]; then exit 0; fi; exit 1"),
                              restartPolicy="OnFailure"), ns)
    ok = await wait_pod(kc, ns, "never-ok", lambda p: phase(p) == "Succeeded", what="never-ok Succeeded")
    term = cstatus(ok, "c")["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (0, "Completed")
    bad = await wait_pod(kc, ns, "never-fail", lambda p: phase(p) == "Failed", what="never-fail Failed")
    term = cstatus(bad, "c")["state"]["terminated"]
    assert (term["exitCode"], term["reason"], cstatus(bad, "c")["restartCount"]) == (3, "Error", 0)
    assert cond(bad, "Ready") == "False"
    # OnFailure: a failing container is restarted (the /tmp of a new container is empty again, so it keeps failing)
    p = await wait_pod(kc, ns, "onfail", lambda p: cstatus(p, "c").get("restartCount", 0) >= 2,
                       what="OnFailure restarts")
    assert phase(p) == "Running"
    last = cstatus(p, "c")["lastState"]["terminated"]
    assert last["exitCode"] == 1 and last["reason"] == "Error"


async def test_init_containers_run_in_order_before_app_containers(node: Node, kc: Client, ns: str) -> None:
    vol = [{"name": "work", "mountPath": "/work"}]
    await kc.create(PODS, pod(
        "inits", ctr("app", "cat /work/log; exec sleep 3600", volumeMounts=vol),
        initContainers=[ctr("first", "echo first >> /work/log", volumeMounts=vol),
                        ctr("second", "grep -q first /work/log && echo second >> /work/log", volumeMounts=vol)],
        volumes=[{"name": "work", "emptyDir": {}}]), ns)
    p = await wait_pod(kc, ns, "inits", running, what="inits Running")
    assert cond(p, "Initialized") == "True"
    for name in ("first", "second"):
        term = cstatus(p, name, init=True)["state"]["terminated"]
        assert term["exitCode"] == 0 and term["reason"] == "Completed"
    first = cstatus(p, "first", init=True)["state"]["terminated"]["finishedAt"]
    second = cstatus(p, "second", init=True)["state"]["terminated"]["startedAt"]
    assert first <= second
    r = await exec_in(node, p, "app", ["cat", "/work/log"])
    assert r.stdout.decode().split() == ["first", "second"]


async def test_failing_init_container_keeps_pod_pending_or_fails_it(kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("init-never", ctr("app", "sleep 3600"), restartPolicy="Never",
                              initContainers=[ctr("boom", "exit 7")]), ns)
    p = await wait_pod(kc, ns, "init-never", lambda p: phase(p) == "Failed", what="init failure fails a Never pod")
    assert cstatus(p, "boom", init=True)["state"]["terminated"]["exitCode"] == 7
    assert "running" not in cstatus(p, "app").get("state", {})
    assert cond(p, "Initialized") == "False"
