"""Pure parts of hollow nodes: pod IP allocation per node and the status reported for a pod."""
from __future__ import annotations

import ipaddress

from kubelet.hollow import HollowConfig, PodIPs, internal_ip, node_object, running_status


def test_pod_ips_come_from_the_node_range_skip_the_gateway_and_are_reused_after_release() -> None:
    ips = PodIPs()
    a = ips.allocate("n1", "10.244.3.0/24", "uid-a")
    b = ips.allocate("n1", "10.244.3.0/24", "uid-b")
    assert (a, b) == ("10.244.3.2", "10.244.3.3")
    assert ips.allocate("n1", "10.244.3.0/24", "uid-a") == a  # asking again gives the same address
    assert ips.allocate("n2", "10.244.4.0/24", "uid-c") == "10.244.4.2"  # per node
    ips.release("n1", "uid-a")
    assert ips.allocate("n1", "10.244.3.0/24", "uid-d") == a


def test_recovered_ips_are_not_handed_out_again() -> None:
    ips = PodIPs()
    ips.claim("n1", "10.244.3.2", "uid-old")
    assert ips.allocate("n1", "10.244.3.0/24", "uid-new") == "10.244.3.3"


def test_small_range_runs_out() -> None:
    ips = PodIPs()
    got = [ips.allocate("n1", "10.0.0.0/30", f"u{i}") for i in range(3)]
    assert got == ["10.0.0.2", None, None]  # /30: .1 is the gateway, .2 the only pod address


def test_node_object_has_capacity_labels_and_a_ready_condition() -> None:
    node = node_object("hn-3", HollowConfig(cpu="8", memory="32Gi", max_pods=20))
    assert node["status"]["allocatable"] == {"cpu": "8", "memory": "32Gi", "pods": "20", "ephemeral-storage": "100Gi"}
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "hn-3"
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert ipaddress.ip_address(internal_ip("hn-3")) in ipaddress.ip_network("100.64.0.0/10")
    assert internal_ip("hn-3") == internal_ip("hn-3") != internal_ip("hn-4")


def test_running_status_reports_every_container_ready() -> None:
    pod = {"metadata": {"name": "p", "uid": "u1"},
           "spec": {"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "nginx"}]},
           "status": {"phase": "Pending", "qosClass": "Burstable"}}
    node = {"status": {"addresses": [{"type": "InternalIP", "address": "100.64.0.9"}]}}
    status = running_status(pod, node, "10.244.0.7")
    assert status["phase"] == "Running" and status["podIP"] == "10.244.0.7" and status["hostIP"] == "100.64.0.9"
    assert [c["name"] for c in status["containerStatuses"]] == ["a", "b"]
    assert all(c["ready"] and "running" in c["state"] for c in status["containerStatuses"])
    assert {c["type"] for c in status["conditions"] if c["status"] == "True"} >= {"Ready", "ContainersReady"}
    assert status["qosClass"] == "Burstable"
