"""describe text layout: kubectl's tabwriter alignment, sections, events."""
from __future__ import annotations

from datetime import datetime, timezone

from pkctl.describers import Related, describe, tabwrite
from pklib.resources import Resource, lookup

NOW = datetime(2026, 11, 22, 3, 0, 0, tzinfo=timezone.utc)


def kind(name: str) -> Resource:
    """The kind table row for a name that certainly exists."""
    res = lookup(name)
    assert res is not None, name
    return res


def test_tabwrite_aligns_adjacent_lines_only() -> None:
    assert tabwrite(["Name:\tweb", "Namespace:\tdefault", "Containers:", "  c:\tx", "  Image:\tbusybox"]) == [
        "Name:       web", "Namespace:  default", "Containers:", "  c:      x", "  Image:  busybox"]


def test_describe_pod_with_events() -> None:
    pod = {"metadata": {"name": "web-1", "namespace": "ns1", "uid": "u1", "labels": {"b": "2", "a": "1"},
                        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "hi"}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
                                                      "env": [{"name": "MODE", "value": "fast"}],
                                                      "ports": [{"containerPort": 80}]}]},
           "status": {"phase": "Running", "podIP": "10.244.0.9", "hostIP": "10.0.0.1",
                      "containerStatuses": [{"name": "c", "ready": True, "restartCount": 1,
                                             "state": {"running": {"startedAt": "2026-11-22T02:59:00Z"}}}]}}
    events = [{"type": "Normal", "reason": "Pulled", "message": "pulled", "count": 3,
               "firstTimestamp": "2026-11-22T02:50:00Z", "lastTimestamp": "2026-11-22T02:58:00Z",
               "source": {"component": "kubelet", "host": "n1"}}]
    text = describe(kind("pods"), pod, events, NOW)
    lines = text.splitlines()
    assert lines[0] == "Name:             web-1"
    assert "Labels:           a=1" in lines and "                  b=2" in lines
    assert "Annotations:      note: hi" in lines, "last-applied is not shown"
    assert "Node:             n1/10.0.0.1" in lines
    assert "    Port:           80/TCP" in lines
    assert "      MODE:      fast" in lines
    assert "    State:          Running" in lines and "    Restart Count:  1" in lines
    assert lines[-4:] == ["Events:",
                          "  Type    Reason  Age               From         Message",
                          "  ----    ------  ----              ----         -------",
                          "  Normal  Pulled  2m (x3 over 10m)  kubelet, n1  pulled"]


def test_describe_deployment_and_no_events() -> None:
    d = {"metadata": {"name": "web", "namespace": "ns1", "creationTimestamp": "2026-11-22T02:00:00Z"},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
         "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2, "unavailableReplicas": 1}}
    lines = describe(kind("deploy"), d, [], NOW).splitlines()
    assert "CreationTimestamp:      Sun, 22 Nov 2026 02:00:00 +0000" in lines
    assert "Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable" in lines
    assert "RollingUpdateStrategy:  25% max unavailable, 25% max surge" in lines
    assert lines[-1].split() == ["Events:", "<none>"]


def test_describe_secret_shows_sizes_not_values() -> None:
    s = {"metadata": {"name": "s", "namespace": "n"}, "type": "Opaque", "data": {"password": "aHVudGVyMg=="}}
    text = describe(kind("secrets"), s, [], NOW)
    assert "password:  7 bytes" in text and "aHVudGVyMg" not in text


def test_describe_service_lists_endpoints_per_port() -> None:
    svc = {"metadata": {"name": "web", "namespace": "n"},
           "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    ep = {"subsets": [{"addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.0.6"}],
                       "ports": [{"name": "http", "port": 8080}]}]}
    lines = describe(kind("svc"), svc, None, NOW, Related(endpoints=ep)).splitlines()
    assert "Port:              http  80/TCP" in lines
    assert "TargetPort:        8080/TCP" in lines
    assert "Endpoints:         10.244.0.5:8080,10.244.0.6:8080" in lines
    assert "Endpoints:         <none>" in describe(kind("svc"), svc, None, NOW).splitlines()


def test_describe_node_sums_what_its_pods_ask_for() -> None:
    node = {"metadata": {"name": "n1"}, "spec": {},
            "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}

    def pod(name: str, cpu: str, memory: str, init_cpu: str | None = None) -> dict:
        spec: dict = {"containers": [{"name": "a", "resources": {"requests": {"cpu": cpu, "memory": memory},
                                                                 "limits": {"memory": memory}}},
                                     {"name": "b", "resources": {"requests": {"cpu": cpu}}}]}
        if init_cpu:
            spec["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": init_cpu}}}]
        return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-11-22T02:59:00Z"},
                "spec": spec}

    text = describe(kind("nodes"), node, [], NOW,
                    Related(pods=[pod("p1", "100m", "64Mi"), pod("p2", "250m", "128Mi", "1")]))
    lines = [line.split() for line in text.splitlines()]
    assert ["Non-terminated", "Pods:", "(2", "in", "total)"] in lines
    # p1: 2 x 100m; p2: its init container (1 cpu) outweighs 2 x 250m.
    assert ["ns", "p1", "200m", "(10%)", "0", "(0%)", "64Mi", "(6%)", "64Mi", "(6%)", "60s"] in lines
    assert ["ns", "p2", "1", "(50%)", "0", "(0%)", "128Mi", "(12%)", "128Mi", "(12%)", "60s"] in lines
    assert ["cpu", "1200m", "(60%)", "0", "(0%)"] in lines
    assert ["memory", "192Mi", "(18%)", "192Mi", "(18%)"] in lines


