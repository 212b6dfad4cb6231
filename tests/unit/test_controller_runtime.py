"""Controller runtime pieces: expectations, event aggregation, controller selection, node fit, endpoints."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from controllers.endpoints import compute_subsets
from controllers.main import ConfigError, select_controllers
from controllers.nodefit import placement, required_affinity_matches
from pklib.api.tolerations import tolerates
from pklib.controller import Expectations
from pklib.errors import ApiError
from pklib.events import EventRecorder


def test_expectations_block_until_observed_or_expired() -> None:
    e = Expectations()
    assert e.satisfied("ns/rs")
    e.expect_creations("ns/rs", 2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")
    e.expect_deletions("ns/rs", ["ns/p1"])
    e.deletion_observed("ns/rs", "ns/other")
    assert not e.satisfied("ns/rs")
    e.deletion_observed("ns/rs", "ns/p1")
    assert e.satisfied("ns/rs")
    short = Expectations(ttl=0)
    short.expect_creations("k", 5)
    assert short.satisfied("k"), "expired expectations stop blocking (a lost event must not wedge a controller)"


class FakeEvents:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self.missing: set[str] = set()

    async def create(self, res: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        self.created.append(obj)
        return obj

    async def patch(self, res: Any, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge") -> dict[str, Any]:
        if name in self.missing:
            raise ApiError({"code": 404, "reason": "NotFound", "message": "gone"})
        self.patched.append((name, patch))
        return {}


async def test_event_recorder_aggregates_repeats() -> None:
    api = FakeEvents()
    rec = EventRecorder(api, "test")
    task = asyncio.create_task(rec.run())
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "ns", "uid": "u1"}}
    try:
        for _ in range(3):
            rec.warning(pod, "BackOff", "Back-off restarting failed container")
        rec.normal(pod, "Pulled", "pulled")
        await rec.flush()
        assert [e["reason"] for e in api.created] == ["BackOff", "Pulled"]
        first = api.created[0]
        assert first["involvedObject"] == {"kind": "Pod", "apiVersion": "v1", "name": "p", "namespace": "ns",
                                           "uid": "u1"}
        assert first["metadata"]["namespace"] == "ns" and first["count"] == 1 and first["type"] == "Warning"
        assert [p["count"] for _, p in api.patched] == [2, 3]
        api.missing.add(first["metadata"]["name"])  # the Event expired server-side
        rec.warning(pod, "BackOff", "Back-off restarting failed container")
        await rec.flush()
        assert len(api.created) == 3 and api.created[-1]["count"] == 1
    finally:
        task.cancel()


async def test_event_recorder_logs_one_line_per_burst_of_drops(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeEvents()
    rec = EventRecorder(api, "test", queue_size=2)
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "ns", "uid": "u1"}}
    with caplog.at_level(logging.WARNING, logger="pklib.events"):
        for i in range(10):
            rec.normal(pod, "Scheduled", f"assigned {i}")
        task = asyncio.create_task(rec.run())
        try:
            await rec.flush()
        finally:
            task.cancel()
    assert [e["message"] for e in api.created] == ["assigned 0", "assigned 1"]
    assert [r.getMessage() for r in caplog.records] == [
        "event queue full; dropping Scheduled p: assigned 2 (and the next ones until it drains)",
        "event queue drained; 8 events were dropped"]


def test_select_controllers_syntax() -> None:
    assert [c.name for c in select_controllers("replicaset,deployment")] == ["replicaset", "deployment"]
    everything = {c.name for c in select_controllers("*")}
    assert {"replicaset", "garbagecollector", "namespace"} <= everything
    assert "daemonset" not in {c.name for c in select_controllers("*,-daemonset")}
    with pytest.raises(ConfigError, match="unknown controller 'nope'"):
        select_controllers("replicaset,nope")


def test_tolerations_match_like_kubernetes() -> None:
    taint = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    assert tolerates({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}, taint)
    assert tolerates({"key": "dedicated", "operator": "Exists"}, taint)
    assert tolerates({"operator": "Exists"}, taint), "empty key + Exists tolerates everything"
    assert not tolerates({"key": "dedicated", "value": "web"}, taint)
    assert not tolerates({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, taint)


def _node(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def test_required_affinity_and_placement() -> None:
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]},
                              {"key": "cores", "operator": "Gt", "values": ["4"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}]}}}
    assert required_affinity_matches(aff, _node("x", {"zone": "a", "cores": "8"}))
    assert not required_affinity_matches(aff, _node("x", {"zone": "a", "cores": "2"}))
    assert required_affinity_matches(aff, _node("special"))
    spec = {"nodeSelector": {"role": "edge"}}
    assert placement(spec, _node("n", {"role": "edge"})) == (True, True)
    assert placement(spec, _node("n", {"role": "core"})) == (False, False)
    assert placement(spec, _node("n", {"role": "edge"}, taints=[{"key": "k", "effect": "NoSchedule"}])) \
        == (False, True), "a NoSchedule taint blocks new pods but does not evict"
    assert placement(spec, _node("n", {"role": "edge"}, taints=[{"key": "k", "effect": "NoExecute"}])) \
        == (False, False)
    assert placement(spec, _node("n", {"role": "edge"}, unschedulable=True)) == (False, True)
    tolerant = {**spec, "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}
    assert placement(tolerant, _node("n", {"role": "edge"}, unschedulable=True)) == (True, True)


def _ep_pod(name: str, ip: str | None, ready: bool, port: int, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": name}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta,
            "spec": {"nodeName": "n1", "containers": [{"ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_endpoint_subsets_group_by_resolved_ports() -> None:
    svc = {"metadata": {"name": "web"}, "spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}
    pods = [_ep_pod("a", "10.0.0.2", True, 8080), _ep_pod("b", "10.0.0.1", False, 8080),
            _ep_pod("c", "10.0.0.3", True, 9090), _ep_pod("d", None, True, 8080),
            _ep_pod("e", "10.0.0.9", True, 8080, terminating=True)]
    subsets = compute_subsets(svc, pods)
    assert len(subsets) == 2
    by_port = {s["ports"][0]["port"]: s for s in subsets}
    assert [a["ip"] for a in by_port[8080]["addresses"]] == ["10.0.0.2"]
    assert [a["ip"] for a in by_port[8080]["notReadyAddresses"]] == ["10.0.0.1"]
    assert [a["ip"] for a in by_port[9090]["addresses"]] == ["10.0.0.3"]
    assert by_port[8080]["addresses"][0]["nodeName"] == "n1"
    svc["spec"]["publishNotReadyAddresses"] = True
    assert "notReadyAddresses" not in compute_subsets(svc, pods)[0]
