"""Node lifecycle: notices silent nodes and evicts their pods after the pods' toleration.

Kubelets heartbeat by renewing their Lease in kube-node-lease. We note *when we saw*
each renewal (our own clock, never the kubelet's timestamp, so clock skew cannot make
a node look dead or alive). A node unheard of for --node-monitor-grace-period gets
Ready=Unknown and the node.kubernetes.io/unreachable:NoExecute taint; when its Lease
moves again both are undone.

Pods on a node with a NoExecute taint are deleted (evicted) once their toleration for
it runs out (they are marked not Ready at once): at once without a toleration, after tolerationSeconds
with one, never with an unbounded one. Kubernetes' admission gives every pod a 300 s toleration for the
not-ready/unreachable taints; we apply that default here when the pod has none
(--default-unreachable-toleration-seconds). Each node is a work-queue key whose sync
re-checks everything and re-queues itself for the next moment something is due.
"""
from __future__ import annotations

import argparse
import copy
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from pklib.api.disruption import DELETION_BY_TAINT_MANAGER, disruption_status_patch
from pklib.api.tolerations import tolerates
from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError, is_not_found
from pklib.informer import Obj
from pklib.api.timefmt import now_rfc3339, parse_time
from pklib.api.wellknown import (DISK_PRESSURE_TAINT, MEMORY_PRESSURE_TAINT, NODE_LEASE_NAMESPACE, NOT_READY_TAINT,
                                 PID_PRESSURE_TAINT, UNREACHABLE_TAINT)
from pklib.objects import key_of
from pklib.resources import LEASES, NODES, PODS


UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
# node condition -> the NoSchedule taint it brings (Kubernetes' TaintNodesByCondition)
PRESSURE_TAINTS = {"MemoryPressure": MEMORY_PRESSURE_TAINT, "DiskPressure": DISK_PRESSURE_TAINT,
                   "PIDPressure": PID_PRESSURE_TAINT}
PRESSURE_KEYS = set(PRESSURE_TAINTS.values())


def eviction_delay(pod: Obj, taints: list[dict[str, Any]], default_seconds: float) -> float | None:
    """Seconds after the taints were added at which the pod must go; None = it may stay.

    With several NoExecute taints the pod leaves when its shortest toleration ends.
    """
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    delays: list[float] = []
    for taint in taints:
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            if taint.get("key") in (UNREACHABLE_TAINT, NOT_READY_TAINT):
                delays.append(default_seconds)  # what DefaultTolerationSeconds admission would have given
                continue
            return 0.0
        bounded = [float(t["tolerationSeconds"]) for t in matching if t.get("tolerationSeconds") is not None]
        if len(bounded) == len(matching):
            delays.append(max(0.0, min(bounded)))
    return min(delays) if delays else None


