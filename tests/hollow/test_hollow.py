"""Hollow nodes against a real apiserver: registration, lease heartbeats, pods reported Running
with an IP from the node's podCIDR, graceful deletion finished, restart keeps pod IPs."""
from __future__ import annotations

import ipaddress
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from tests.support.controlplane import ROOT
from tests.scheduler.cluster import LEASES, NODES, PODS, Cluster, condition, delete_nodes, pod_body, start_hollow
from tests.util import unique, wait_for


@pytest.fixture(scope="module")
def ipam(cluster: Cluster) -> Cluster:
    cluster.start("controller-manager", "--controllers", "nodeipam")
    return cluster


async def bind(client: Client, ns: str, pod: str, node: str) -> None:
    await client.create(PODS, {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, "namespace": ns},
                               "target": {"apiVersion": "v1", "kind": "Node", "name": node}},
                        ns, subresource="binding", name=pod)


async def running(client: Client, ns: str, name: str) -> dict[str, Any] | None:
    pod = await client.get(PODS, name, ns)
    if (pod.get("status") or {}).get("phase") == "Running" and condition(pod, "Ready") == "True":
        return pod
    return None


async def test_nodes_register_with_capacity_labels_and_heartbeat(ipam: Cluster, cclient: Client) -> None:
    comp, names = await start_hollow(ipam, cclient, 3, "--cpu", "8", "--memory", "32Gi", "--max-pods", "50",
                                     "--node-lease-renew-interval", "1")
    try:
        node = await cclient.get(NODES, names[2])
        assert node["status"]["capacity"]["cpu"] == "8"
        assert node["status"]["allocatable"]["pods"] == "50"
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == names[2]
        assert labels["kubernetes.io/os"] == "linux" and labels["kubernetes.io/arch"] == "amd64"

        async def lease_times() -> dict[str, str] | None:
            # as a kubelet does, a hollow node is created with its Ready status and writes its Lease just after
            times = {}
            for n in names:
                try:
                    times[n] = (await cclient.get(LEASES, n, "kube-node-lease"))["spec"]["renewTime"]
                except ApiError:
                    return None
            return times

        first = await wait_for(lease_times, 10, message="every node's lease created")

        async def all_renewed() -> bool:
            for n in names:
                lease = await cclient.get(LEASES, n, "kube-node-lease")
                if _t(lease["spec"]["renewTime"]) <= _t(first[n]):
                    return False
            return True

        await wait_for(all_renewed, 10, message="every node lease renewed")
        lease = await cclient.get(LEASES, names[0], "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == names[0]
        assert lease["metadata"]["ownerReferences"][0]["name"] == names[0]
    finally:
        comp.kill()
        await delete_nodes(cclient, names)


def _t(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_bound_pods_run_with_ip_from_pod_cidr_and_deletion_finishes(
        ipam: Cluster, cclient: Client, cns: str) -> None:
    comp, names = await start_hollow(ipam, cclient, 1)
    node_name = names[0]
    try:
        await cclient.create(PODS, pod_body("a"), cns)
        await cclient.create(PODS, pod_body("b"), cns)
        pending = await cclient.get(PODS, "a", cns)
        assert (pending.get("status") or {}).get("phase") in (None, "Pending")  # not ours until bound
        await bind(cclient, cns, "a", node_name)
        await bind(cclient, cns, "b", node_name)
        a = await wait_for(lambda: running(cclient, cns, "a"), 10, message="pod a Running")
        b = await wait_for(lambda: running(cclient, cns, "b"), 10, message="pod b Running")
        node = await cclient.get(NODES, node_name)
        cidr = ipaddress.ip_network(node["spec"]["podCIDR"])
        assert ipaddress.ip_address(a["status"]["podIP"]) in cidr
        assert a["status"]["podIP"] != b["status"]["podIP"]
        internal = next(x["address"] for x in node["status"]["addresses"] if x["type"] == "InternalIP")
        assert a["status"]["hostIP"] == internal
        assert a["status"]["containerStatuses"][0]["ready"] is True
        assert "running" in a["status"]["containerStatuses"][0]["state"]

        # A normal (graceful) delete is finished by the node: the pod disappears.
        await cclient.delete(PODS, "a", cns)

        async def gone() -> bool:
            items = (await cclient.list(PODS, cns)).get("items") or []
            return "a" not in {p["metadata"]["name"] for p in items}

        await wait_for(gone, 10, message="pod a deleted completely")

        # A restarted hollow kubelet takes its nodes back and keeps the running pods' IPs.
        comp.kill()
        comp, _ = await start_hollow(ipam, cclient, 1, prefix=node_name.rsplit("-", 1)[0])
        await cclient.create(PODS, pod_body("c"), cns)
        await bind(cclient, cns, "c", node_name)
        c = await wait_for(lambda: running(cclient, cns, "c"), 10, message="pod c Running")
        b_after = await cclient.get(PODS, "b", cns)
        assert b_after["status"]["podIP"] == b["status"]["podIP"]
        assert c["status"]["podIP"] != b["status"]["podIP"]
    finally:
        comp.kill()
        await delete_nodes(cclient, names)


@pytest.mark.parametrize("args,expected", [
    (["kubelet", "--hollow", "--count", "0"], "--count must be at least 1"),
    (["kubelet", "--hollow", "--memory", "lots"], "--memory 'lots'"),
    (["scheduler", "--score-weights", "bogus=1"], "invalid score weight 'bogus=1'"),
    (["scheduler", "--percentage-of-nodes-to-score", "120"], "between 0 and 100"),
])
def test_bad_flags_give_one_line_errors(args: list[str], expected: str) -> None:
    r = subprocess.run([sys.executable, "-m", "launcher", *args, "--server", "http://127.0.0.1:1",
                        "--token", unique("t")], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and expected in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
