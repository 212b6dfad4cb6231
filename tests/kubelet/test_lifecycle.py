"""Deletion and restart safety of the real kubelet."""
from __future__ import annotations

import signal
import time

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.node import Node, _wait_node, cond, cstatus, ctr, pod, running, wait_pod
from tests.util import wait_for

pytestmark = pytest.mark.root

PODS = lookup("pods")
assert PODS


async def _gone(kc: Client, ns: str, name: str) -> bool:
    try:
        await kc.get(PODS, name, ns)
    except ApiError as e:
        return e.code == 404
    return False


def _sandboxes(node: Node) -> set[str]:
    d = node.runtime_config().state_dir / "sandboxes"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


async def test_graceful_deletion_runs_pre_stop_then_sigterm_within_grace(node: Node, kc: Client,
                                                                          privileged_ns: str) -> None:
    out = node.tmp / "term-out" / privileged_ns
    script = "trap 'echo got-TERM >> /out/log; exit 0' TERM; echo up > /out/up; while true; do sleep 0.1; done"
    hook = {"preStop": {"exec": {"command": ["sh", "-c", "echo pre-stop >> /out/log"]}}}
    await kc.create(PODS, pod("polite", ctr("c", script, volumeMounts=[{"name": "o", "mountPath": "/out"}],
                                            lifecycle=hook),
                              volumes=[{"name": "o", "hostPath": {"path": str(out), "type": "DirectoryOrCreate"}}],
                              terminationGracePeriodSeconds=20), privileged_ns)
    await wait_pod(kc, privileged_ns, "polite", running, what="polite Running")
    await wait_for(lambda: _async_exists(out / "up"), 10, 0.1, message="trap installed")
    started = time.monotonic()
    await kc.delete(PODS, "polite", privileged_ns)
    await wait_for(lambda: _gone(kc, privileged_ns, "polite"), 20, 0.1, message="deletion completed by the kubelet")
    took = time.monotonic() - started
    assert (out / "log").read_text().split() == ["pre-stop", "got-TERM"]  # the hook ran first, then SIGTERM
    assert took < 10, f"a container exiting on SIGTERM held the deletion for {took:.1f}s"


async def test_deletion_kills_a_container_ignoring_sigterm_after_grace(node: Node, kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("stubborn", ctr("c", "trap '' TERM; while true; do sleep 0.1; done"),
                              terminationGracePeriodSeconds=2), ns)
    await wait_pod(kc, ns, "stubborn", running, what="stubborn Running")
    started = time.monotonic()
    await kc.delete(PODS, "stubborn", ns)
    await wait_for(lambda: _gone(kc, ns, "stubborn"), 20, 0.1, message="deletion after SIGKILL")
    took = time.monotonic() - started
    assert 1.5 <= took < 10, took


async def test_force_deleted_pod_is_cleaned_up(node: Node, kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("forced", ctr("c", "trap '' TERM; exec sleep 3600")), ns)
    p = await wait_pod(kc, ns, "forced", running, what="forced Running")
    before = _sandboxes(node)
    await kc.delete(PODS, "forced", ns, grace_period_seconds=0)
    cid = cstatus(p, "c")["containerID"].split("://")[1]
    rt = node.runtime()

    async def removed():
        return cid not in rt.containers.ids() and len(_sandboxes(node)) < len(before)
    await wait_for(removed, 15, 0.1, message="container and sandbox of a force-deleted pod removed")


async def test_kubelet_sigkill_and_restart_adopts_running_pods(node: Node, kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("survivor", ctr("c", "exec sleep 3600")), ns)
    await kc.create(PODS, pod("doomed", ctr("c", "exec sleep 3600")), ns)
    p = await wait_pod(kc, ns, "survivor", lambda p: cond(p, "Ready") == "True", what="survivor Ready")
    d = await wait_pod(kc, ns, "doomed", lambda p: cond(p, "Ready") == "True", what="doomed Ready")
    before = cstatus(p, "c")
    assert node.kubelet is not None
    node.kubelet.send_signal(signal.SIGKILL)
    node.kubelet.wait(10)
    # while the kubelet is down: one pod is force-deleted, a new one is bound to the node
    await kc.delete(PODS, "doomed", ns, grace_period_seconds=0)
    await kc.create(PODS, pod("newcomer", ctr("c", "exec sleep 3600")), ns)
    node.start_kubelet()
    await _wait_node(node)
    await wait_pod(kc, ns, "newcomer", lambda p: cond(p, "Ready") == "True", 30, "newcomer Ready after restart")
    doomed_cid = cstatus(d, "c")["containerID"].split("://")[1]
    rt = node.runtime()
    await wait_for(lambda: _async(doomed_cid not in rt.containers.ids()), 15, 0.1,
                   message="the pod deleted while the kubelet was down is cleaned up")
    after = cstatus(await kc.get(PODS, "survivor", ns), "c")
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == before["restartCount"] == 0
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
    survivor_containers = [c for c in await rt.list_containers() if c.labels.get("pkube.io/pod-uid")
                           == p["metadata"]["uid"]]
    assert len(survivor_containers) == 1  # no duplicate


async def _async(value):
    return value


async def _async_exists(path):
    return path.exists()


async def test_cleanup_after_unclean_stop_then_pods_come_back(node: Node, kc: Client, ns: str) -> None:
    from kubelet.network.netns import list_netns
    await kc.create(PODS, pod("again", ctr("c", "exec sleep 3600")), ns)
    p = await wait_pod(kc, ns, "again", lambda p: cond(p, "Ready") == "True", what="again Ready")
    assert node.kubelet is not None
    node.kubelet.send_signal(signal.SIGKILL)
    node.kubelet.wait(10)
    r = node.cleanup()
    assert r.returncode == 0, r.stderr
    rc = node.runtime_config()
    assert not _sandboxes(node) and not list_netns(rc.netns_prefix)
    assert not node.runtime().containers.ids()
    node.start_kubelet()
    await _wait_node(node)
    old = cstatus(p, "c")["containerID"]
    back = await wait_pod(kc, ns, "again", lambda q: cond(q, "Ready") == "True" and cstatus(q, "c")["containerID"]
                          != old, 30, "pod running again in a new container")
    assert back["status"]["podIP"].startswith(node.cidr.rsplit(".", 1)[0] + ".")
