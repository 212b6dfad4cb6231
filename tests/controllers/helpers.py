"""Test helpers standing in for a node: mark pods Running/Ready through /status, as a kubelet would."""
from __future__ import annotations

import asyncio
import copy
import ipaddress
import itertools
from datetime import datetime, timezone
from typing import Any, Callable

from pklib.resources import must_lookup
from pklib.client import Client
from pklib.errors import ApiError

PODS = must_lookup("pods")
_ips = itertools.count(1)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def set_pod_ready(client: Client, pod: dict[str, Any], ready: bool = True) -> dict[str, Any]:
    """Write pod status Running with Ready=<ready> and a pod IP (from TEST-NET 10.250/16, never routed)."""
    body = copy.deepcopy(pod)
    status = body.setdefault("status", {})
    status["phase"] = "Running"
    status.setdefault("podIP", str(ipaddress.ip_address("10.250.0.0") + next(_ips)))
    status.setdefault("startTime", _now())
    flag = "True" if ready else "False"
    status["conditions"] = [{"type": t, "status": flag if t in ("Ready", "ContainersReady") else "True",
                             "lastTransitionTime": _now()}
                            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    return await client.update_status(PODS, body)


async def list_pods(client: Client, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    return (await client.list(PODS, namespace, label_selector=selector)).get("items") or []


class FakeKubelet:
    """Marks every new pod in a namespace Running+Ready (optionally only those `accept` allows) and
    finishes graceful deletions, following a watch: a stand-in for hollow nodes in tests."""

    def __init__(self, client: Client, namespace: str, accept: Callable[[dict[str, Any]], bool] | None = None):
        self.client, self.namespace = client, namespace
        self.accept = accept or (lambda pod: True)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "FakeKubelet":
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        async for event in self.client.watch(PODS, self.namespace):
            pod = event.get("object") or {}
            if event.get("type") not in ("ADDED", "MODIFIED"):
                continue
            if pod["metadata"].get("deletionTimestamp"):
                # What a kubelet does once the containers stopped: finish the graceful deletion.
                try:
                    await self.client.delete(PODS, pod["metadata"]["name"], self.namespace, grace_period_seconds=0)
                except ApiError:
                    pass
                continue
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])
            if not ready and self.accept(pod):
                try:
                    await set_pod_ready(self.client, pod)
                except ApiError as e:
                    if e.code != 409:
                        continue  # deleted meanwhile
                    # Changed meanwhile: its next event may already be behind us, so retry on the fresh copy.
                    try:
                        await set_pod_ready(self.client, await self.client.get(PODS, pod["metadata"]["name"],
                                                                               self.namespace))
                    except ApiError:
                        pass


def images(pods: list[dict[str, Any]]) -> list[str]:
    return sorted(p["spec"]["containers"][0]["image"] for p in pods)


class PodWatcher:
    """Follows every pod of a namespace through a watch and records the extremes seen during a rollout."""

    def __init__(self, client: Client, namespace: str):
        self.client, self.namespace = client, namespace
        self.pods: dict[str, dict[str, Any]] = {}
        self.max_total = 0
        self.min_ready: int | None = None
        self.events = 0
        self.mixed = False  # were pods of two templates alive at the same moment?
        self._task: asyncio.Task[None] | None = None

    async def start(self, resource_version: str) -> None:
        self._task = asyncio.create_task(self._run(resource_version))

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, rv: str) -> None:
        async for ev in self.client.watch(PODS, self.namespace, resource_version=rv):
            pod = ev["object"]
            if ev["type"] == "BOOKMARK":
                continue
            self.events += 1
            if ev["type"] == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                self.pods.pop(pod["metadata"]["name"], None)
            else:
                self.pods[pod["metadata"]["name"]] = pod
            ready = sum(1 for p in self.pods.values()
                        if any(c["type"] == "Ready" and c["status"] == "True"
                               for c in (p.get("status") or {}).get("conditions") or []))
            self.max_total = max(self.max_total, len(self.pods))
            self.mixed = self.mixed or len(set(images(list(self.pods.values())))) > 1
            self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)
