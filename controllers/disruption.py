"""Disruption controller: keeps every PodDisruptionBudget's status (Kubernetes' pkg/controller/disruption).

sync(pdb): the pods the budget selects; how many are expected (the scale of the controllers owning them, or
simply the pods when minAvailable is an absolute number); how many must stay healthy; how many are healthy
now (Ready, not being deleted, not just evicted). disruptionsAllowed = healthy - desired. Pods the Eviction
subresource recorded in status.disruptedPods stop counting as healthy until their deletion shows up, or for
two minutes at most. Errors (a pod without a known controller) fail safe: no disruption allowed, condition
DisruptionAllowed=False with reason SyncFailed.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pklib.api import disruption
from pklib.api.timefmt import format_time, now, parse_time
from pklib.controller import ControllerContext, Controller
from pklib.informer import Obj
from pklib.resources import DEPLOYMENTS, PODDISRUPTIONBUDGETS, PODS, REPLICASETS, REPLICATIONCONTROLLERS, STATEFULSETS

from .util import controller_ref, int_or_percent, is_pod_ready, meta, write_status


class ScaleError(Exception):
    """The expected number of pods cannot be known (the status says so)."""


class DisruptionController(Controller):
    name = "disruption"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.pdb_informer = self.watch(PODDISRUPTIONBUDGETS, self.enqueue, lambda old, new: self.enqueue(new))
        self.pod_informer = self.watch(PODS, self._pod_changed, self._pod_updated, self._pod_changed)
        self.owner_informers = {res.kind: self.watch(res, None, self._scale_changed)
                                for res in (REPLICASETS, DEPLOYMENTS, STATEFULSETS, REPLICATIONCONTROLLERS)}

    # -- event handlers: only enqueue the budgets concerned -----------------------------------------

    def _pod_changed(self, pod: Obj) -> None:
        for pdb in self.pdb_informer.store.by_index("namespace", meta(pod).get("namespace", "")):
            if disruption.selects(pdb, meta(pod).get("labels")):
                self.enqueue(pdb)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self._pod_changed(new)
        if meta(old).get("labels") != meta(new).get("labels"):
            self._pod_changed(old)

    def _scale_changed(self, old: Obj, new: Obj) -> None:
        """A controller's scale changed: every budget of its namespace may expect a different number of pods."""
        if (old.get("spec") or {}).get("replicas") == (new.get("spec") or {}).get("replicas"):
            return
        for pdb in self.pdb_informer.store.by_index("namespace", meta(new).get("namespace", "")):
            self.enqueue(pdb)

    # -- reconcile ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        pdb = self.pdb_informer.store.get(key)
        if pdb is None or meta(pdb).get("deletionTimestamp"):
            return
        ns = meta(pdb)["namespace"]
        pods = [p for p in self.pod_informer.store.by_index("namespace", ns)
                if disruption.selects(pdb, meta(p).get("labels"))]
        at = now()
        old = pdb.get("status") or {}
        status: dict[str, Any] = {k: v for k, v in old.items() if k != "disruptedPods"}
        try:
            expected, desired = self._expected_and_desired(pdb, pods)
        except ScaleError as e:
            self.recorder.warning(pdb, "CalculateExpectedPodCountFailed",
                                  f"Failed to calculate the number of expected pods: {e}")
            status.update(disruptionsAllowed=0, observedGeneration=meta(pdb).get("generation", 0))
            disruption.set_allowed_condition(pdb, status, disruption.SYNC_FAILED, str(e), format_time(at))
            await self._write(pdb, {**status, **({"disruptedPods": old["disruptedPods"]}
                                                 if old.get("disruptedPods") else {})})
            return
        disrupted, recheck = self._still_disrupted(pdb, at)
        healthy = sum(1 for p in pods if is_pod_ready(p) and not meta(p).get("deletionTimestamp")
                      and meta(p)["name"] not in disrupted)
        allowed = max(0, healthy - desired) if expected > 0 else 0
        status.update(observedGeneration=meta(pdb).get("generation", 0), disruptionsAllowed=allowed,
                      currentHealthy=healthy, desiredHealthy=desired, expectedPods=expected)
        if disrupted:
            status["disruptedPods"] = disrupted
        disruption.set_allowed_condition(pdb, status, "", "", format_time(at))
        await self._write(pdb, status)
        if recheck is not None:
            self.queue.add_after(key, max(0.0, (recheck - at).total_seconds()) + 0.1)

    async def _write(self, pdb: Obj, status: dict[str, Any]) -> None:
        if status != (pdb.get("status") or {}):
            await write_status(self.client, PODDISRUPTIONBUDGETS, pdb, status)

    def _still_disrupted(self, pdb: Obj, at: datetime) -> tuple[dict[str, str], datetime | None]:
        """The evicted pods that still count as disrupted, and when the first of them expires."""
        ns = meta(pdb)["namespace"]
        kept: dict[str, str] = {}
        recheck: datetime | None = None
        for name, stamp in ((pdb.get("status") or {}).get("disruptedPods") or {}).items():
            pod = self.pod_informer.store.get(f"{ns}/{name}")
            when = parse_time(stamp)
            if pod is None or meta(pod).get("deletionTimestamp") or when is None:
                continue  # the deletion went through (or the entry is garbage)
            expires = when + disruption.DELETION_TIMEOUT
            if expires < at:
                self.log.info("pod %s/%s was expected to be deleted after eviction but it was not", ns, name)
                continue
            kept[name] = stamp
            recheck = expires if recheck is None else min(recheck, expires)
        return kept, recheck

    def _expected_and_desired(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int]:
        spec = pdb.get("spec") or {}
        if "maxUnavailable" in spec:
            expected = self._expected_scale(pods)
            return expected, max(0, expected - int_or_percent(spec["maxUnavailable"], expected, True))
        min_available = spec.get("minAvailable")
        if isinstance(min_available, int):
            return len(pods), min_available
        if isinstance(min_available, str):
            expected = self._expected_scale(pods)
            return expected, int_or_percent(min_available, expected, True)
        return len(pods), 0

    def _expected_scale(self, pods: list[Obj]) -> int:
        """The sum of spec.replicas of the controllers owning the pods (a Deployment for its ReplicaSets' pods)."""
        scales: dict[str, int] = {}
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                raise ScaleError(f'found no controller ref for pod "{meta(pod)["name"]}"')
            if ref.get("uid") in scales:
                continue
            owner = self._scaled_owner(ref, meta(pod)["namespace"])
            if owner is None:
                raise ScaleError(f'found no controllers for pod "{meta(pod)["name"]}"')
            scales[meta(owner)["uid"]] = int((owner.get("spec") or {}).get("replicas", 1))
        return sum(scales.values())

    def _scaled_owner(self, ref: dict[str, Any], namespace: str) -> Obj | None:
        informer = self.owner_informers.get(ref.get("kind", ""))
        owner = informer.store.get(f"{namespace}/{ref.get('name')}") if informer is not None else None
        if owner is None or meta(owner).get("uid") != ref.get("uid"):
            return None
        if ref.get("kind") == "ReplicaSet":
            parent = controller_ref(owner)
            if parent is not None and parent.get("kind") == "Deployment":
                return self._scaled_owner(parent, namespace)
        return owner
