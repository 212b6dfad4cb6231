"""The chaos suite's invariant watcher (tests/chaos/harness.py), fed events by hand: a relist that finds a
StatefulSet pod replaced since the last list is a deletion then a creation, not two pods of one ordinal;
a watch that shows the new pod before the old one's deletion is."""
from __future__ import annotations

import re
from typing import Any

from tests.chaos.harness import Watcher


def pod(name: str, uid: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid, "labels": {}}, "spec": {}, "status": {"phase": "Running"}}


def watcher() -> Watcher:
    return Watcher(api=None, ns="ns")  # type: ignore[arg-type]  # no request is made


def test_a_relist_that_finds_a_replaced_pod_is_no_violation() -> None:
    w = watcher()
    w._relist("pods", {"db-1": pod("db-1", "old")})
    w._relist("pods", {"db-1": pod("db-1", "new")})
    assert w.violations == [] and w.objects["pods"]["db-1"]["metadata"]["uid"] == "new"


def test_a_new_pod_of_an_ordinal_before_the_old_ones_deletion_is_a_violation() -> None:
    w = watcher()
    w._apply("pods", "ADDED", pod("db-1", "old"))
    w._apply("pods", "ADDED", pod("db-1", "new"))
    [violation] = w.violations
    at, what = violation.split(" ", 1)  # stamped with the time, to match it with the kill before it
    assert re.fullmatch(r"\d\d:\d\d:\d\d", at) and what == "pod db-1: new uid new while old still existed"


def test_an_object_replaced_between_lists_is_lost_unless_the_test_deleted_it() -> None:
    w = watcher()
    cm = {"metadata": {"name": "c", "uid": "1"}}
    w._relist("configmaps", {"c": cm})
    w._relist("configmaps", {"c": {"metadata": {"name": "c", "uid": "2"}}})
    assert w.lost == ["configmaps/c deleted (nobody asked)"]


def web_pod(name: str, ip: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": name, "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {}, "status": {"phase": "Running", "podIP": ip}}


def web_slice(*ips: str) -> dict[str, Any]:
    return {"metadata": {"name": "web-abc", "uid": "s", "labels": {"kubernetes.io/service-name": "web"}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


def test_the_endpoint_lag_runs_from_a_served_pods_deletion_to_its_address_leaving_the_endpoints() -> None:
    w = watcher()
    label = ["etcd-leader"]
    w.label = lambda: label[0]
    w._apply("endpointslices", "ADDED", web_slice("10.0.0.1", "10.0.0.2"))
    w._apply("pods", "ADDED", web_pod("a", "10.0.0.1"))
    w._apply("pods", "MODIFIED", web_pod("a", "10.0.0.1", deleting=True))
    assert w.endpoint_lag == {} and "10.0.0.1" in w.deleting
    label[0] = "rollout"  # charged to what went on when the pod was deleted, not when its address left
    w._apply("endpointslices", "MODIFIED", web_slice("10.0.0.2"))
    assert list(w.endpoint_lag) == ["etcd-leader"] and w.endpoint_lag["etcd-leader"] >= 0
    assert w.deleting == {}
    # a pod whose address left the endpoints before its deletion was watched lags nothing
    w._apply("endpointslices", "MODIFIED", web_slice())
    w._apply("pods", "MODIFIED", web_pod("b", "10.0.0.2", deleting=True))
    assert w.deleting == {} and list(w.endpoint_lag) == ["etcd-leader"]


def test_an_address_still_served_long_after_its_pods_deletion_counts_as_lagging_until_now() -> None:
    w = watcher()
    w._apply("endpointslices", "ADDED", web_slice("10.0.0.1"))
    w._apply("pods", "MODIFIED", web_pod("a", "10.0.0.1", deleting=True))
    assert w.endpoint_lag == {} and list(w.endpoint_lags()) == [""]
