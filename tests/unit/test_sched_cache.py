"""The scheduler cache: assumed pods count at once, confirmations do not double count."""
from __future__ import annotations

from typing import Any

from scheduler.cache import Cache


def node(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"}}}


def pod(name: str, node_name: str, cpu: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}


def test_assume_then_confirm_counts_once() -> None:
    from scheduler.framework import pod_info
    c = Cache()
    c.set_node(node("n1"))
    c.assume(pod_info(pod("a", "n1")), "n1")
    assert c.node("n1").requested_cpu == 1000  # type: ignore[union-attr]
    c.set_pod(pod("a", "n1"), "ns/a")
    assert c.node("n1").requested_cpu == 1000  # type: ignore[union-attr]
    assert not c.assumed


def test_forget_releases_an_assumed_pod() -> None:
    from scheduler.framework import pod_info
    c = Cache()
    c.set_node(node("n1"))
    c.assume(pod_info(pod("a", "n1")), "n1")
    c.forget("ns/a")
    assert c.node("n1").requested_cpu == 0  # type: ignore[union-attr]


def test_pods_seen_before_their_node_are_attached_later() -> None:
    c = Cache()
    c.set_pod(pod("a", "late"), "ns/a")
    assert c.nodes() == []
    c.set_node(node("late"))
    assert c.node("late").requested_cpu == 1000  # type: ignore[union-attr]
    c.remove_pod("ns/a")
    assert c.node("late").requested_cpu == 0  # type: ignore[union-attr]


def test_node_update_keeps_its_pods() -> None:
    c = Cache()
    c.set_node(node("n1"))
    c.set_pod(pod("a", "n1"), "ns/a")
    updated = node("n1")
    updated["spec"] = {"unschedulable": True}
    c.set_node(updated)
    info = c.node("n1")
    assert info is not None and info.unschedulable and info.requested_cpu == 1000