def test_describe_deployment_names_its_new_and_old_replicasets() -> None:
    rev = "deployment.kubernetes.io/revision"
    d = {"metadata": {"name": "web", "namespace": "n", "uid": "d1", "annotations": {rev: "2"}},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {}}

    def rs(name: str, revision: str, replicas: int, owner: str = "d1") -> dict:
        return {"metadata": {"name": name, "annotations": {rev: revision},
                             "ownerReferences": [{"controller": True, "uid": owner, "kind": "Deployment"}]},
                "spec": {"replicas": replicas}, "status": {"replicas": replicas}}

    sets = [rs("web-new", "2", 3), rs("web-old", "1", 1), rs("web-older", "0", 0), rs("other", "2", 5, owner="x")]
    lines = [line.split() for line in describe(kind("deploy"), d, [], NOW, Related(replicasets=sets)).splitlines()]
    assert ["OldReplicaSets:", "web-old", "(1/1", "replicas", "created)"] in lines
    assert ["NewReplicaSet:", "web-new", "(3/3", "replicas", "created)"] in lines
    text = describe(kind("deploy"), d, [], NOW, Related(replicasets=[]))
    assert [line.split() for line in text.splitlines() if line.startswith(("Old", "New"))] == [
        ["OldReplicaSets:", "<none>"], ["NewReplicaSet:", "<none>"]]


def test_describe_job_and_cronjob() -> None:
    job = {"metadata": {"name": "pi", "namespace": "ns1"},
           "spec": {"parallelism": 2, "completions": 3, "completionMode": "Indexed", "backoffLimit": 4,
                    "suspend": False, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                    "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
           "status": {"startTime": "2026-11-22T02:00:00Z", "completionTime": "2026-11-22T02:01:05Z",
                      "succeeded": 3, "completedIndexes": "0-2", "ready": 0}}
    lines = describe(kind("jobs"), job, [], NOW).splitlines()
    for line in ("Selector:           batch.kubernetes.io/controller-uid=u1", "Parallelism:        2",
                 "Completion Mode:    Indexed", "Backoff Limit:      4", "Duration:           65s",
                 "Pods Statuses:      0 Active (0 Ready) / 3 Succeeded / 0 Failed",
                 "Completed Indexes:  0-2"):
        assert line in lines, (line, lines)
    cj = {"metadata": {"name": "nightly", "namespace": "ns1"},
          "spec": {"schedule": "@daily", "concurrencyPolicy": "Forbid", "suspend": False,
                   "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                   "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "b"}]}}}}},
          "status": {"active": [{"name": "nightly-29000000"}]}}
    lines = describe(kind("cronjobs"), cj, [], NOW).splitlines()
    assert "Schedule:                      @daily" in lines and "Concurrency Policy:            Forbid" in lines
    assert "Starting Deadline Seconds:     <unset>" in lines
    assert "Active Jobs:         nightly-29000000" in lines, lines


def test_describe_pod_env_sources_in_kubectl_words() -> None:
    env = [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
           {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
           {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw", "optional": True}}}]
    pod = {"metadata": {"name": "p", "namespace": "ns1", "uid": "u1"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "env": env}]}, "status": {"phase": "Pending"}}
    text = [line.strip() for line in describe(kind("pods"), pod, [], NOW).splitlines()]
    assert "HOST_IP:    (v1:status.hostIP)" in text
    assert "COLOR:     <set to the key 'color' of config map 'cfg'>  Optional: false" in text
    assert "PASS:      <set to the key 'pw' in secret 'sec'>         Optional: true" in text


def test_describe_quota_and_limit_range_as_kubectl() -> None:
    quota = {"metadata": {"name": "rq", "namespace": "q", "labels": {"a": "b"}},
             "spec": {"hard": {"pods": "2", "limits.cpu": "1"}, "scopes": ["NotBestEffort"]},
             "status": {"hard": {"pods": "2", "limits.cpu": "1"}, "used": {"pods": "1", "limits.cpu": "500m"}}}
    assert describe(kind("quota"), quota, [], NOW).splitlines() == [
        "Name:       rq", "Namespace:  q", "Scopes:     NotBestEffort",
        "Resource    Used  Hard", "--------    ----  ----", "limits.cpu  500m  1", "pods        1     2"]
    limits = {"metadata": {"name": "lr", "namespace": "q"},
              "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "default": {"cpu": "1"},
                                   "defaultRequest": {"cpu": "1"}}]}}
    assert describe(kind("limits"), limits, [], NOW).splitlines() == [  # one tabwriter block, as kubectl's
        "Name:       lr", "Namespace:  q",
        "Type        Resource  Min  Max  Default Request  Default Limit  Max Limit/Request Ratio",
        "----        --------  ---  ---  ---------------  -------------  -----------------------",
        "Container   cpu       -    1    1                1              -"]
    rc = {"metadata": {"name": "web", "namespace": "q"},
          "spec": {"replicas": 2, "selector": {"app": "web"}, "template": {"spec": {"containers": []}}},
          "status": {"replicas": 2}}
    assert "Selector:        app=web" in describe(kind("rc"), rc, None, NOW).splitlines()
