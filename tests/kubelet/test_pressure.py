"""Bounded resources on a real node: image garbage collection deletes an unused image from the node's store
(thresholds 0/0 make it run) and keeps the one a running pod uses; node-pressure eviction (a memory threshold
no machine meets, `memory.available<1000Ti`) sets MemoryPressure, taints the node and evicts the pods one at a
time, BestEffort first, Burstable next, Guaranteed last, each Failed with reason Evicted as kubectl shows it.

One module node (with TLS for kubectl): the eviction test restarts its kubelet under pressure, so it runs last."""
from __future__ import annotations

import re
from typing import Any, AsyncIterator, Iterator

import pytest

from images.store import ImageStore
from pklib.client import Client
from pklib.resources import EVENTS, NODES, PODS
from tests.support.controlplane import Etcd
from tests.support.kubectl import Kubectl
from tests.support.node import (BUSYBOX, Node, _wait_node, ctr, phase, pod, pod_namespace, private_node, running,
                                wait_pod)
from tests.support.pkctl import run_pkctl
from tests.util import wait_for

pytestmark = pytest.mark.root

GC_FLAGS = ("--image-gc-high-threshold", "0", "--image-gc-low-threshold", "0", "--image-minimum-gc-age", "3s",
            "--image-gc-period", "1", "--eviction-monitoring-period", "1")


@pytest.fixture(scope="module")
def node(etcd: Etcd) -> Iterator[Node]:
    with private_node(etcd, tls=True, kubelet_flags=GC_FLAGS) as n:
        yield n


@pytest.fixture
async def ns(kc: Client) -> AsyncIterator[str]:
    async with pod_namespace(kc, "pressure") as name:
        yield name


async def _node_events(kc: Client, node: Node, reason: str) -> list[dict[str, Any]]:
    return [e for e in (await kc.list(EVENTS))["items"]
            if e["involvedObject"].get("name") == node.name and e.get("reason") == reason]


async def test_image_gc_deletes_an_unused_image_and_keeps_the_one_a_running_pod_uses(node: Node, kc: Client,
                                                                                     ns: str) -> None:
    await kc.create(PODS, pod("user", ctr("c", "exec sleep 3600")), ns)
    await wait_pod(kc, ns, "user", running, what="a pod using busybox running")
    store = ImageStore(node.tmp / "images")
    busybox = store.get(BUSYBOX)
    # a real image of its own (its own config, busybox's layers) that no container uses
    unused = store.commit({**busybox.config, "config": {**busybox.config.get("config", {}),
                                                         "Labels": {"purpose": "gc-test"}}},
                          busybox.layers, "example.com/unused:1")
    assert unused.manifest_digest != busybox.manifest_digest

    async def collected() -> bool:  # its name first, then its blobs
        return store.resolve("example.com/unused:1") is None and not store.layout.has_blob(unused.config_digest)
    await wait_for(collected, 30, 0.2, message="the unused image and its blobs garbage collected")
    assert store.resolve(BUSYBOX) is not None                 # in use by the running pod
    assert (await kc.get(PODS, "user", ns))["status"]["phase"] == "Running"
    # thresholds 0/0 can never be met: the node is told
    failed = await wait_for(lambda: _node_events(kc, node, "FreeDiskSpaceFailed"), 15, 0.2,
                            message="a FreeDiskSpaceFailed event on the node")
    assert "Failed to garbage collect required amount of images" in failed[0]["message"]
    assert failed[0]["type"] == "Warning"


