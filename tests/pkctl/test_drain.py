"""`pkctl cordon|uncordon|drain` and the real `kubectl drain` against a node running pods (the kubelet's private
control plane with TLS, so kubectl can talk to it): PodDisruptionBudgets hold the drain back through 429s,
unmanaged and DaemonSet pods are refused without --force / --ignore-daemonsets, the node ends up drained."""
from __future__ import annotations

import shutil
import subprocess
from typing import Any, AsyncIterator, Iterator

import pytest

from pklib.client import Client
from pklib.resources import DAEMONSETS, DEPLOYMENTS, NODES, PODDISRUPTIONBUDGETS, PODS
from tests.support.controlplane import Etcd
from tests.support.kubectl import Kubectl
from tests.support.node import BUSYBOX, Node, pod, pod_namespace, private_node, running
from tests.support.pkctl import run_pkctl
from tests.util import wait_for

pytestmark = pytest.mark.root

TEMPLATE_SPEC = {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                 "command": ["sleep", "3600"]}]}
PDB_REFUSAL = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.fixture(scope="module")
def node(etcd: Etcd) -> Iterator[Node]:
    with private_node(etcd, tls=True) as n:
        yield n


@pytest.fixture
async def kc(node: Node) -> AsyncIterator[Client]:
    c = node.client()
    yield c
    await c.patch(NODES, node.name, {"spec": {"unschedulable": None}})  # the next test starts uncordoned
    await c.close()


@pytest.fixture
async def ns(kc: Client) -> AsyncIterator[str]:
    async with pod_namespace(kc, "drain") as name:
        yield name


def pkctl(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    return run_pkctl("--kubeconfig", node.api.kubeconfig, *args, timeout=90)


def workload(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": TEMPLATE_SPEC}, **spec}}


def budget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, **spec}}


