"""Every kind pkube serves, through the official Python client's typed API (pydantic models that insist on the
fields Kubernetes always serializes): create, read and list each one and decode every answer into its model."""
from __future__ import annotations

import asyncio
import re
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes import config

from pklib.client import Client
from pklib.resources import APISERVICES, CRDS, NAMESPACES, NODES, RESOURCES, VIRTUAL, Resource
from tests.support.controllers import controller_manager
from tests.support.controlplane import ApiServer
from tests.support.samples import apiservice, sample
from tests.util import unique, wait_for

VIRTUAL_BODIES: dict[str, dict[str, Any]] = {
    "SelfSubjectAccessReview": {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}},
    "SubjectAccessReview": {"spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods"}}},
    "SelfSubjectRulesReview": {"spec": {"namespace": "default"}},
    "TokenReview": {"spec": {"token": "not-a-token"}},
    "SelfSubjectReview": {},
}


@pytest.fixture(scope="module")
def api(tls_apiserver: ApiServer) -> Iterator[k8s.ApiClient]:
    c = config.new_client_from_config(config_file=tls_apiserver.kubeconfig)
    yield c
    c.close()


def typed_api(api: k8s.ApiClient, res: Resource) -> Any:
    """CoreV1Api, AppsV1Api, RbacAuthorizationV1Api, ... for the kind's group version."""
    group = res.group.removesuffix(".k8s.io") if res.group else "core"
    prefix = "".join(part.capitalize() for part in group.split("."))
    api_class = getattr(k8s, f"{prefix}{res.version.capitalize()}Api", None)
    if api_class is None:  # e.g. metrics.k8s.io: the official client has no typed API for it
        pytest.skip(f"the official client has no typed API for {res.api_version}")
    return api_class(api)


def snake(kind: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", kind).lower()  # APIService: api_service


def method(api: Any, verb: str, res: Resource) -> Callable[..., Any]:
    scope = "namespaced_" if res.namespaced else ""
    return getattr(api, f"{verb}_{scope}{snake(res.kind)}")  # type: ignore[no-any-return]


# CustomResourceDefinitions (named plural.group, deleted asynchronously) have their own round trip through the
# official client's models in test_python_client_crds.py.
@pytest.mark.parametrize("res", [r for r in RESOURCES if r not in VIRTUAL and r != CRDS], ids=lambda r: r.kind)
def test_create_read_list_decode(api: k8s.ApiClient, res: Resource) -> None:
    typed = typed_api(api, res)
    ns = None
    if res.namespaced:
        ns = unique("pyk")
        k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    name = unique("obj") if not res.namespaced else "obj"
    body = sample(res, name, ns)
    if res is APISERVICES:  # named version.group
        body = apiservice(name)
        name = body["metadata"]["name"]
    args = (ns,) if ns else ()
    try:
        created = method(typed, "create", res)(*args, body)
        assert created.metadata.name == name and created.metadata.uid
        got = method(typed, "read", res)(name, *args)
        assert got.metadata.resource_version
        listed = method(typed, "list", res)(*args)
        assert name in [item.metadata.name for item in listed.items]
        if "status" in res.subresources:  # the status subresource decodes into the same model
            getattr(typed, f"read_{'namespaced_' if ns else ''}{snake(res.kind)}_status")(name, *args)
    finally:
        if ns:
            k8s.CoreV1Api(api).delete_namespace(ns)
        elif res.kind != "Namespace":
            method(typed, "delete", res)(name)
        else:
            k8s.CoreV1Api(api).delete_namespace(name)


@pytest.mark.parametrize("res", VIRTUAL, ids=lambda r: r.kind)
def test_reviews_decode(api: k8s.ApiClient, res: Resource) -> None:
    typed = typed_api(api, res)  # skips the metrics kinds (read only, no typed API)
    body = {"apiVersion": res.api_version, "kind": res.kind, **VIRTUAL_BODIES[res.kind]}
    answer = method(typed, "create", res)(body)
    assert answer.status is not None


async def test_status_written_without_the_always_serialized_fields(api: k8s.ApiClient,
                                                                 tls_apiserver: ApiServer) -> None:
    """A status write that leaves out the fields Kubernetes always serializes still answers with them (the
    official client would not send such a status itself: pkube's client does)."""
    ns = unique("pyk")
    apps = k8s.AppsV1Api(api)
    res = next(r for r in RESOURCES if r.kind == "DaemonSet")
    async with Client.from_kubeconfig(tls_apiserver.kubeconfig) as c:
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        try:
            created = await c.create(res, sample(res, "ds", ns))
            created["status"] = {"numberAvailable": 1}
            await c.update_status(res, created)
            status = (await asyncio.to_thread(apps.read_namespaced_daemon_set_status, "ds", ns)).status
            assert (status.number_available, status.current_number_scheduled, status.desired_number_scheduled,
                    status.number_misscheduled, status.number_ready) == (1, 0, 0, 0, 0)
        finally:
            await c.delete(NAMESPACES, ns)


async def test_statuses_written_by_controllers_decode(api: k8s.ApiClient, tls_apiserver: ApiServer) -> None:
    """What the controllers write (workload and budget statuses, conditions, endpoints, events, revisions)
    decodes into the client's models too."""
    ns = unique("pyk")
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    policy = k8s.PolicyV1Api(api)
    await asyncio.to_thread(core.create_namespace, k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    by_kind = {r.kind: r for r in RESOURCES}
    try:
        async with controller_manager(tls_apiserver) as start:
            await start("replicaset,deployment,daemonset,statefulset,disruption,endpoints")
            for kind in ("Deployment", "DaemonSet", "StatefulSet", "Service", "PodDisruptionBudget"):
                res = by_kind[kind]
                body = sample(res, f"w-{kind.lower()}", ns)
                await asyncio.to_thread(method(typed_api(api, res), "create", res), ns, body)

            async def settled() -> Any:
                budget = (await asyncio.to_thread(policy.read_namespaced_pod_disruption_budget,
                                                  "w-poddisruptionbudget", ns)).status
                deployment = (await asyncio.to_thread(apps.read_namespaced_deployment, "w-deployment", ns)).status
                return budget.conditions and deployment.replicas == 2
            await wait_for(settled, 30, 0.2, message="controllers wrote their statuses")

            def read_all() -> None:
                for res in RESOURCES:
                    if res.namespaced and res not in VIRTUAL:
                        method(typed_api(api, res), "list", res)(ns)  # decodes every item
                condition = policy.read_namespaced_pod_disruption_budget("w-poddisruptionbudget", ns).status \
                    .conditions[0]
                assert condition.type == "DisruptionAllowed" and condition.reason and condition.last_transition_time
            await asyncio.to_thread(read_all)
    finally:
        await asyncio.to_thread(core.delete_namespace, ns)


async def test_node_registered_with_part_of_its_system_info(api: k8s.ApiClient, tls_apiserver: ApiServer) -> None:
    """A node agent that leaves NodeSystemInfo fields out (a hollow node has no kube-proxy) reads back with ""."""
    name = unique("node")
    async with Client.from_kubeconfig(tls_apiserver.kubeconfig) as c:
        await c.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                               "status": {"nodeInfo": {"kubeletVersion": "v1.32.0", "operatingSystem": "linux"}}})
        try:
            info = (await asyncio.to_thread(k8s.CoreV1Api(api).read_node, name)).status.node_info
            assert (info.kubelet_version, info.kube_proxy_version, info.boot_id) == ("v1.32.0", "", "")
        finally:
            await c.delete(NODES, name)
