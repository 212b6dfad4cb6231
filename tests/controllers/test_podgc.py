"""The podgc controller: terminated pods past the threshold, orphans of deleted nodes."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest

from pklib.client import Client
from pklib.resources import NODES, PODS
from tests.support.controllers import controller_manager
from tests.support.controlplane import ApiServer, Etcd, _stop, start_apiserver
from tests.util import unique, wait_for


@pytest.fixture
async def private(session_tmp: str, etcd: Etcd) -> AsyncIterator[tuple[ApiServer, Client]]:
    # Its own apiserver: a small threshold must not collect the terminated pods of other tests.
    server = start_apiserver(session_tmp, etcd.url)
    try:
        async with Client(server.url, server.token) as c:
            yield server, c
    finally:
        _stop(server.proc)


def _pod(name: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox:1"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


async def _set_phase(c: Client, name: str, phase: str, reason: str | None = None) -> None:
    pod = await c.get(PODS, name, "default")
    pod["status"] = {"phase": phase, **({"reason": reason} if reason else {})}
    await c.update_status(PODS, pod)


async def _names(c: Client) -> set[str]:
    return {p["metadata"]["name"] for p in (await c.list(PODS, "default"))["items"]}


async def test_oldest_terminated_pods_past_the_threshold_are_deleted(private: Any) -> None:
    server, c = private
    node = unique("node")
    await c.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    # Created in this order (names break ties between equal creation seconds, as in Kubernetes).
    names = [f"gc-{i}" for i in range(6)]
    for name in names:
        await c.create(PODS, _pod(name, node), "default")
    for name, phase in zip(names, ("Succeeded", "Failed", "Succeeded", "Running", "Succeeded", "Pending")):
        await _set_phase(c, name, phase)
    await _set_phase(c, "gc-4", "Failed", reason="Evicted")  # the newest, but evicted pods go first
    async with controller_manager(server) as start:
        await start("podgc", "--terminated-pod-gc-threshold", "2", "--podgc-period", "0.2")
        # 4 terminated, 2 kept: the evicted one and the oldest go; running and pending pods are never counted.
        await wait_for(lambda: _equal(_names(c), {"gc-1", "gc-2", "gc-3", "gc-5"}), timeout=15,
                       message="the evicted and the oldest terminated pod to be deleted")


async def test_pods_of_a_deleted_node_are_deleted_after_the_quarantine(private: Any) -> None:
    server, c = private
    live, gone = unique("node"), unique("node")
    for node in (live, gone):
        await c.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    await c.create(PODS, _pod("on-live", live), "default")
    await c.create(PODS, _pod("on-gone", gone), "default")
    await _set_phase(c, "on-gone", "Running")
    async with controller_manager(server) as start:
        await start("podgc", "--podgc-period", "0.2", "--podgc-quarantine", "0.5")
        seen: list[dict[str, Any]] = []

        async def watch_orphan() -> None:
            async for ev in c.watch(PODS, "default", field_selector="metadata.name=on-gone", timeout_seconds=20):
                seen.append(ev)
                if ev["type"] == "DELETED":
                    return
        watcher = asyncio.create_task(watch_orphan())
        await c.delete(NODES, gone)
        await wait_for(lambda: _equal(_names(c), {"on-live"}), timeout=15, message="the orphan to be deleted")
        await asyncio.wait_for(watcher, 10)
    # Marked Failed with the reason before it went, as Kubernetes' podgc does.
    last = seen[-1]["object"]
    assert last["status"]["phase"] == "Failed"
    assert {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC"}.items() <= next(
        c for c in last["status"]["conditions"] if c["type"] == "DisruptionTarget").items()


async def _equal(names: Any, wanted: set[str]) -> bool:
    return await names == wanted
