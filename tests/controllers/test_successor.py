"""The successor of a controller-manager that died (named by its supervisor) keeps Services current while it
waits out the settle time before it takes its predecessor's Lease: the endpoints controller, whose writes follow
from the caches alone, runs at once; the ReplicaSet controller, which creates pods, waits for the Lease."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from controllers.main import build_parser, run
from pklib import leaderelection
from pklib.api.timefmt import format_micro_time, now
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import must_lookup
from tests.controllers.helpers import list_pods, set_pod_ready
from tests.support.controlplane import ApiServer
from tests.support.workloads import rs_body
from tests.util import wait_for

LEASES, SVC, EP, PODS, RS = (must_lookup(p) for p in ("leases", "services", "endpoints", "pods", "replicasets"))
LEASE = "pkube-controller-manager"


async def start_successor(client: Client, namespace: str, apiserver: ApiServer, renewed_ago: float
                          ) -> tuple[asyncio.Task[None], dict[str, Any]]:
    """The Lease of the dead `cm_dead`, renewed `renewed_ago` seconds ago (duration 120 s), a Service with one
    ready pod and a ReplicaSet that wants one, then its successor `cm_new` started: (its task, the pod)."""
    try:
        await client.delete(LEASES, LEASE, "kube-system")
    except ApiError:
        pass
    renewed = format_micro_time(now() - timedelta(seconds=renewed_ago))
    await client.create(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                 "metadata": {"name": LEASE, "namespace": "kube-system"},
                                 "spec": {"holderIdentity": "cm_dead", "leaseDurationSeconds": 120,
                                          "acquireTime": renewed, "renewTime": renewed}}, "kube-system")
    await client.create(SVC, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}, namespace)
    pod = await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a",
                                                                                     "labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, namespace)
    pod = await set_pod_ready(client, pod)
    await client.create(RS, rs_body("made-by-the-leader", 1), namespace)
    config = build_parser().parse_args([
        "--server", apiserver.url, "--token", apiserver.token, "--controllers", "endpoints,replicaset",
        "--leader-elect", "--leader-elect-identity", "cm_new", "--leader-elect-predecessor", "cm_dead"])
    return asyncio.create_task(run(config, asyncio.Event())), pod


async def published(client: Client, namespace: str) -> list[str] | None:
    try:
        ep = await client.get(EP, "web", namespace)
    except ApiError:
        return None
    return [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []]


async def stop(task: asyncio.Task[None], client: Client) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.delete(LEASES, LEASE, "kube-system")


async def test_a_successor_keeps_services_current_while_it_waits_to_take_its_dead_predecessors_lease(
        client: Client, namespace: str, apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaderelection, "PREDECESSOR_SETTLE", 60.0)  # the test ends long before it takes the Lease
    task, pod = await start_successor(client, namespace, apiserver, renewed_ago=1)
    try:
        assert await wait_for(lambda: published(client, namespace), timeout=20,
                              message="the Service's endpoints") == [pod["status"]["podIP"]]
        assert not task.done()
        lease = await client.get(LEASES, LEASE, "kube-system")
        assert lease["spec"]["holderIdentity"] == "cm_dead", "still waiting out the settle time"
        assert await list_pods(client, namespace, "app=made-by-the-leader") == [], "no pod created before it leads"
    finally:
        await stop(task, client)
