"""Pod Security Admission against a real apiserver (default enforce level: baseline): refusal with Kubernetes'
message, Warning headers for warn-labelled namespaces and workloads, kube-system exempt, warnings about existing
pods when a namespace's enforce label gets stricter, invalid labels refused."""
from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.controlplane import ApiServer, Etcd, _stop, start_apiserver
from tests.util import unique

PODS = lookup("pods")
NAMESPACES = lookup("namespaces")
L = "pod-security.kubernetes.io/"
PRIVILEGED_POD_SPEC = {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}],
                       "volumes": [{"name": "v", "hostPath": {"path": "/tmp"}}]}
REFUSED = ('violates PodSecurity "baseline:latest": hostPath volumes (volume "v"), '
           'privileged (container "c" must not set securityContext.privileged=true)')


def pod(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": spec or {"containers": [{"name": "c", "image": "busybox"}]}}


async def write(client: Client, method: str, path: str, body: Any,
                content_type: str = "application/json") -> tuple[int, dict[str, Any], list[str]]:
    """(status, body, Warning headers) of one write."""
    async with client.session.request(method, client.server + path, data=json.dumps(body),
                                      headers={"Content-Type": content_type}) as r:
        return r.status, await r.json(), r.headers.getall("Warning", [])


async def make_ns(client: Client, **labels: str) -> str:
    name = unique("psa")
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {L + k: v for k, v in labels.items()}}})
    return name


async def test_baseline_default_refuses_a_privileged_pod_with_kubernetes_message(client: Client,
                                                                               namespace: str) -> None:
    status, body, _ = await write(client, "POST", PODS.path(namespace), pod("x", PRIVILEGED_POD_SPEC))
    assert status == 403
    assert body["reason"] == "Forbidden" and body["code"] == 403
    assert body["message"] == f'pods "x" is forbidden: {REFUSED}'
    with pytest.raises(ApiError) as e:
        await client.get(PODS, "x", namespace)
    assert e.value.code == 404
    # dry run is refused the same way; a plain pod is let through without warnings
    status, _, _ = await write(client, "POST", PODS.path(namespace) + "?dryRun=All", pod("y", PRIVILEGED_POD_SPEC))
    assert status == 403
    status, _, warnings = await write(client, "POST", PODS.path(namespace), pod("plain"))
    assert status == 201 and warnings == []


async def test_privileged_label_and_kube_system_let_host_pods_through(client: Client) -> None:
    ns = await make_ns(client, enforce="privileged", warn="privileged", audit="privileged")
    status, _, warnings = await write(client, "POST", PODS.path(ns), pod("host", PRIVILEGED_POD_SPEC))
    assert (status, warnings) == (201, [])
    name = unique("sys")
    status, _, warnings = await write(client, "POST", PODS.path("kube-system"), pod(name, PRIVILEGED_POD_SPEC))
    assert (status, warnings) == (201, [])
    await client.delete(PODS, name, "kube-system", grace_period_seconds=0)


async def test_warn_label_answers_with_warning_headers(client: Client) -> None:
    ns = await make_ns(client, enforce="baseline", warn="restricted")
    status, _, warnings = await write(client, "POST", PODS.path(ns), pod("w"))
    assert status == 201
    assert len(warnings) == 1 and warnings[0].startswith(
        '299 - "would violate PodSecurity \\"restricted:latest\\": allowPrivilegeEscalation != false (container '
        '\\"c\\" must set securityContext.allowPrivilegeEscalation=false)')


async def test_workloads_get_warnings_not_refusals(client: Client, namespace: str) -> None:
    deployments = lookup("deployments")
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": PRIVILEGED_POD_SPEC}}}
    status, _, warnings = await write(client, "POST", deployments.path(namespace), dep)
    assert status == 201
    assert [w.replace('\\"', '"') for w in warnings] == [f'299 - "would {REFUSED.replace("violates", "violate")}"']
    # a change that keeps the template still warns (Kubernetes evaluates every update of the object)
    status, _, warnings = await write(client, "PATCH", deployments.path(namespace, "d"), {"spec": {"replicas": 1}},
                                      "application/merge-patch+json")
    assert status == 200 and len(warnings) == 1


async def test_stricter_enforce_label_warns_about_existing_pods(client: Client) -> None:
    ns = await make_ns(client, enforce="privileged")
    for name in ("b-host", "a-host"):
        await client.create(PODS, pod(name, {"containers": [{"name": "c", "image": "busybox"}], "hostNetwork": True}),
                            ns)
    await client.create(PODS, pod("fine"), ns)
    status, _, warnings = await write(client, "PATCH", NAMESPACES.path(None, ns),
                                      {"metadata": {"labels": {L + "enforce": "baseline"}}},
                                      "application/merge-patch+json")
    assert status == 200
    assert warnings == [f'299 - "existing pods in namespace \\"{ns}\\" violate the new PodSecurity enforce level '
                        '\\"baseline:latest\\""', '299 - "a-host (and 1 other pod): host namespaces"']
    # the existing pods stay; new ones are refused
    assert len((await client.list(PODS, ns))["items"]) == 3
    with pytest.raises(ApiError) as e:
        await client.create(PODS, pod("c-host", {"containers": [{"name": "c", "image": "busybox"}],
                                                 "hostNetwork": True}), ns)
    assert e.value.code == 403 and "host namespaces (hostNetwork=true)" in str(e.value)


async def test_invalid_pod_security_labels_are_refused(client: Client) -> None:
    with pytest.raises(ApiError) as e:
        await make_ns(client, enforce="strict")
    assert e.value.code == 422
    assert 'metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of ' \
           "privileged, baseline, restricted" in str(e.value)
    ns = await make_ns(client)
    with pytest.raises(ApiError) as e:
        await client.patch(NAMESPACES, ns, {"metadata": {"labels": {L + "warn-version": "1.29"}}})
    assert e.value.code == 422


@pytest.fixture(scope="module")
def permissive_apiserver(session_tmp: str, etcd: Etcd) -> Iterator[ApiServer]:
    a = start_apiserver(session_tmp, etcd.url, ["--pod-security-default-enforce", "privileged"])
    yield a
    _stop(a.proc)


async def test_default_enforce_privileged_turns_the_default_off(permissive_apiserver: ApiServer) -> None:
    client = Client(permissive_apiserver.url, permissive_apiserver.token)
    try:
        ns = await make_ns(client)
        status, _, warnings = await write(client, "POST", PODS.path(ns), pod("host", PRIVILEGED_POD_SPEC))
        assert (status, warnings) == (201, [])
        ns = await make_ns(client, enforce="baseline")  # a label still applies
        status, _, _ = await write(client, "POST", PODS.path(ns), pod("host", PRIVILEGED_POD_SPEC))
        assert status == 403
    finally:
        await client.close()
