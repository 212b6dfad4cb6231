"""CronJob controller: create a Job from the template at each scheduled time (Kubernetes' cronjob_controllerv2).

sync(cronjob): reconcile status.active with the Jobs it owns (finished ones leave it; a Complete one sets
lastSuccessfulTime), trim finished Jobs to the history limits, then, unless suspended, find the most recent
scheduled time since the last one (`due`: after downtime only that one is started, past startingDeadlineSeconds
none), apply the concurrency policy, create the Job `<cronjob>-<minutes since epoch>` and look again at the next
scheduled time. The clock is a class attribute so that tests drive time.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pklib.api import cron
from pklib.api.timefmt import format_time
from pklib.api.wellknown import CRONJOB_SCHEDULED_TIMESTAMP
from pklib.controller import Clock, Controller, ControllerContext
from pklib.errors import ApiError, is_already_exists, is_not_found
from pklib.informer import Obj
from pklib.objects import key_of
from pklib.resources import CRONJOBS, JOBS

from .jobplan import condition, is_job_finished
from .util import controller_ref, meta, owner_reference, parse_time, write_status

NEXT_SCHEDULE_SLACK = 0.1  # look again a little after the scheduled time, as Kubernetes does


@dataclass(frozen=True)
class Due:
    """What the schedule says at `now`: the time to start a Job for (None: none is due), how many runs were
    missed since the last one, whether that run is past its starting deadline, and when to look again."""
    scheduled: datetime | None
    missed: int
    too_late: bool
    next_check: float | None


def due(cronjob: Obj, schedule: cron.Schedule, at: datetime) -> Due:
    spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
    earliest = parse_time(status.get("lastScheduleTime")) or parse_time(meta(cronjob).get("creationTimestamp")) or at
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None:
        # Runs older than the deadline could not start anyway: do not even count them.
        earliest = max(earliest, at - timedelta(seconds=int(deadline)))
    scheduled, missed = cron.missed_runs(schedule, earliest, at)
    nxt = schedule.next_after(at)
    next_check = None if nxt is None else (nxt - at).total_seconds() + NEXT_SCHEDULE_SLACK
    too_late = scheduled is not None and deadline is not None and scheduled + timedelta(seconds=int(deadline)) < at
    return Due(scheduled, missed, too_late, next_check)


def job_name(cronjob: Obj, scheduled: datetime) -> str:
    """`<cronjob>-<minutes since the epoch>`: one name per scheduled time, so a run is never started twice."""
    return f"{meta(cronjob)['name']}-{int(scheduled.timestamp()) // 60}"


def job_from_template(cronjob: Obj, scheduled: datetime, tz: Any, name: str | None = None) -> Obj:
    """The Job a CronJob starts for `scheduled` (also what `create job --from=cronjob/x` sends, with its name)."""
    template = copy.deepcopy((cronjob.get("spec") or {}).get("jobTemplate") or {})
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    local = scheduled.astimezone(tz).isoformat()
    annotations[CRONJOB_SCHEDULED_TIMESTAMP] = local[:-6] + "Z" if local.endswith("+00:00") else local
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name or job_name(cronjob, scheduled), "namespace": meta(cronjob)["namespace"],
                         "labels": dict(tmeta.get("labels") or {}), "annotations": annotations,
                         "ownerReferences": [owner_reference(cronjob)]},
            "spec": template.get("spec") or {}}


def job_reference(job: Obj) -> Obj:
    m = meta(job)
    return {"kind": "Job", "namespace": m["namespace"], "name": m["name"], "uid": m.get("uid", ""),
            "apiVersion": "batch/v1", "resourceVersion": m.get("resourceVersion", "")}


def _age_order(job: Obj) -> tuple[float, float]:
    """Oldest first: by start time, then by the run it was scheduled for (start times have whole seconds)."""
    t = parse_time((job.get("status") or {}).get("startTime")) or parse_time(meta(job).get("creationTimestamp"))
    scheduled = parse_time((meta(job).get("annotations") or {}).get(CRONJOB_SCHEDULED_TIMESTAMP))
    return (t.timestamp() if t else 0.0, scheduled.timestamp() if scheduled else 0.0)


class CronJobController(Controller):
    name = "cronjob"
    clock: ClassVar[Clock] = Clock()

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.cronjobs = self.watch(CRONJOBS, self.enqueue, lambda old, new: self.enqueue(new))
        self.jobs = self.watch(JOBS, self._job_changed, lambda old, new: self._job_changed(new), self._job_changed)

    def _job_changed(self, job: Obj) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{meta(job)['namespace']}/{ref['name']}")

    def _owned_jobs(self, cronjob: Obj) -> list[Obj]:
        uid = meta(cronjob).get("uid")
        return [j for j in self.jobs.store.by_index("namespace", meta(cronjob)["namespace"])
                if (controller_ref(j) or {}).get("uid") == uid]

    async def sync(self, key: str) -> None:
        cronjob = self.cronjobs.store.get(key)
        if cronjob is None or meta(cronjob).get("deletionTimestamp"):
            return
        at = self.clock.now()
        spec = cronjob.get("spec") or {}
        status = copy.deepcopy(cronjob.get("status") or {})
        jobs = self._owned_jobs(cronjob)
        self._reconcile_active(cronjob, status, jobs)
        await self._trim_history(cronjob, jobs)
        try:
            await self._maybe_start(cronjob, spec, status, at, key, {meta(j)["name"] for j in jobs})
        finally:
            if status != (cronjob.get("status") or {}):
                await write_status(self.client, CRONJOBS, cronjob, status)

    def _reconcile_active(self, cronjob: Obj, status: Obj, jobs: list[Obj]) -> None:
        by_uid = {meta(j).get("uid"): j for j in jobs}
        active: list[Obj] = []
        for ref in status.get("active") or []:
            job = by_uid.get(ref.get("uid"))
            if job is None:
                continue  # deleted; a Job still being created is in the cache by the next sync
            if is_job_finished(job):
                done = "Complete" if condition(job, "Complete") else "Failed"
                self.recorder.normal(cronjob, "SawCompletedJob",
                                     f"Saw completed job: {meta(job)['name']}, condition: {done}")
                continue
            active.append(ref)
        listed = {r.get("uid") for r in active}
        for job in jobs:
            if not is_job_finished(job) and meta(job).get("uid") not in listed:
                active.append(job_reference(job))  # ours, but not listed (e.g. created just before a restart)
        if active:
            status["active"] = active
        else:
            status.pop("active", None)
        successes = [parse_time((j.get("status") or {}).get("completionTime") or c.get("lastTransitionTime"))
                     for j in jobs if (c := condition(j, "Complete")) is not None and c.get("status") == "True"]
        known = [t for t in successes if t is not None]
        last = parse_time(status.get("lastSuccessfulTime"))
        if known and (last is None or max(known) > last):
            status["lastSuccessfulTime"] = format_time(max(known))

    async def _trim_history(self, cronjob: Obj, jobs: list[Obj]) -> None:
        limits = cronjob.get("spec") or {}
        for type_, limit in (("Complete", limits.get("successfulJobsHistoryLimit")),
                             ("Failed", limits.get("failedJobsHistoryLimit"))):
            if limit is None:
                continue
            done = sorted((j for j in jobs if (c := condition(j, type_)) is not None and c.get("status") == "True"
                           and not meta(j).get("deletionTimestamp")), key=_age_order)
            for job in done[:max(0, len(done) - int(limit))]:
                await self._delete_job(job)

    async def _delete_job(self, job: Obj) -> bool:
        try:
            await self.client.delete(JOBS, meta(job)["name"], meta(job)["namespace"], propagation_policy="Background")
        except ApiError as e:
            if not is_not_found(e):
                raise
            return False
        return True

    async def _maybe_start(self, cronjob: Obj, spec: Obj, status: Obj, at: datetime, key: str,
                           job_names: set[str]) -> None:
        if spec.get("suspend"):
            return
        try:
            schedule = cron.Schedule.parse(spec.get("schedule") or "", spec.get("timeZone"))
        except cron.CronError as e:
            self.recorder.warning(cronjob, "InvalidSchedule", f"invalid schedule: {spec.get('schedule')} : {e}")
            return  # a stored schedule only goes bad with a time zone the machine lost; no use retrying
        d = due(cronjob, schedule, at)
        if d.next_check is not None:
            self.queue.add_after(key, d.next_check)
        if d.missed > cron.TOO_MANY_MISSED:
            self.recorder.warning(cronjob, "TooManyMissedTimes", "too many missed start times. Set or decrease "
                                  ".spec.startingDeadlineSeconds or check clock skew")
        if d.scheduled is None:
            return
        if job_name(cronjob, d.scheduled) in job_names:
            # Started by an earlier sync whose status write did not land.
            status["lastScheduleTime"] = format_time(d.scheduled)
            return
        if d.too_late:
            self.recorder.warning(cronjob, "MissSchedule",
                                  f"Missed scheduled time to start a job: {d.scheduled.isoformat()}")
            return
        active = status.get("active") or []
        policy = spec.get("concurrencyPolicy", "Allow")
        if active and policy == "Forbid":
            self.log.info("%s: not starting a job: the previous one still runs (concurrencyPolicy Forbid)", key)
            return
        if active and policy == "Replace":
            for ref in active:
                job = self.jobs.store.get(f"{ref.get('namespace')}/{ref.get('name')}")
                if job is not None and await self._delete_job(job):
                    self.recorder.normal(cronjob, "SuccessfulDelete", f"Deleted job {ref.get('name')}")
            status.pop("active", None)
        body = job_from_template(cronjob, d.scheduled, schedule.tz)
        try:
            job = await self.client.create(JOBS, body)
            self.recorder.normal(cronjob, "SuccessfulCreate", f"Created job {meta(job)['name']}")
        except ApiError as e:
            if not is_already_exists(e):
                self.recorder.warning(cronjob, "FailedCreate", f"Error creating job: {e.message}")
                raise
            # Made by an earlier sync whose status write did not land: ours if it names us as its controller.
            try:
                job = await self.client.get(JOBS, body["metadata"]["name"], meta(cronjob)["namespace"])
            except ApiError:
                return
            if (controller_ref(job) or {}).get("uid") != meta(cronjob).get("uid"):
                return
        refs = status.setdefault("active", [])
        if not any(r.get("uid") == meta(job).get("uid") for r in refs):
            refs.append(job_reference(job))
        status["lastScheduleTime"] = format_time(d.scheduled)
        self.log.debug("%s: started %s", key, key_of(job))
