"""Node registration and heartbeat of the real kubelet."""
from __future__ import annotations

import os
import platform

import pytest

from pklib.client import Client
from pklib.resources import lookup
from tests.support.node import Node
from tests.util import wait_for

pytestmark = pytest.mark.root

NODES = lookup("nodes")
LEASES = lookup("leases")
assert NODES and LEASES


async def test_node_registers_with_capacity_addresses_info_and_conditions(node: Node, kc: Client) -> None:
    n = await kc.get(NODES, node.name)
    labels = n["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == node.name
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] in ("amd64", "arm64", platform.machine())
    status = n["status"]
    assert status["capacity"]["cpu"] == str(os.cpu_count())
    assert status["capacity"]["pods"] == "110"
    assert int(status["capacity"]["memory"].removesuffix("Ki")) > 0
    assert "ephemeral-storage" in status["allocatable"]
    types = {a["type"] for a in status["addresses"]}
    assert {"InternalIP", "Hostname"} <= types
    info = status["nodeInfo"]
    assert info["kernelVersion"] == platform.release()
    assert info["containerRuntimeVersion"].startswith("runc://")
    conds = {c["type"]: c for c in status["conditions"]}
    assert set(conds) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
    # pressure conditions reflect the host: their reason must agree with their status
    for t in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert (conds[t]["status"] == "True") == ("Has" + t.replace("Pressure", "") in conds[t]["reason"]
                                                  or "Insufficient" in conds[t]["reason"]), conds[t]
    assert n["spec"]["podCIDR"] == node.cidr


async def test_lease_is_renewed(node: Node, kc: Client) -> None:
    first = (await kc.get(LEASES, node.name, "kube-node-lease"))["spec"]
    assert first["holderIdentity"] == node.name

    async def renewed() -> bool:
        return (await kc.get(LEASES, node.name, "kube-node-lease"))["spec"]["renewTime"] != first["renewTime"]
    await wait_for(renewed, 10, 0.2, message="lease renewTime to advance (renew interval 2 s)")


async def test_unchanged_node_status_is_not_rewritten_at_each_heartbeat(node: Node, kc: Client) -> None:
    # The Lease is the heartbeat; the Node object is written only when its status changes (or every 5 min),
    # so the watchers of nodes (scheduler, controllers) are not woken every few seconds for nothing.
    before = await kc.get(NODES, node.name)
    lease = (await kc.get(LEASES, node.name, "kube-node-lease"))["metadata"]["resourceVersion"]
    renewals = 0

    async def renewed_twice() -> bool:
        nonlocal lease, renewals
        now = (await kc.get(LEASES, node.name, "kube-node-lease"))["metadata"]["resourceVersion"]
        renewals, lease = renewals + (now != lease), now
        return renewals >= 2
    # renew interval 2 s and status computed every second in these tests: several computations in between
    await wait_for(renewed_twice, 15, 0.2, message="two lease renewals")
    after = await kc.get(NODES, node.name)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"]["conditions"] == before["status"]["conditions"]
