"""Pure parts of hollow nodes: the Node they register, and pod IPs from the node's range (the fake runtime)."""
from __future__ import annotations

import ipaddress

import pytest

from kubelet.hollow import HollowConfig, internal_ip, node_object
from kubelet.runtime.fake import FakeRuntime
from kubelet.runtime.interface import RuntimeError_, SandboxConfig


async def _ip(rt: FakeRuntime, uid: str) -> tuple[str, str]:
    sid = await rt.run_sandbox(SandboxConfig(name=uid, namespace="ns", uid=uid))
    return sid, (await rt.sandbox_status(sid)).ip


async def test_pod_ips_come_from_the_node_range_skip_the_gateway_and_are_reused_after_release() -> None:
    rt = FakeRuntime("10.244.3.0/24", record_calls=False)
    (sa, a), (_, b) = await _ip(rt, "uid-a"), await _ip(rt, "uid-b")
    assert (a, b) == ("10.244.3.2", "10.244.3.3")
    assert (await _ip(FakeRuntime("10.244.4.0/24"), "uid-c"))[1] == "10.244.4.2"  # per node
    await rt.remove_sandbox(sa)
    assert (await _ip(rt, "uid-d"))[1] == a


async def test_reserved_ips_go_to_their_pod_and_to_no_other() -> None:
    rt = FakeRuntime("10.244.3.0/24")
    rt.reserve_ip("uid-old", "10.244.3.7")
    assert (await _ip(rt, "uid-new"))[1] == "10.244.3.2"
    assert (await _ip(rt, "uid-old"))[1] == "10.244.3.7"


async def test_small_range_runs_out() -> None:
    rt = FakeRuntime("10.0.0.0/30")
    assert (await _ip(rt, "u0"))[1] == "10.0.0.2"   # /30: .1 is the gateway, .2 the only pod address
    with pytest.raises(RuntimeError_, match="no free IP"):
        await _ip(rt, "u1")


def test_node_object_has_capacity_labels_and_a_ready_condition() -> None:
    node = node_object("hn-3", HollowConfig(cpu="8", memory="32Gi", max_pods=20))
    assert node["status"]["allocatable"] == {"cpu": "8", "memory": "32Gi", "pods": "20", "ephemeral-storage": "100Gi"}
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "hn-3"
    assert node["metadata"]["labels"]["pkube.io/hollow"] == "true"
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert ipaddress.ip_address(internal_ip("hn-3")) in ipaddress.ip_network("100.64.0.0/10")
    assert internal_ip("hn-3") == internal_ip("hn-3") != internal_ip("hn-4")
    assert {"type": "InternalIP", "address": internal_ip("hn-3")} in node["status"]["addresses"]
