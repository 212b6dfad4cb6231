"""The official Python client (PyPI `kubernetes`), unmodified, against pkube over TLS with token auth."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes import config, watch
from kubernetes.client.rest import ApiException

from tests.support.controlplane import ApiServer
from tests.util import unique


@pytest.fixture(scope="module")
def api(tls_apiserver: ApiServer) -> Iterator[k8s.ApiClient]:
    c = config.new_client_from_config(config_file=tls_apiserver.kubeconfig)
    yield c
    c.close()


@pytest.fixture
def pyns(api: k8s.ApiClient) -> str:
    name = unique("py")
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name


def _pod(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                     "env": [{"name": "A", "value": "1"}]}]}}


def test_pods_list_create_patch_delete(api: k8s.ApiClient, pyns: str) -> None:
    core = k8s.CoreV1Api(api)
    empty = core.list_namespaced_pod(pyns)
    assert empty.items == [] and empty.metadata.resource_version
    created = core.create_namespaced_pod(pyns, _pod("p1", app="web"))
    assert created.metadata.uid and created.spec.restart_policy == "Always"  # typed model, server defaults
    core.create_namespaced_pod(pyns, k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="p2", labels={"app": "db"}),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="busybox:1.36")])))
    assert [p.metadata.name for p in core.list_namespaced_pod(pyns, label_selector="app=web").items] == ["p1"]
    assert {p.metadata.name for p in core.list_pod_for_all_namespaces(label_selector="app").items} >= {"p1", "p2"}

    # A dict body goes out as a strategic merge patch: containers merge by name, so env survives.
    patched = core.patch_namespaced_pod("p1", pyns, {"metadata": {"labels": {"tier": "front"}},
                                                      "spec": {"containers": [{"name": "c",
                                                                               "image": "busybox:1.37"}]}})
    assert patched.metadata.labels == {"app": "web", "tier": "front"}
    assert patched.spec.containers[0].image == "busybox:1.37"
    assert [(e.name, e.value) for e in patched.spec.containers[0].env] == [("A", "1")]

    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("nope", pyns)
    assert err.value.status == 404 and '"reason":"NotFound"' in err.value.body.replace(" ", "")
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(pyns, _pod("p1"))
    assert err.value.status == 409

    core.delete_namespaced_pod("p2", pyns, grace_period_seconds=0)
    deadline = time.monotonic() + 10
    while "p2" in [p.metadata.name for p in core.list_namespaced_pod(pyns).items]:
        assert time.monotonic() < deadline, "pod p2 was not deleted"
        time.sleep(0.1)


def test_deployments_and_scale(api: k8s.ApiClient, pyns: str) -> None:
    apps = k8s.AppsV1Api(api)
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}}}
    d = apps.create_namespaced_deployment(pyns, body)
    assert d.spec.strategy.type == "RollingUpdate" and d.spec.revision_history_limit == 10
    apps.patch_namespaced_deployment_scale("web", pyns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment_scale("web", pyns).spec.replicas == 4
    d = apps.patch_namespaced_deployment("web", pyns, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "busybox:1.37"}]}}}})
    assert d.spec.template.spec.containers[0].image == "busybox:1.37" and d.metadata.generation == 3

    def replace_replicas(n: int) -> Any:
        """Read-modify-replace, again on a 409 (the deployment controller writes the status meanwhile), as
        client-go's RetryOnConflict does."""
        for _ in range(20):
            fresh = apps.read_namespaced_deployment("web", pyns)
            fresh.spec.replicas = n
            try:
                return apps.replace_namespaced_deployment("web", pyns, fresh)
            except ApiException as e:
                if e.status != 409:
                    raise
        raise AssertionError("20 conflicts in a row")
    stale = apps.read_namespaced_deployment("web", pyns)
    assert replace_replicas(2).spec.replicas == 2
    stale.spec.replicas = 5  # a stale resourceVersion is refused
    with pytest.raises(ApiException) as err:
        apps.replace_namespaced_deployment("web", pyns, stale)
    assert err.value.status == 409
    apps.delete_namespaced_deployment("web", pyns)
    assert apps.list_namespaced_deployment(pyns).items == []


def test_watch_stream_with_timeout(api: k8s.ApiClient, pyns: str) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(pyns, {"metadata": {"name": "first"}, "data": {"a": "1"}})

    def later() -> None:
        core.create_namespaced_config_map(pyns, {"metadata": {"name": "second"}})
        core.patch_namespaced_config_map("first", pyns, {"data": {"a": "2"}})
        core.delete_namespaced_config_map("second", pyns)

    events: list[tuple[str, str]] = []
    w = watch.Watch()
    started = time.monotonic()
    writer = threading.Timer(0.5, later)
    writer.start()
    try:
        # timeoutSeconds: the server ends the stream, and the generator with it.
        for ev in w.stream(core.list_namespaced_config_map, pyns, timeout_seconds=3):
            events.append((ev["type"], ev["object"].metadata.name))
    finally:
        writer.join()
    elapsed = time.monotonic() - started
    assert 2.5 < elapsed < 10
    assert events == [("ADDED", "first"), ("ADDED", "second"), ("MODIFIED", "first"), ("DELETED", "second")]
    assert w.resource_version  # kept for a resumed watch


def test_jobs_and_cronjobs_through_the_models(api: k8s.ApiClient, pyns: str) -> None:
    batch = k8s.BatchV1Api(api)
    pod_spec = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}
    job = batch.create_namespaced_job(pyns, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
                                             "spec": {"template": {"spec": pod_spec}}})
    assert job.spec.backoff_limit == 6 and job.spec.completion_mode == "NonIndexed"
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": job.metadata.uid}
    status = {"status": {"startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:05Z",
                         "succeeded": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
                         "conditions": [{"type": "Complete", "status": "True", "reason": "CompletionsReached",
                                         "lastProbeTime": "2026-01-01T00:00:05Z",
                                         "lastTransitionTime": "2026-01-01T00:00:05Z"}]}}
    done = batch.patch_namespaced_job_status("once", pyns, status)
    assert done.status.conditions[0].type == "Complete" and done.status.succeeded == 1
    assert [j.metadata.name for j in batch.list_namespaced_job(pyns).items] == ["once"]
    cj = batch.create_namespaced_cron_job(pyns, {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
        "spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}})
    assert cj.spec.concurrency_policy == "Allow" and cj.spec.successful_jobs_history_limit == 3
    assert batch.read_namespaced_cron_job("tick", pyns).spec.schedule == "@hourly"