async def test_memory_pressure_taints_the_node_and_evicts_besteffort_then_burstable_then_guaranteed(
        node: Node, kc: Client, ns: str) -> None:
    guaranteed = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
    # created in the opposite order of their eviction
    await kc.create(PODS, pod("guaranteed", ctr("c", "exec sleep 3600", resources=guaranteed)), ns)
    await kc.create(PODS, pod("burstable", ctr("c", "exec sleep 3600",
                                               resources={"requests": {"memory": "32Mi"}})), ns)
    await kc.create(PODS, pod("besteffort", ctr("c", "exec sleep 3600")), ns)
    for name in ("guaranteed", "burstable", "besteffort"):
        await wait_pod(kc, ns, name, running, what=f"{name} running")

    node.restart_kubelet("--eviction-hard", "memory.available<1000Ti", "--eviction-monitoring-period", "3")
    await _wait_node(node)
    order: list[str] = []

    async def evicted_in_turn() -> bool:
        for p in (await kc.list(PODS, ns))["items"]:
            name = p["metadata"]["name"]
            if phase(p) == "Failed" and name not in order:
                order.append(name)
        return len(order) == 3
    await wait_for(evicted_in_turn, 60, 0.2, message="all three pods evicted")
    assert order == ["besteffort", "burstable", "guaranteed"]

    p = await kc.get(PODS, "besteffort", ns)
    status = p["status"]
    assert status["reason"] == "Evicted"
    assert status["message"].startswith("The node was low on resource: memory. Threshold quantity: 1000Ti, "
                                        "available: "), status["message"]
    assert "Container c was using" in status["message"]
    target = next(c for c in status["conditions"] if c["type"] == "DisruptionTarget")
    assert target["status"] == "True" and target["reason"] == "TerminationByKubelet"
    assert all("terminated" in c["state"] for c in status["containerStatuses"])

    async def pressure_shown() -> dict[str, Any] | None:
        n = await kc.get(NODES, node.name)
        conds = {c["type"]: c for c in n["status"]["conditions"]}
        taints = {(t["key"], t["effect"]) for t in n["spec"].get("taints") or []}
        return n if conds["MemoryPressure"]["status"] == "True" and (
            "node.kubernetes.io/memory-pressure", "NoSchedule") in taints else None
    n = await wait_for(pressure_shown, 30, 0.2, message="MemoryPressure condition and taint on the node")
    conds = {c["type"]: c for c in n["status"]["conditions"]}
    assert conds["MemoryPressure"]["reason"] == "KubeletHasInsufficientMemory"
    assert conds["DiskPressure"]["status"] == "False"   # --eviction-hard replaced the default disk thresholds
    assert conds["Ready"]["status"] == "True"

    # a new BestEffort pod is refused by the node under memory pressure (bound by hand: the taint keeps the
    # scheduler away), without ever starting
    await kc.create(PODS, pod("latecomer", ctr("c", "exec sleep 3600"), nodeName=node.name), ns)
    late = await wait_pod(kc, ns, "latecomer", lambda p: phase(p) == "Failed", 20, "latecomer refused")
    assert (late["status"]["reason"], late["status"]["message"]) == (
        "Evicted", "The node had condition: [MemoryPressure].")
    assert all("running" not in c["state"] for c in late["status"].get("containerStatuses") or [])

    # what users see: the pod's reason in describe; `get pods` shows its stopped container's reason, as kubectl
    # does for an evicted pod since Kubernetes 1.22 (kubernetes/kubernetes#105358), and pkctl agrees with it
    kubectl = Kubectl(node.api.kubeconfig)
    described = kubectl("describe", "pod", "besteffort", "-n", ns).stdout
    for words in (r"\nStatus:\s+Failed\n", r"\nReason:\s+Evicted\n",
                  r"\nMessage:\s+The node was low on resource: memory\.", r"Warning\s+Evicted\s"):
        assert re.search(words, described), described
    assert "node.kubernetes.io/memory-pressure:NoSchedule" in kubectl("describe", "node", node.name).stdout
    mine = run_pkctl("--kubeconfig", node.api.kubeconfig, "describe", "pod", "besteffort", "-n", ns)
    assert mine.returncode == 0 and "Evicted" in mine.stdout and "The node was low on resource" in mine.stdout, \
        mine.stdout + mine.stderr

    def status_column(text: str) -> dict[str, str]:
        return {line.split()[0]: line.split()[2] for line in text.splitlines()[1:]}
    theirs = status_column(kubectl("get", "pods", "-n", ns).stdout)
    mine = run_pkctl("--kubeconfig", node.api.kubeconfig, "get", "pods", "-n", ns)
    assert mine.returncode == 0, mine.stderr
    assert status_column(mine.stdout) == theirs
    assert set(theirs) == {"besteffort", "burstable", "guaranteed", "latecomer"}
    # one pod per period: three evictions, no more (the Evicted pods are not evicted again)
    assert len([e for e in (await kc.list(EVENTS, ns))["items"] if e["reason"] == "Evicted"]) == 3 + 1
