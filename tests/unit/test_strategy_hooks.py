"""The generic store's hooks of the kind strategies (pure: no server, no storage).

What the handlers ask each kind: its initial status on create, what an update of the main resource
may not change, whether a PUT creates, how long a DELETE waits and when a deleting object is gone,
and which field selectors it supports.
"""
from __future__ import annotations

from typing import Any

import pytest

from apiserver.kinds import KindStrategy, strategy_for
from pklib.resources import lookup

POD = strategy_for(lookup("pods"))
NAMESPACE = strategy_for(lookup("namespaces"))


def pod(node: str = "", phase: str = "Running", **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "p", "namespace": "d"},
                           "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
                           "status": {"phase": phase}}
    if node:
        obj["spec"]["nodeName"] = node
    return obj


def deleting(obj: dict[str, Any], grace: int | None = 0, finalizers: list[str] | None = None) -> dict[str, Any]:
    meta = obj["metadata"]
    meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if grace is not None:
        meta["deletionGracePeriodSeconds"] = grace
    if finalizers:
        meta["finalizers"] = finalizers
    return obj


def namespace(finalizers: list[str] | None = None, phase: str = "Active") -> dict[str, Any]:
    return {"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"] if finalizers is None else finalizers},
            "status": {"phase": phase}}


# -- Pod -------------------------------------------------------------------------------------

def test_pod_create_starts_pending_whatever_the_client_sent() -> None:
    obj = pod(phase="Running")
    obj["status"]["podIP"] = "10.0.0.9"
    POD.prepare_for_create(obj, status_subresource=True)
    assert obj["status"] == {"phase": "Pending"}


@pytest.mark.parametrize("node, phase, requested, spec_grace, expected", [
    ("", "Pending", None, None, 0),            # unscheduled: nothing to stop
    ("", "Pending", 30, None, 0),              # ... whatever the request says
    ("n1", "Succeeded", None, None, 0),        # finished: nothing running
    ("n1", "Failed", 10, None, 0),
    ("n1", "Running", None, None, 30),         # Kubernetes' default grace period
    ("n1", "Running", None, 5, 5),             # spec.terminationGracePeriodSeconds
    ("n1", "Running", 7, 5, 7),                # the request wins over the spec
    ("n1", "Running", 0, 5, 0),                # "now"
])
def test_pod_grace_period(node: str, phase: str, requested: int | None, spec_grace: int | None,
                          expected: int) -> None:
    spec = {} if spec_grace is None else {"terminationGracePeriodSeconds": spec_grace}
    assert POD.check_graceful_delete(pod(node, phase, **spec), requested) == expected


def test_pod_grace_period_only_shortens() -> None:
    obj = deleting(pod("n1"), grace=10)
    assert POD.check_graceful_delete(obj, 60) == 10
    assert POD.check_graceful_delete(obj, 3) == 3
    assert POD.check_graceful_delete(obj, None) == 10


def test_pod_finished_deleting_waits_for_grace_and_finalizers() -> None:
    assert not POD.finished_deleting(pod("n1"))                       # not deleting
    assert not POD.finished_deleting(deleting(pod("n1"), grace=30))   # the kubelet stops containers
    assert POD.finished_deleting(deleting(pod("n1"), grace=0))
    assert POD.finished_deleting(deleting(pod("n1"), grace=None))
    assert not POD.finished_deleting(deleting(pod("n1"), grace=0, finalizers=["x/y"]))


def test_pod_field_labels() -> None:
    assert {"spec.nodeName", "status.phase", "status.podIP"} <= set(POD.field_labels)
    assert POD.field_value(pod("n1"), "spec.nodeName") == "n1"
    assert POD.field_value(pod(hostNetwork=True), "spec.hostNetwork") == "true"
    assert POD.field_value(pod(), "status.podIP") == ""


def test_pod_has_no_create_on_update_and_no_extra_delete_marking() -> None:
    assert not POD.allow_create_on_update
    obj = pod("n1")
    POD.prepare_for_delete(obj)
    assert obj == pod("n1")


# -- Namespace -------------------------------------------------------------------------------