async def running_pods(kc: Client, ns: str, selector: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        pods = [p for p in (await kc.list(PODS, ns, label_selector=selector))["items"]
                if running(p) and not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == count else None
    result: list[dict[str, Any]] = await wait_for(check, 60, 0.2, message=f"{count} running pods {selector}")
    return result


async def setup_workloads(kc: Client, ns: str) -> None:
    """A 2-replica Deployment guarded by a budget that allows one disruption, and a DaemonSet, all running."""
    await kc.create(DEPLOYMENTS, workload("Deployment", "web", replicas=2), ns)
    await kc.create(DAEMONSETS, workload("DaemonSet", "agent"), ns)
    await kc.create(PODDISRUPTIONBUDGETS, budget("web", maxUnavailable=1), ns)
    await running_pods(kc, ns, "app=web", 2)
    await running_pods(kc, ns, "app=agent", 1)

    async def budget_ready() -> bool:
        status = (await kc.get(PODDISRUPTIONBUDGETS, "web", ns)).get("status") or {}
        return status.get("currentHealthy") == 2 and status.get("disruptionsAllowed") == 1
    await wait_for(budget_ready, 30, 0.2, message="the budget allows one disruption")


async def names_on_node(kc: Client, ns: str, node: str) -> list[str]:
    pods = (await kc.list(PODS, ns, field_selector=f"spec.nodeName={node}"))["items"]
    return sorted(p["metadata"]["name"] for p in pods)


async def test_pkctl_cordon_and_drain(kc: Client, ns: str, node: Node) -> None:
    out = pkctl(node, "cordon", node.name)
    assert (out.returncode, out.stdout) == (0, f"node/{node.name} cordoned\n")
    assert (await kc.get(NODES, node.name))["spec"]["unschedulable"] is True
    assert pkctl(node, "cordon", node.name).stdout == f"node/{node.name} already cordoned\n"
    assert pkctl(node, "uncordon", node.name).stdout == f"node/{node.name} uncordoned\n"
    assert "unschedulable" not in (await kc.get(NODES, node.name))["spec"]
    assert pkctl(node, "uncordon", node.name).stdout == f"node/{node.name} already uncordoned\n"
    await kc.patch(NODES, node.name, {"metadata": {"labels": {"pkt-drain": ns}}})
    assert pkctl(node, "cordon", "-l", f"pkt-drain={ns}").stdout == f"node/{node.name} cordoned\n"
    assert pkctl(node, "uncordon", "-l", f"pkt-drain={ns}").stdout == f"node/{node.name} uncordoned\n"
    missing = pkctl(node, "drain", "no-such-node")
    assert (missing.returncode, missing.stderr) == (1, 'Error from server (NotFound): nodes "no-such-node" not found\n')

    await setup_workloads(kc, ns)
    await kc.create(PODS, pod("lone", TEMPLATE_SPEC["containers"][0], terminationGracePeriodSeconds=1), ns)
    await running_pods(kc, ns, "!app", 1)
    [agent] = await running_pods(kc, ns, "app=agent", 1)

    # Unmanaged and DaemonSet pods: refused before anything is evicted, the node stays cordoned.
    refused = pkctl(node, "drain", node.name)
    assert refused.returncode == 1
    assert refused.stdout == f"node/{node.name} cordoned\n"
    assert refused.stderr == (
        f'error: unable to drain node "{node.name}" due to error: [cannot delete DaemonSet-managed Pods (use '
        f"--ignore-daemonsets to ignore): {ns}/{agent['metadata']['name']}, cannot delete Pods declare no controller "
        f"(use --force to override): {ns}/lone], continuing command...\n"
        f"There are pending nodes to be drained:\n {node.name}\n"
        f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {ns}/{agent['metadata']['name']}\n"
        f"cannot delete Pods declare no controller (use --force to override): {ns}/lone\n")
    assert len(await names_on_node(kc, ns, node.name)) == 4
    # --pod-selector: only the pods it picks are considered (none here), so nothing stands in the way.
    picked = pkctl(node, "drain", node.name, "--pod-selector", "app=nothing")
    assert (picked.returncode, picked.stdout) == (0, f"node/{node.name} already cordoned\nnode/{node.name} drained\n")

    # The budget lets one web pod go; its replacement cannot be scheduled on the cordoned node, so the other
    # is refused (429) until the timeout.
    held = pkctl(node, "drain", node.name, "--ignore-daemonsets", "--force", "--timeout", "12s", "--grace-period", "1")
    assert held.returncode == 1, held
    assert held.stdout.startswith(f"node/{node.name} already cordoned\n")
    assert f"Warning: ignoring DaemonSet-managed Pods: {ns}/{agent['metadata']['name']}; deleting Pods that " \
           f"declare no controller: {ns}/lone\n" in held.stderr
    assert f"evicting pod {ns}/lone\n" in held.stdout and "pod/lone evicted\n" in held.stdout
    assert f"(will retry after 5s): {PDB_REFUSAL}\n" in held.stderr
    assert "global timeout reached: 12s" in held.stderr
    left = await names_on_node(kc, ns, node.name)
    assert len(left) == 2 and agent["metadata"]["name"] in left, left  # one web pod and the DaemonSet's

    # --disable-eviction deletes instead: the budget is not asked.
    web = next(name for name in left if name.startswith("web-"))
    done = pkctl(node, "drain", node.name, "--ignore-daemonsets", "--disable-eviction")
    assert done.returncode == 0, done
    assert done.stdout == f"node/{node.name} already cordoned\npod/{web} deleted\nnode/{node.name} drained\n"
    assert await names_on_node(kc, ns, node.name) == [agent["metadata"]["name"]]

    # Uncordoned, the Deployment's pending replacements run on the node again.
    assert pkctl(node, "uncordon", node.name).returncode == 0
    await running_pods(kc, ns, "app=web", 2)


async def test_kubectl_drain_honours_the_budget(kc: Client, ns: str, node: Node) -> None:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: this test needs the real kubectl v1.32 on PATH")
    kubectl = Kubectl(node.api.kubeconfig)
    await setup_workloads(kc, ns)
    [agent] = await running_pods(kc, ns, "app=agent", 1)

    refused = kubectl("drain", node.name, ok=False)
    assert refused.returncode != 0
    assert f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): " \
           f"{ns}/{agent['metadata']['name']}" in refused.stderr
    # pkctl words it exactly as kubectl does.
    assert pkctl(node, "drain", node.name).stderr == refused.stderr

    held = kubectl("drain", node.name, "--ignore-daemonsets", "--timeout", "12s", ok=False, timeout=90)
    assert held.returncode != 0, held
    assert f"(will retry after 5s): {PDB_REFUSAL}" in held.stderr, held.stderr
    assert held.stdout.count(" evicted\n") == 1, held.stdout  # kubectl waited for the allowed eviction's deletion

    await kc.delete(PODDISRUPTIONBUDGETS, "web", ns)
    done = kubectl("drain", node.name, "--ignore-daemonsets", "--timeout", "60s", timeout=90)
    assert f"node/{node.name} drained" in done.stdout
    assert await names_on_node(kc, ns, node.name) == [agent["metadata"]["name"]]
    assert kubectl("uncordon", node.name).stdout == f"node/{node.name} uncordoned\n"
