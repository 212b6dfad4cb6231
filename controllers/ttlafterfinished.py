"""TTL-after-finished controller: delete a finished Job `ttlSecondsAfterFinished` seconds after it finished
(Kubernetes' pkg/controller/ttlafterfinished). The Job goes in the foreground, so the garbage collector removes
its pods first."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from pklib.controller import Clock, Controller, ControllerContext
from pklib.errors import ApiError, is_conflict, is_not_found
from pklib.informer import Obj
from pklib.resources import JOBS

from .jobplan import condition, is_job_finished
from .util import meta, parse_time


def finished_at(job: Obj) -> datetime | None:
    """When a finished Job finished: its Complete or Failed condition's transition."""
    for type_ in ("Complete", "Failed"):
        c = condition(job, type_)
        if c is not None and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime"))
    return None


def expires_in(job: Obj, at: datetime) -> float | None:
    """Seconds until a finished Job with a TTL is due for deletion (<= 0: now); None if it never is."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or meta(job).get("deletionTimestamp") or not is_job_finished(job):
        return None
    done = finished_at(job)
    if done is None:
        return None
    return (done + timedelta(seconds=int(ttl)) - at).total_seconds()


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"
    clock: ClassVar[Clock] = Clock()

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.jobs = self.watch(JOBS, self._changed, lambda old, new: self._changed(new))

    def _changed(self, job: Obj) -> None:
        if expires_in(job, self.clock.now()) is not None:
            self.enqueue(job)

    def _due(self, key: str, job: Obj) -> bool:
        """Whether the Job's time is up; if it has a TTL still running, look again when it ends."""
        left = expires_in(job, self.clock.now())
        if left is not None and left > 0:
            self.queue.add_after(key, left + 0.05)
        return left is not None and left <= 0

    async def sync(self, key: str) -> None:
        job = self.jobs.store.get(key)
        if job is None or not self._due(key, job):
            return
        # The cache may be behind a user who just changed the TTL: decide on the stored Job.
        try:
            fresh = await self.client.get(JOBS, meta(job)["name"], meta(job)["namespace"])
        except ApiError as e:
            if is_not_found(e):
                return
            raise
        if not self._due(key, fresh):
            return
        try:
            await self.client.delete(JOBS, meta(fresh)["name"], meta(fresh)["namespace"],
                                     propagation_policy="Foreground",
                                     preconditions={"uid": meta(fresh)["uid"],
                                                    "resourceVersion": meta(fresh)["resourceVersion"]})
        except ApiError as e:
            if is_not_found(e):
                return
            if is_conflict(e):
                self.queue.add(key)  # changed meanwhile: look again
                return
            raise
        self.log.info("deleted finished job %s (ttlSecondsAfterFinished)", key)
