"""Probes, OOM kills and CrashLoopBackOff on the real kubelet."""
from __future__ import annotations

from datetime import datetime

import pytest

from pklib.client import Client
from pklib.resources import lookup
from tests.support.node import Node, cond, cstatus, ctr, exec_in, phase, pod, running, wait_pod
from tests.util import wait_for

pytestmark = pytest.mark.root

PODS = lookup("pods")
EVENTS = lookup("events")
assert PODS and EVENTS

SERVE = "mkdir -p /www && exec httpd -f -p 8080 -h /www"


async def test_readiness_http_probe_gates_ready(node: Node, kc: Client, ns: str) -> None:
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
    await kc.create(PODS, pod("gated", ctr("web", SERVE, readinessProbe=probe,
                                           ports=[{"name": "http", "containerPort": 8080}])), ns)
    p = await wait_pod(kc, ns, "gated", running, what="gated Running")
    assert cond(p, "Ready") == "False" and cstatus(p, "web")["ready"] is False
    assert (await exec_in(node, p, "web", ["sh", "-c", "echo ok > /www/ready"])).exit_code == 0
    p = await wait_pod(kc, ns, "gated", lambda p: cond(p, "Ready") == "True", 15, "Ready after /ready appears")
    assert cond(p, "ContainersReady") == "True" and cstatus(p, "web")["ready"] is True
    assert (await exec_in(node, p, "web", ["rm", "/www/ready"])).exit_code == 0
    p = await wait_pod(kc, ns, "gated", lambda p: cond(p, "Ready") == "False", 15, "not Ready after removal")
    assert cstatus(p, "web")["restartCount"] == 0  # readiness never restarts


async def test_failing_liveness_probe_restarts_and_records_event(kc: Client, ns: str) -> None:
    probe = {"exec": {"command": ["test", "-e", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 2}
    await kc.create(PODS, pod("sick", ctr("c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 3600",
                                          livenessProbe=probe), terminationGracePeriodSeconds=1), ns)
    p = await wait_pod(kc, ns, "sick", lambda p: cstatus(p, "c").get("restartCount", 0) >= 1, 30,
                       "restart after liveness failure")
    assert "terminated" in cstatus(p, "c")["lastState"]

    async def event():
        items = (await kc.list(EVENTS, ns)).get("items") or []
        return [e for e in items if e["reason"] == "Unhealthy" and e["involvedObject"]["name"] == "sick"
                and e["message"].startswith("Liveness probe failed")]
    found = await wait_for(event, 10, 0.2, message="Unhealthy event")
    assert found[0]["type"] == "Warning"


async def test_startup_probe_holds_back_readiness(kc: Client, ns: str) -> None:
    startup = {"exec": {"command": ["test", "-e", "/tmp/up"]}, "periodSeconds": 1, "failureThreshold": 30}
    ready = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    await kc.create(PODS, pod("slow", ctr("c", "sleep 3; touch /tmp/up; exec sleep 3600", startupProbe=startup,
                                          readinessProbe=ready)), ns)
    p = await wait_pod(kc, ns, "slow", running, what="slow Running")
    assert cstatus(p, "c")["started"] is False and cond(p, "Ready") == "False"
    p = await wait_pod(kc, ns, "slow", lambda p: cond(p, "Ready") == "True", 20, "Ready after startup")
    assert cstatus(p, "c")["started"] is True and cstatus(p, "c")["restartCount"] == 0


async def test_memory_hog_is_oom_killed_and_restarted_with_backoff(kc: Client, ns: str) -> None:
    hog = ctr("hog", "dd if=/dev/zero of=/dev/null bs=64M count=1",
              resources={"limits": {"memory": "32Mi"}, "requests": {"memory": "32Mi"}})
    await kc.create(PODS, pod("hog", hog), ns)
    seen: set[str] = set()

    async def crashlooping():
        p = await kc.get(PODS, "hog", ns)
        cs = cstatus(p, "hog")
        seen.add(cs.get("state", {}).get("waiting", {}).get("reason", ""))
        return p if cs.get("restartCount", 0) >= 2 and "CrashLoopBackOff" in seen else None
    p = await wait_for(crashlooping, 40, 0.1, message="OOMKilled restarts with CrashLoopBackOff")
    last = cstatus(p, "hog")["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    assert p["status"]["qosClass"] == "Burstable"
    assert phase(p) == "Running"


async def test_backoff_doubles_between_restarts(kc: Client, ns: str) -> None:
    """Base 1 s in the test kubelet: the gaps between restarts grow (1 s, 2 s, 4 s ...)."""
    await kc.create(PODS, pod("crash", ctr("c", "exit 1")), ns)
    finished: dict[str, str] = {}  # container id -> finishedAt, from whichever status field shows it

    async def collect():
        cs = cstatus(await kc.get(PODS, "crash", ns), "c")
        for state in (cs.get("state") or {}, cs.get("lastState") or {}):
            term = state.get("terminated") or {}
            if term.get("containerID") and term.get("finishedAt"):
                finished[term["containerID"]] = term["finishedAt"]
        return len(finished) >= 4
    await wait_for(collect, 40, 0.1, message="4 crashes")
    times = sorted(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in finished.values())[:4]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert gaps[-1] > gaps[0], gaps