class NodeLifecycleController(Controller):
    name = "nodelifecycle"

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--node-monitor-grace-period", type=float, default=40.0,
                            help="seconds without a Lease renewal before a node is marked unreachable")
        parser.add_argument("--default-unreachable-toleration-seconds", type=float, default=300.0,
                            help="how long pods without their own toleration stay on an unreachable node")

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.grace = float(self.option("node_monitor_grace_period", 40.0))
        self.default_toleration = float(self.option("default_unreachable_toleration_seconds", 300.0))
        # node name -> monotonic time we last saw its Lease change (or first saw the node).
        self._heard: dict[str, float] = {}
        self.nodes = self.watch(NODES, on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                on_delete=self._node_deleted)
        self.leases = self.watch(LEASES, on_add=self._lease_seen, on_update=self._lease_changed)
        self.pods = self.watch(PODS, on_add=self._pod_changed, on_update=lambda old, new: self._pod_changed(new))

    # -- handlers -------------------------------------------------------------------------------

    def _node_deleted(self, node: Obj) -> None:
        self._heard.pop(key_of(node), None)

    def _lease_seen(self, lease: Obj) -> None:
        if (lease.get("metadata") or {}).get("namespace") == NODE_LEASE_NAMESPACE:
            self._heard[lease["metadata"]["name"]] = time.monotonic()
            self.queue.add(lease["metadata"]["name"])

    def _lease_changed(self, old: Obj, new: Obj) -> None:
        if (old.get("spec") or {}).get("renewTime") != (new.get("spec") or {}).get("renewTime"):
            self._lease_seen(new)

    def _pod_changed(self, pod: Obj) -> None:
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = self.nodes.store.get(node_name) if node_name else None
        if node is not None and _no_execute_taints(node):
            self.queue.add(node_name)

    # -- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        node = self.nodes.store.get(key)
        if node is None:
            return
        now = time.monotonic()
        heard = self._heard.setdefault(key, now)  # a node we just met gets a full grace period
        silent_for = now - heard
        if silent_for > self.grace:
            node = await self._mark_unreachable(node)
            await self._mark_pods_not_ready(key)
        else:
            node = await self._mark_reachable(node)
            self.enqueue_after(key, self.grace - silent_for + 0.1)
        node = await self._taint_by_conditions(node)
        next_eviction = await self._evict_pods(node)
        if next_eviction is not None:
            self.enqueue_after(key, next_eviction)

    async def _mark_unreachable(self, node: Obj) -> Obj:
        name = key_of(node)
        if _ready_status(node) != "Unknown":
            self.log.info("node %s: no heartbeat for %.0fs; marking it unreachable", name, self.grace)
            updated = copy.deepcopy(node)
            now = now_rfc3339()
            conditions = (updated.setdefault("status", {}).get("conditions") or
                          [{"type": "Ready", "status": "Unknown"}])
            for c in conditions:
                if c.get("status") != "Unknown":
                    c.update(status="Unknown", reason=UNKNOWN_REASON, message=UNKNOWN_MESSAGE,
                             lastTransitionTime=now)
            updated["status"]["conditions"] = conditions
            node = await self._write(NODES, updated, status=True) or node
            self.recorder.normal(node, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        # NoExecute evicts; NoSchedule (Kubernetes' TaintNodesByCondition) also keeps away new
        # pods that tolerate the eviction for a while.
        have = {t.get("effect") for t in (node.get("spec") or {}).get("taints") or []
                if t.get("key") == UNREACHABLE_TAINT}
        missing = [e for e in ("NoSchedule", "NoExecute") if e not in have]
        if missing:
            updated = copy.deepcopy(node)
            spec = updated.setdefault("spec", {})
            spec["taints"] = [*(spec.get("taints") or []),
                              *({"key": UNREACHABLE_TAINT, "effect": e, "timeAdded": now_rfc3339()} for e in missing)]
            node = await self._write(NODES, updated) or node
        return node

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """No kubelet speaks for the node's pods: none of them is Ready (Kubernetes' MarkPodsNotReady), so
        Services stop sending them traffic until their kubelet reports again."""
        for pod in self.pods.store.by_index("node", node_name):
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed"):
                continue
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == "False":
                continue
            self.log.info("node %s is unreachable: marking pod %s not ready", node_name, key_of(pod))
            try:
                await self.client.patch(PODS, meta["name"], {"status": {"conditions": [
                    {"type": "Ready", "status": "False", "lastTransitionTime": now_rfc3339()}]}},
                    meta["namespace"], patch_type="strategic", subresource="status")
            except ApiError as e:
                if not is_not_found(e):
                    raise

    async def _mark_reachable(self, node: Obj) -> Obj:
        name = key_of(node)
        if _ready_status(node) == "Unknown" and _ready_reason(node) == UNKNOWN_REASON:
            self.log.info("node %s: heartbeats again; marking it ready", name)
            updated = copy.deepcopy(node)
            now = now_rfc3339()
            conditions: list[dict[str, Any]] = updated["status"]["conditions"]
            for c in conditions:
                if c.get("reason") == UNKNOWN_REASON:
                    ready = c.get("type") == "Ready"
                    c.update(status="True" if ready else "False",
                             reason="KubeletReady" if ready else "NodeStatusRecovered",
                             message="kubelet is posting ready status" if ready else "", lastTransitionTime=now)
            node = await self._write(NODES, updated, status=True) or node
            self.recorder.normal(node, "NodeReady", f"Node {name} status is now: NodeReady")
        taints = (node.get("spec") or {}).get("taints") or []
        if any(t.get("key") == UNREACHABLE_TAINT for t in taints):
            updated = copy.deepcopy(node)
            updated["spec"]["taints"] = [t for t in taints if t.get("key") != UNREACHABLE_TAINT]
            node = await self._write(NODES, updated) or node
        return node

    async def _taint_by_conditions(self, node: Obj) -> Obj:
        """Kubernetes' TaintNodesByCondition: a node under memory, disk or PID pressure gets the matching
        NoSchedule taint (new pods go elsewhere unless they tolerate it), taken off when the condition clears."""
        conditions = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
        wanted = {taint for condition, taint in PRESSURE_TAINTS.items() if conditions.get(condition) == "True"}
        taints = (node.get("spec") or {}).get("taints") or []
        have = {t.get("key") for t in taints if t.get("effect") == "NoSchedule" and t.get("key") in PRESSURE_KEYS}
        if have == wanted:
            return node
        updated = copy.deepcopy(node)
        kept = [t for t in taints if not (t.get("effect") == "NoSchedule" and t.get("key") in PRESSURE_KEYS
                                          and t.get("key") not in wanted)]
        added = [{"key": key, "effect": "NoSchedule", "timeAdded": now_rfc3339()} for key in sorted(wanted - have)]
        updated.setdefault("spec", {})["taints"] = kept + added
        self.log.info("node %s: pressure taints now %s", key_of(node), sorted(wanted) or "none")
        return await self._write(NODES, updated) or node

    async def _evict_pods(self, node: Obj) -> float | None:
        """Delete the pods whose toleration ran out; seconds until the next one is due (or None)."""
        taints = _no_execute_taints(node)
        if not taints:
            return None
        now = datetime.now(timezone.utc)
        next_due: float | None = None
        for pod in self.pods.store.by_index("node", key_of(node)):
            meta = pod.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue
            due = self._eviction_time(pod, taints, now)
            if due is None:
                continue
            if due > now:
                wait = (due - now).total_seconds()
                next_due = wait if next_due is None else min(next_due, wait)
                continue
            self.recorder.normal(pod, "TaintManagerEviction", f"Marking for deletion Pod {key_of(pod)}")
            try:
                await self.client.patch(PODS, meta["name"], disruption_status_patch(
                    DELETION_BY_TAINT_MANAGER, "Taint manager: deleting due to NoExecute taint"), meta["namespace"],
                    patch_type="strategic", subresource="status")
                await self.client.delete(PODS, meta["name"], meta["namespace"],
                                         preconditions={"uid": meta.get("uid")})
            except ApiError as e:
                if not is_not_found(e):
                    raise
        return next_due

    def _eviction_time(self, pod: Obj, taints: list[dict[str, Any]], now: datetime) -> datetime | None:
        """When the pod's toleration of the node's NoExecute taints ends (the earliest one); None = never."""
        due: datetime | None = None
        for taint in taints:
            delay = eviction_delay(pod, [taint], self.default_toleration)
            if delay is None:
                continue
            added = parse_time(taint.get("timeAdded")) or now
            at = added + timedelta(seconds=delay)
            due = at if due is None else min(due, at)
        return due

    async def _write(self, res: Any, obj: Obj, status: bool = False) -> Obj | None:
        """Write a copy of a cached object; None if it is gone. Conflicts raise and the key is retried."""
        try:
            if status:
                return await self.client.update_status(res, obj)
            return await self.client.update(res, obj)
        except ApiError as e:
            if is_not_found(e):
                return None
            raise


def _ready(node: Obj) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = (node.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _ready_status(node: Obj) -> str | None:
    return _ready(node).get("status")


def _ready_reason(node: Obj) -> str | None:
    return _ready(node).get("reason")


def _no_execute_taints(node: Obj) -> list[dict[str, Any]]:
    return [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
