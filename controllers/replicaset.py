"""ReplicaSet controller: keep `spec.replicas` active pods matching the selector.

ReplicationControllers (core/v1, equality selectors: `selector_of` reads their label map) are reconciled by the
same machinery, as `ReplicationControllerController`.

sync(rs): claim pods (adopt orphans, release non-matching), then, if the
expectations from the previous round were met, create or delete the difference,
then write status. Creates go out in slow-start batches (1, 2, 4, ...) so that a
template the API rejects costs one failed call, not hundreds.
"""
from __future__ import annotations

from typing import Any

from pklib.controller import ControllerContext
from pklib.errors import ApiError
from pklib.informer import Obj, Store
from pklib.objects import key_of
from pklib.resources import PODS, REPLICASETS, REPLICATIONCONTROLLERS, Resource

from .claims import claim
from .util import (PodOwnerController, available_in, controller_ref, create_owned, delete_pods, is_pod_active,
                   is_pod_ready, meta, parse_time, pod_from_template, random_suffix, selecting, selector_of,
                   slow_start_batch, write_status)


BURST_REPLICAS = 500  # at most this many creates/deletes per sync, as in Kubernetes
SLOW_START_INITIAL_BATCH = 1


class ReplicaSetController(PodOwnerController):
    name = "replicaset"
    owner_kind = "ReplicaSet"
    resource: Resource = REPLICASETS

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.rs_informer = self.watch(self.resource, self.enqueue, self._rs_updated, self._rs_deleted)
        self.pod_informer = self.watch(PODS, self._pod_added, self._pod_updated, self._pod_deleted)

    # -- event handlers: only bookkeeping and enqueueing ----------------------------------------

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _rs_deleted(self, rs: Obj) -> None:
        self.expectations.forget(key_of(rs))
        self.enqueue(rs)

    def owner_store(self) -> Store:
        return self.rs_informer.store

    def _enqueue_matching(self, pod: Obj) -> None:
        for rs in selecting(self.rs_informer.store, pod):
            self.enqueue(rs)

    def _pod_added(self, pod: Obj) -> None:
        if not self._owned_pod_added(pod) and controller_ref(pod) is None:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._owner_key(new)
        if key is not None and meta(new).get("deletionTimestamp"):
            self.expectations.deletion_observed(key, key_of(new))
        old_key = self._owner_key(old)
        if old_key is not None and old_key != key:
            self.queue.add(old_key)
        if key is not None:
            self.queue.add(key)
            rs = self.rs_informer.store.get(key)
            mrs = int(((rs or {}).get("spec") or {}).get("minReadySeconds") or 0)
            if mrs and not is_pod_ready(old) and is_pod_ready(new):
                # Becomes available only later; look again then.
                self.queue.add_after(key, mrs + 1)
        elif controller_ref(new) is None:
            self._enqueue_matching(new)

    # -- reconcile ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        rs = self._owner_to_sync(key)
        if rs is None:
            return
        ns = meta(rs)["namespace"]
        selector = selector_of(rs)
        candidates = [p for p in self.pod_informer.store.by_index("namespace", ns) if is_pod_active(p)]
        pods = await claim(self.client, PODS, rs, candidates, selector)
        error: ApiError | None = None
        if self.expectations.satisfied(key) and not meta(rs).get("deletionTimestamp") and selector is not None:
            try:
                await self._manage(rs, key, pods)
            except ApiError as e:
                error = e
        await self._update_status(rs, pods, error)
        if error is not None:
            raise error

    async def _manage(self, rs: Obj, key: str, pods: list[Obj]) -> None:
        want = int((rs.get("spec") or {}).get("replicas", 1))
        diff = len(pods) - want
        if diff < 0:
            await self._create(rs, key, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            victims = sorted(pods, key=deletion_rank)[:min(diff, BURST_REPLICAS)]
            await self._delete(rs, key, victims)

    async def _create(self, rs: Obj, key: str, count: int) -> None:
        self.expectations.expect_creations(key, count)
        template = (rs.get("spec") or {}).get("template") or {}
        created, first_error = await slow_start_batch(count, lambda _: self._create_pod(rs, template),
                                                      SLOW_START_INITIAL_BATCH)
        # Failed and skipped creations will never be observed.
        for _ in range(count - created):
            self.expectations.creation_observed(key)
        if first_error is not None:
            self.recorder.warning(rs, "FailedCreate", f"Error creating: {first_error.message}")
            raise first_error
        self.recorder.normal(rs, "SuccessfulCreate", f"Created {count} pod(s)")

    async def _create_pod(self, rs: Obj, template: Obj) -> Obj:
        name = meta(rs)["name"]
        pod = pod_from_template(template, rs, name=f"{name}-{random_suffix()}",
                                generate_name=f"{name}-")
        return await create_owned(self.client, PODS, pod)

    async def _delete(self, rs: Obj, key: str, victims: list[Obj]) -> None:
        _, first_error = await delete_pods(self.client, self.expectations, key, victims)
        if first_error is not None:
            self.recorder.warning(rs, "FailedDelete", f"Error deleting: {first_error.message}")
            raise first_error
        self.recorder.normal(rs, "SuccessfulDelete", f"Deleted {len(victims)} pod(s): "
                             + ", ".join(meta(p)["name"] for p in victims[:5]))

    async def _update_status(self, rs: Obj, pods: list[Obj], error: ApiError | None) -> None:
        status = compute_status(rs, pods)
        old = rs.get("status") or {}
        conditions = [c for c in old.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        if error is not None and error.code in (403, 422):
            conditions.append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                               "message": error.message})
        if conditions:
            status["conditions"] = conditions
        mrs = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if mrs and status["readyReplicas"] > status["availableReplicas"]:
            waits = [w for w in (available_in(p, mrs) for p in pods) if w]
            if waits:
                self.queue.add_after(key_of(rs), min(waits) + 0.1)
        if status == {k: v for k, v in old.items() if k in status or k == "conditions"}:
            return
        await write_status(self.client, self.resource, rs, status)


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller"
    owner_kind = "ReplicationController"
    resource = REPLICATIONCONTROLLERS


def compute_status(rs: Obj, pods: list[Obj]) -> dict[str, Any]:
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    mrs = int(spec.get("minReadySeconds") or 0)
    fully = sum(1 for p in pods if template_labels.items() <= (meta(p).get("labels") or {}).items())
    ready = [p for p in pods if is_pod_ready(p)]
    available = sum(1 for p in ready if available_in(p, mrs) == 0)
    return {"replicas": len(pods), "fullyLabeledReplicas": fully, "readyReplicas": len(ready),
            "availableReplicas": available, "observedGeneration": meta(rs).get("generation", 0)}


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: Obj) -> tuple[Any, ...]:
    """Sort key: pods to delete first come first (Kubernetes' ActivePods ordering)."""
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    ready = is_pod_ready(pod)
    cond: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    ready_since = parse_time(cond.get("lastTransitionTime")) if ready else None
    created = parse_time(meta(pod).get("creationTimestamp"))
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    return (
        bool(spec.get("nodeName")),                    # unscheduled first
        _PHASE_RANK.get(status.get("phase", "Pending"), 0),  # pending, unknown, then running
        ready,                                          # not ready first
        -(ready_since.timestamp() if ready_since else 0),  # ready for less time first
        -restarts,                                      # more restarts first
        -(created.timestamp() if created else 0),       # newest first
    )
