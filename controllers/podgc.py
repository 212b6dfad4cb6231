"""Pod garbage collection (Kubernetes' podgc controller): keeps the pods a long-running cluster leaves behind bounded.

Every --podgc-period (Kubernetes: 20 s) it
- deletes the oldest terminated pods (phase Succeeded or Failed; evicted ones first) beyond
  --terminated-pod-gc-threshold (12500; 0 turns this off), so Jobs and crashed pods cannot pile up forever;
- deletes pods bound to a node that no longer exists: once the node has been missing from the cache for
  the quarantine (40 s, in case the node is only late to show up) and the API confirms it is gone, the pod
  is marked Failed with a DisruptionTarget condition (reason DeletionByPodGC) and deleted at once;
- force-deletes terminating pods that were never scheduled (no kubelet will ever finish their deletion).
"""
from __future__ import annotations

import argparse
import copy
import time
from typing import Any

from pklib.api.timefmt import now_rfc3339
from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError, is_not_found
from pklib.informer import Obj
from pklib.objects import key_of
from pklib.resources import NODES, PODS

KEY = "podgc"
TERMINATED_PHASES = ("Succeeded", "Failed")


def is_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINATED_PHASES


def gc_order(pod: Obj) -> tuple[bool, str, str]:
    """Evicted pods first, then the oldest (Kubernetes' byEvictionAndCreationTimestamp)."""
    meta = pod.get("metadata") or {}
    return ((pod.get("status") or {}).get("reason") != "Evicted", meta.get("creationTimestamp") or "",
            meta.get("name") or "")


def terminated_to_delete(pods: list[Obj], threshold: int) -> list[Obj]:
    """The terminated pods past the threshold, in the order they go."""
    if threshold <= 0:
        return []
    terminated = [p for p in pods if is_terminated(p)]
    excess = len(terminated) - threshold
    return sorted(terminated, key=gc_order)[:excess] if excess > 0 else []


class PodGCController(Controller):
    name = "podgc"

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--terminated-pod-gc-threshold", type=int, default=12500,
                            help="terminated pods kept before the oldest are deleted (0 = never delete them)")
        parser.add_argument("--podgc-period", type=float, default=20.0, help="seconds between pod GC passes")
        parser.add_argument("--podgc-quarantine", type=float, default=40.0,
                            help="seconds a node must be missing before its pods are deleted as orphans")

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.threshold = int(self.option("terminated_pod_gc_threshold", 12500))
        self.period = float(self.option("podgc_period", 20.0))
        self.quarantine = float(self.option("podgc_quarantine", 40.0))
        self.pods = self.watch(PODS)
        self.nodes = self.watch(NODES)
        self._missing_since: dict[str, float] = {}  # node name -> when we first saw pods bound to it, missing
        self.queue.add(KEY)

    async def sync(self, key: str) -> None:
        try:
            pods = self.pods.store.list()
            await self._gc_terminated(pods)
            await self._gc_orphaned(pods)
            await self._gc_unscheduled_terminating(pods)
        finally:
            self.enqueue_after(KEY, self.period)

    async def _gc_terminated(self, pods: list[Obj]) -> None:
        doomed = terminated_to_delete(pods, self.threshold)
        if doomed:
            self.log.info("%d terminated pods over the threshold of %d: deleting the oldest", len(doomed),
                          self.threshold)
        for pod in doomed:
            await self._delete(pod)

    async def _gc_orphaned(self, pods: list[Obj]) -> None:
        now = time.monotonic()
        bound = {p["spec"]["nodeName"] for p in pods if (p.get("spec") or {}).get("nodeName")}
        missing = {n for n in bound if self.nodes.store.get(n) is None}
        self._missing_since = {n: self._missing_since.get(n, now) for n in missing}
        for node_name, since in self._missing_since.items():
            if now - since < self.quarantine or not await self._node_gone(node_name):
                continue
            for pod in [p for p in pods if (p.get("spec") or {}).get("nodeName") == node_name]:
                self.log.info("pod %s: its node %s no longer exists; deleting it", key_of(pod), node_name)
                await self._mark_failed(pod, "PodGC: node no longer exists")
                await self._delete(pod)

    async def _gc_unscheduled_terminating(self, pods: list[Obj]) -> None:
        for pod in pods:
            meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
            if meta.get("deletionTimestamp") and not spec.get("nodeName"):
                self.log.info("pod %s: terminating and never scheduled; deleting it", key_of(pod))
                await self._delete(pod)

    async def _node_gone(self, name: str) -> bool:
        """The cache may lag: ask the API before treating a node as deleted."""
        try:
            await self.client.get(NODES, name)
            return False
        except ApiError as e:
            if is_not_found(e):
                return True
            raise

    async def _mark_failed(self, pod: Obj, message: str) -> None:
        if is_terminated(pod):
            return
        updated = copy.deepcopy(pod)
        status: dict[str, Any] = updated.setdefault("status", {})
        status["phase"] = "Failed"
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
        conditions.append({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                           "message": message, "lastTransitionTime": now_rfc3339()})
        status["conditions"] = conditions
        try:
            await self.client.update_status(PODS, updated)
        except ApiError as e:
            if not is_not_found(e) and e.code != 409:
                raise  # a conflict: the pod changed; it is deleted below all the same

    async def _delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], meta.get("namespace"), grace_period_seconds=0,
                                     preconditions={"uid": meta.get("uid")})
        except ApiError as e:
            if not is_not_found(e) and e.code != 409:
                raise
