"""Pure output logic of pkctl: ages, table alignment, per-kind columns, yaml/json/name."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from pklib import columns
from pkctl.printers import (as_list, docker_duration, format_rows, human_duration, object_ref, since, to_json,
                            to_yaml, with_type)
from pklib.resources import Resource, lookup

NOW = datetime(2026, 11, 22, 3, 0, 0, tzinfo=timezone.utc)


def kind(name: str) -> Resource:
    """The kind table row for a name that certainly exists."""
    res = lookup(name)
    assert res is not None, name
    return res


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("seconds, text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"),
    (599, "9m59s"), (600, "10m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (4 * 3600 + 60 * 5, "4h5m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (2 * 86400 + 3600, "2d1h"), (9 * 86400, "9d"),
    (800 * 86400, "2y70d"), (3650 * 86400, "10y"),
])
def test_human_duration_matches_kubectl(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_since_handles_missing_and_fractional_timestamps() -> None:
    assert since(None, NOW) == "<unknown>"
    assert since("2026-11-22T02:59:55.123456Z", NOW) == "4s"


def test_format_rows_pads_all_but_last_column_by_three() -> None:
    lines = format_rows([["NAME", "READY", "STATUS"], ["a-long-name", "1/1", "Running"]])
    assert lines == ["NAME          READY   STATUS", "a-long-name   1/1     Running"]


def test_format_rows_keeps_widths_for_later_rows() -> None:
    widths: list[int] = []
    format_rows([["NAME", "AGE"], ["web", "5s"]], widths)
    assert format_rows([["w", "6s"]], widths) == ["w      6s"]


def pod(**status: object) -> dict:
    return {"metadata": {"name": "p", "creationTimestamp": ago(seconds=30)},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": status}


def test_pod_row_counts_ready_containers_and_restarts() -> None:
    p = pod(phase="Running", podIP="10.244.0.7", containerStatuses=[
        {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}},
         "lastState": {"terminated": {"finishedAt": ago(minutes=5)}}},
        {"name": "b", "ready": False, "restartCount": 0, "state": {"running": {}}}])
    res = kind("po")
    assert columns.headers(res) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert columns.cells(res, p, NOW) == ["p", "1/2", "Running", "2 (5m ago)", "30s"]
    assert columns.cells(res, p, NOW, wide=True)[5:] == ["10.244.0.7", "<none>", "<none>", "<none>"]


@pytest.mark.parametrize("status, deleting, expected", [
    ({"phase": "Pending"}, False, "Pending"),
    ({"phase": "Pending", "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ErrImagePull"}}}]},
     False, "ErrImagePull"),
    ({"phase": "Failed", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 3}}}]},
     False, "ExitCode:3"),
    ({"phase": "Succeeded", "containerStatuses": [{"name": "a", "state": {"terminated": {"reason": "Completed"}}}]},
     False, "Completed"),
    ({"phase": "Running"}, True, "Terminating"),
    ({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}]}, False, "Init:0/1"),
])
def test_pod_status_column(status: dict, deleting: bool, expected: str) -> None:
    p = pod(**status)
    p["spec"]["initContainers"] = [{"name": "i"}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert columns.pod_status_and_restarts(p, NOW)[2] == expected


def test_deployment_and_service_rows() -> None:
    d = {"metadata": {"name": "web", "creationTimestamp": ago(hours=4)},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                                              "matchExpressions": [{"key": "tier", "operator": "In",
                                                                    "values": ["b", "a"]}]},
                  "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert columns.cells(kind("deploy"), d, NOW, wide=True) == [
        "web", "2/3", "3", "2", "4h", "c", "busybox", "app=web,tier in (a,b)"]
    s = {"metadata": {"name": "svc", "creationTimestamp": ago(days=3)},
         "spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
                  "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}
    assert columns.cells(kind("svc"), s, NOW) == ["svc", "NodePort", "10.96.0.20", "<none>", "80:30080/TCP,53/UDP",
                                                    "3d"]


def test_endpoints_show_three_then_count_the_rest() -> None:
    ep = {"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(5)],
                                                  "ports": [{"port": 80}]}]}
    assert columns.cells(kind("ep"), ep, NOW)[1] == "10.0.0.0:80,10.0.0.1:80,10.0.0.2:80 + 2 more..."


def test_node_status_roles_and_unknown_kind_fallback() -> None:
    n = {"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
         "spec": {"unschedulable": True}, "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                                      "nodeInfo": {"kubeletVersion": "v1.32.0"}}}
    assert columns.cells(kind("no"), n, NOW) == ["n1", "Ready,SchedulingDisabled", "control-plane", "<unknown>",
                                                   "v1.32.0"]
    assert columns.headers(kind("leases")) == ["NAME", "HOLDER", "AGE"]
    assert columns.headers(kind("endpointslices"), wide=True)[0] == "NAME"


def test_name_and_structured_output() -> None:
    res = kind("deploy")
    obj = {"metadata": {"name": "web"}, "spec": {"replicas": 1}}
    assert object_ref(res, obj) == "deployment.apps/web"
    typed = with_type(res, obj)
    assert typed["apiVersion"] == "apps/v1" and typed["kind"] == "Deployment"
    doc = yaml.safe_load(to_yaml(as_list([typed])))
    assert doc["kind"] == "List" and doc["items"][0]["metadata"]["name"] == "web"
    text = to_yaml({"b": 1, "a": ["x"], "s": "line1\nline2\n"})
    assert text.startswith("a:\n- x\n") and "s: |\n  line1\n  line2\n" in text
    assert to_json({"b": 1, "a": 2}) == '{\n    "a": 2,\n    "b": 1\n}\n'


def test_priorityclass_row_as_kubectl() -> None:
    pc = {"metadata": {"name": "system-node-critical", "creationTimestamp": ago(minutes=5)},
          "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"}
    assert columns.headers(kind("pc")) == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    assert columns.cells(kind("priorityclass"), pc, NOW) == ["system-node-critical", "2000001000", "false", "5m",
                                                             "PreemptLowerPriority"]


def test_hpa_row_shows_targets_as_kubectl() -> None:
    res = kind("hpa")
    assert columns.headers(res) == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    cpu = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                      "averageUtilization": 50}}}
    mem = {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue",
                                                                         "averageValue": "100Mi"}}}
    h = {"metadata": {"name": "web", "creationTimestamp": ago(seconds=30)},
         "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                  "metrics": [cpu, mem, cpu]},
         "status": {"currentReplicas": 2, "currentMetrics": [
             {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 72}}}]}}
    assert columns.cells(res, h, NOW) == ["web", "Deployment/web", "cpu: 72%/50%, memory: <unknown>/100Mi + 1 more...",
                                          "1", "5", "2", "30s"]
    v1 = {"apiVersion": "autoscaling/v1", "metadata": h["metadata"],
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                   "targetCPUUtilizationPercentage": 50}, "status": {"currentCPUUtilizationPercentage": 9}}
    assert columns.cells(res, v1, NOW)[2:4] == ["cpu: 9%/50%", "<unset>"]
    h["spec"]["metrics"] = []
    assert columns.cells(res, h, NOW)[2] == "<none>"


@pytest.mark.parametrize("seconds,text", [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"), (119, "About a minute"),
    (120, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"),
    (47 * 3600, "47 hours"), (48 * 3600, "2 days"), (14 * 86400, "2 weeks"), (60 * 86400, "2 months"),
    (730 * 86400, "2 years"),
])
def test_docker_duration_is_dockers_human_duration(seconds: float, text: str) -> None:
    assert docker_duration(seconds) == text
