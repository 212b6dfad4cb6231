"""Job controller: run a Job's pods to completion (Kubernetes' pkg/controller/job).

sync(job): claim the pods its selector matches (finished ones too: they are what it counts), compute the plan
(controllers/jobplan.py: status, conditions, pods to create or delete, when to look again), then carry it out.
Creates go out in slow-start batches and are counted in expectations, as the ReplicaSet controller's are;
finished pods are kept, so their logs stay readable until the Job is deleted.
"""
from __future__ import annotations

from typing import ClassVar

from pklib.controller import Clock, ControllerContext
from pklib.errors import ApiError
from pklib.informer import Obj, Store
from pklib.objects import key_of
from pklib.resources import JOBS, PODS

from . import jobplan
from .claims import claim
from .util import (PodOwnerController, controller_ref, delete_pods, meta, pod_from_template, selector_of,
                   slow_start_batch, write_status)


class JobController(PodOwnerController):
    name = "job"
    owner_kind = "Job"
    clock: ClassVar[Clock] = Clock()

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.job_informer = self.watch(JOBS, self.enqueue, self._job_updated, self._job_deleted)
        self.pod_informer = self.watch(PODS, self._pod_added, self._pod_updated, self._pod_deleted)

    def owner_store(self) -> Store:
        return self.job_informer.store

    def _job_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _job_deleted(self, job: Obj) -> None:
        self.expectations.forget(key_of(job))

    def _pod_added(self, pod: Obj) -> None:
        if not self._owned_pod_added(pod) and controller_ref(pod) is None:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if not self._owned_pod_updated(new) and controller_ref(new) is None:
            self._enqueue_matching(new)

    def _enqueue_matching(self, pod: Obj) -> None:
        """An orphan pod a Job's selector matches: that Job may adopt it."""
        labels = meta(pod).get("labels")
        for job in self.job_informer.store.by_index("namespace", meta(pod)["namespace"]):
            sel = selector_of(job)
            if sel is not None and sel.matches(labels):
                self.enqueue(job)

    # -- reconcile ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        job = self._owner_to_sync(key)
        if job is None or jobplan.is_job_finished(job) or meta(job).get("deletionTimestamp"):
            return
        ns = meta(job)["namespace"]
        pods = await claim(self.client, PODS, job, self.pod_informer.store.by_index("namespace", ns),
                           selector_of(job))
        plan = jobplan.plan(job, pods, self.clock.now())
        error: ApiError | None = None
        if self.expectations.satisfied(key):
            try:
                await self._delete(job, key, plan.delete)
                await self._create(job, key, plan.create, plan.index_failures)
            except ApiError as e:
                error = e
        for type_, reason, message in plan.events:
            self.recorder.record(job, type_, reason, message)
        if plan.status != (job.get("status") or {}):
            await write_status(self.client, JOBS, job, plan.status)
        if plan.requeue_after is not None:
            self.queue.add_after(key, max(plan.requeue_after, 0.0) + 0.05)
        if error is not None:
            raise error

    async def _create(self, job: Obj, key: str, indexes: list[int | None], failures: dict[int, int]) -> None:
        if not indexes:
            return
        self.expectations.expect_creations(key, len(indexes))
        created, error = await slow_start_batch(len(indexes), lambda i: self._create_pod(job, indexes[i], failures))
        for _ in range(len(indexes) - created):
            self.expectations.creation_observed(key)
        if error is not None:
            self.recorder.warning(job, "FailedCreate", f"Error creating: {error.message}")
            raise error

    async def _create_pod(self, job: Obj, index: int | None, failures: dict[int, int]) -> Obj:
        name = meta(job)["name"]
        spec = job.get("spec") or {}
        pod = pod_from_template(spec.get("template") or {}, job, generate_name=f"{name}-")
        if index is not None:
            per_index = spec.get("backoffLimitPerIndex") is not None
            jobplan.pod_for_index(pod, name, index, failures.get(index, 0) if per_index else None)
        created = await self.client.create(PODS, pod)
        self.recorder.normal(job, "SuccessfulCreate", f"Created pod: {meta(created)['name']}")
        return created

    async def _delete(self, job: Obj, key: str, victims: list[Obj]) -> None:
        if not victims:
            return
        deleted, first_error = await delete_pods(self.client, self.expectations, key, victims)
        for pod in deleted:
            self.recorder.normal(job, "SuccessfulDelete", f"Deleted pod: {meta(pod)['name']}")
        if first_error is not None:
            self.recorder.warning(job, "FailedDelete", f"Error deleting: {first_error.message}")
            raise first_error