def test_namespace_create_starts_active() -> None:
    obj = namespace(phase="Terminating")
    NAMESPACE.prepare_for_create(obj, status_subresource=True)
    assert obj["status"] == {"phase": "Active"}


def test_namespace_update_keeps_spec_finalizers() -> None:
    """spec.finalizers changes only through /finalize."""
    new = namespace(finalizers=[])
    NAMESPACE.prepare_for_update(new, namespace(finalizers=["kubernetes"]))
    assert new["spec"]["finalizers"] == ["kubernetes"]
    new = {"metadata": {"name": "n"}}
    NAMESPACE.prepare_for_update(new, namespace(finalizers=[]))
    assert new["spec"] == {"finalizers": []}


def test_namespace_delete_marks_terminating_without_grace() -> None:
    obj = namespace()
    assert NAMESPACE.check_graceful_delete(obj, 30) is None
    NAMESPACE.prepare_for_delete(obj)
    assert obj["status"]["phase"] == "Terminating"


def test_namespace_finished_deleting_waits_for_spec_finalizers() -> None:
    assert not NAMESPACE.finished_deleting(namespace(finalizers=[]))                        # not deleting
    assert not NAMESPACE.finished_deleting(deleting(namespace(finalizers=["kubernetes"])))  # controller works
    assert not NAMESPACE.finished_deleting(deleting(namespace(finalizers=[]), finalizers=["x/y"]))
    assert NAMESPACE.finished_deleting(deleting(namespace(finalizers=[])))


def test_namespace_field_labels() -> None:
    assert NAMESPACE.field_labels == ("status.phase",)
    assert NAMESPACE.field_value(namespace(phase="Terminating"), "status.phase") == "Terminating"


# -- the other kinds' answers the handlers rely on -------------------------------------------

@pytest.mark.parametrize("plural, status", [
    ("persistentvolumes", {"phase": "Pending"}),
    ("persistentvolumeclaims", {"phase": "Pending"}),
    ("deployments", {}),
    ("services", {}),
])
def test_initial_status(plural: str, status: dict[str, Any]) -> None:
    obj: dict[str, Any] = {"metadata": {"name": "x"}, "status": {"phase": "Bound", "replicas": 3}}
    strategy_for(lookup(plural)).prepare_for_create(obj, status_subresource=True)
    assert obj["status"] == status


def test_nodes_register_with_their_status() -> None:
    obj: dict[str, Any] = {"metadata": {"name": "n1"}, "status": {"capacity": {"cpu": "2"}}}
    strategy_for(lookup("nodes")).prepare_for_create(obj, status_subresource=True)
    assert obj["status"] == {"capacity": {"cpu": "2"}}


def test_without_status_subresource_the_status_is_the_clients() -> None:
    obj: dict[str, Any] = {"metadata": {"name": "x"}, "status": {"a": 1}}
    KindStrategy().prepare_for_create(obj, status_subresource=False)
    assert obj["status"] == {"a": 1}


@pytest.mark.parametrize("plural, allowed", [
    ("endpoints", True), ("leases", True), ("events", True), ("services", True),
    ("pods", False), ("configmaps", False), ("endpointslices", False), ("namespaces", False),
])
def test_allow_create_on_update(plural: str, allowed: bool) -> None:
    assert strategy_for(lookup(plural)).allow_create_on_update is allowed


def test_event_source_field_is_the_reporting_component() -> None:
    events = strategy_for(lookup("events"))
    assert events.field_value({"source": {"component": "kubelet"}}, "source") == "kubelet"
    assert events.field_value({"reportingComponent": "scheduler"}, "source") == "scheduler"


def test_generic_kind_finishes_deleting_when_finalizers_are_gone() -> None:
    configmaps = strategy_for(lookup("configmaps"))
    obj: dict[str, Any] = {"metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z",
                                        "finalizers": ["orphan"]}}
    assert configmaps.check_graceful_delete(obj, 30) is None
    assert not configmaps.finished_deleting(obj)
    del obj["metadata"]["finalizers"]
    assert configmaps.finished_deleting(obj)
