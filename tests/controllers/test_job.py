"""The Job, TTL-after-finished and CronJob controllers, in-process against the real apiserver. No node: the tests
finish pods by writing their status as a kubelet would, and move the controllers' clocks instead of waiting."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from controllers.cronjob import CronJobController
from controllers.job import JobController
from controllers.ttlafterfinished import TTLAfterFinishedController
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import CRONJOBS, JOBS, PODS
from pklib.api.disruption import PREEMPTION_BY_SCHEDULER, disruption_status_patch
from tests.controllers.helpers import list_pods, set_pod_ready
from tests.support.batch import Body, FakeClock, condition, cronjob_body, finish_pod, job_body
from tests.util import unique, wait_for


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    for cls in (JobController, CronJobController, TTLAfterFinishedController):
        monkeypatch.setattr(cls, "clock", c)
    return c


async def job_pods(client: Client, ns: str, name: str, live: bool = True) -> list[Body]:
    pods = await list_pods(client, ns, f"batch.kubernetes.io/job-name={name}")
    return [p for p in pods if not live or (not p["metadata"].get("deletionTimestamp")
                                            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))]


async def poke(client: Client, res: Any, ns: str, name: str) -> None:
    """A metadata change: the controller syncs the object again (what a resync would do)."""
    await client.patch(res, name, {"metadata": {"annotations": {"pkt/poke": unique("x")}}}, ns)


async def wait_status(client: Client, ns: str, name: str, pred: Any, message: str, res: Any = JOBS,
                      timeout: float = 15) -> Body:
    async def check() -> Body | None:
        obj: Body = await client.get(res, name, ns)
        return obj if pred(obj) else None
    result: Body = await wait_for(check, timeout, message=message)
    return result


async def test_parallel_job_runs_its_completions_and_keeps_pods(client: Client, namespace: str,
                                                                start_manager: Any, clock: FakeClock) -> None:
    await start_manager("job")
    await client.create(JOBS, job_body("work", completions=3, parallelism=2), namespace)
    done: set[str] = set()
    while len(done) < 3:
        async def running() -> list[Body] | None:
            pods = [p for p in await job_pods(client, namespace, "work") if p["metadata"]["name"] not in done]
            return pods if len(pods) == min(2, 3 - len(done)) else None
        pods = await wait_for(running, message=f"{min(2, 3 - len(done))} active pods after {len(done)} done")
        await finish_pod(client, pods[0])
        done.add(pods[0]["metadata"]["name"])
    job = await wait_status(client, namespace, "work", lambda j: condition(j, "Complete"), "job Complete")
    status = job["status"]
    assert status["succeeded"] == 3 and "active" not in status and status["completionTime"]
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert condition(job, "Complete")["reason"] == "CompletionsReached"  # type: ignore[index]
    everything = await job_pods(client, namespace, "work", live=False)
    assert len(everything) == 3 and all(p["status"]["phase"] == "Succeeded" for p in everything)


async def test_failures_back_off_then_hit_the_backoff_limit(client: Client, namespace: str, start_manager: Any,
                                                             clock: FakeClock) -> None:
    await start_manager("job")
    await client.create(JOBS, job_body("flaky", backoffLimit=1), namespace)
    first = (await wait_for(lambda: job_pods(client, namespace, "flaky"), message="first pod"))[0]
    await finish_pod(client, first, exit_code=1, at=clock.now())
    await wait_status(client, namespace, "flaky", lambda j: j["status"].get("failed") == 1 and
                      not j["status"].get("active"), "failure counted")
    # The sync that counted the failure created nothing: the retry waits out the 10 s back-off.
    assert await job_pods(client, namespace, "flaky") == []
    clock.advance(11)
    await poke(client, JOBS, namespace, "flaky")
    second = (await wait_for(lambda: job_pods(client, namespace, "flaky"), message="retry after back-off"))[0]
    await finish_pod(client, second, exit_code=2, at=clock.now())
    job = await wait_status(client, namespace, "flaky", lambda j: condition(j, "Failed"), "job Failed")
    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert condition(job, "FailureTarget")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    assert job["status"]["failed"] == 2 and "completionTime" not in job["status"]


async def test_indexed_job_pods_carry_their_index(client: Client, namespace: str, start_manager: Any,
                                                  clock: FakeClock) -> None:
    await start_manager("job")
    await client.create(JOBS, job_body("idx", completions=3, parallelism=3, completionMode="Indexed"), namespace)
    pods = await wait_for(lambda: _n_pods(client, namespace, "idx", 3), message="3 indexed pods")
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods}
    assert set(by_index) == {"0", "1", "2"}
    one = by_index["1"]
    assert one["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"
    assert one["metadata"]["name"].startswith("idx-1-") and one["spec"]["hostname"] == "idx-1"
    assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} \
        in one["spec"]["containers"][0]["env"]
    await finish_pod(client, one)
    await wait_status(client, namespace, "idx", lambda j: j["status"].get("completedIndexes") == "1",
                      "index 1 completed")
    for i in ("0", "2"):
        await finish_pod(client, by_index[i])
    job = await wait_status(client, namespace, "idx", lambda j: condition(j, "Complete"), "job Complete")
    assert job["status"]["completedIndexes"] == "0-2"


async def _n_pods(client: Client, ns: str, name: str, n: int) -> list[Body] | None:
    pods = await job_pods(client, ns, name)
    return pods if len(pods) == n else None


async def _no_pods(client: Client, ns: str, name: str) -> bool:
    return not await job_pods(client, ns, name)


async def test_pod_failure_policy_ignores_and_fails(client: Client, namespace: str, start_manager: Any,
                                                    clock: FakeClock) -> None:
    await start_manager("job")
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In",
                                                              "values": [42]}},
                        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    await client.create(JOBS, job_body("pfp", backoffLimit=0, podFailurePolicy=policy), namespace)
    first = (await wait_for(lambda: job_pods(client, namespace, "pfp"), message="first pod"))[0]
    # A disruption (e.g. preemption) is ignored: not counted against backoffLimit 0, and replaced at once.
    await finish_pod(client, first, exit_code=137, conditions=[{"type": "DisruptionTarget", "status": "True"}])
    second = await wait_for(lambda: _other_pod(client, namespace, first), message="replacement pod")
    job = await client.get(JOBS, "pfp", namespace)
    assert not job["status"].get("failed") and not condition(job, "Failed")
    await finish_pod(client, second, exit_code=42)
    job = await wait_status(client, namespace, "pfp", lambda j: condition(j, "Failed"), "job Failed")
    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "PodFailurePolicy"
    assert failed["message"] == (f"Container main for pod {namespace}/{second['metadata']['name']} failed with exit "
                                 "code 42 matching FailJob rule at index 0")


async def _other_pod(client: Client, ns: str, first: Body) -> Body | None:
    pods = [p for p in await job_pods(client, ns, "pfp") if p["metadata"]["uid"] != first["metadata"]["uid"]]
    return pods[0] if pods else None


async def test_suspend_resume_and_active_deadline(client: Client, namespace: str, start_manager: Any,
                                                  clock: FakeClock) -> None:
    await start_manager("job")
    await client.create(JOBS, job_body("sus", suspend=True, activeDeadlineSeconds=30, parallelism=2,
                                       completions=4), namespace)
    job = await wait_status(client, namespace, "sus", lambda j: condition(j, "Suspended"), "Suspended condition")
    assert condition(job, "Suspended")["reason"] == "JobSuspended"  # type: ignore[index]
    assert await job_pods(client, namespace, "sus") == [] and "startTime" not in job["status"]
    await client.patch(JOBS, "sus", {"spec": {"suspend": False}}, namespace)
    await wait_for(lambda: _n_pods(client, namespace, "sus", 2), message="resumed: 2 pods")
    # the pods are created before the status that says so is written
    job = await wait_status(client, namespace, "sus", lambda j: condition(j, "Suspended")["status"] == "False",
                            "Suspended=False")
    assert condition(job, "Suspended")["reason"] == "JobResumed" and job["status"]["startTime"]  # type: ignore
    clock.advance(31)
    await poke(client, JOBS, namespace, "sus")
    job = await wait_status(client, namespace, "sus", lambda j: condition(j, "FailureTarget"), "deadline passed")
    assert condition(job, "FailureTarget")["reason"] == "DeadlineExceeded"  # type: ignore[index]
    await wait_for(lambda: _no_pods(client, namespace, "sus"), message="active pods deleted")
    # Without a kubelet the deleted pods stay terminating; once they are gone the Job is Failed.
    for p in await list_pods(client, namespace, "batch.kubernetes.io/job-name=sus"):
        try:
            await client.delete(PODS, p["metadata"]["name"], namespace, grace_period_seconds=0)
        except ApiError:
            pass
    job = await wait_status(client, namespace, "sus", lambda j: condition(j, "Failed"), "job Failed")
    assert condition(job, "Failed")["message"] == "Job was active longer than specified deadline"  # type: ignore


async def test_ttl_deletes_a_finished_job_and_its_pods(client: Client, namespace: str, start_manager: Any,
                                                       clock: FakeClock) -> None:
    await start_manager("job,ttl-after-finished,garbagecollector")
    await client.create(JOBS, job_body("short", ttlSecondsAfterFinished=60), namespace)
    pod = (await wait_for(lambda: job_pods(client, namespace, "short"), message="pod"))[0]
    await finish_pod(client, pod)
    await wait_status(client, namespace, "short", lambda j: condition(j, "Complete"), "job Complete")
    assert len(await job_pods(client, namespace, "short", live=False)) == 1
    clock.advance(61)
    await poke(client, JOBS, namespace, "short")

    async def gone() -> bool:
        try:
            await client.get(JOBS, "short", namespace)
            return False
        except ApiError as e:
            return e.code == 404 and not await job_pods(client, namespace, "short", live=False)
    await wait_for(gone, 15, message="job and pod deleted after the TTL")


async def test_cronjob_starts_the_most_recent_missed_run_and_honours_concurrency(
        client: Client, namespace: str, start_manager: Any, clock: FakeClock) -> None:
    await start_manager("cronjob")
    await client.create(CRONJOBS, cronjob_body("tick", "*/5 * * * *", concurrencyPolicy="Forbid"), namespace)
    # An hour of downtime: twelve runs missed, only the latest starts.
    clock.advance(3600)
    await poke(client, CRONJOBS, namespace, "tick")
    cj = await wait_status(client, namespace, "tick", lambda c: c["status"].get("active"), "a job started",
                           res=CRONJOBS)
    jobs = (await client.list(JOBS, namespace))["items"]
    assert len(jobs) == 1 and cj["status"]["active"][0]["name"] == jobs[0]["metadata"]["name"]
    scheduled = cj["status"]["lastScheduleTime"]
    assert jobs[0]["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == scheduled
    assert jobs[0]["metadata"]["name"] == f"tick-{_minutes(scheduled)}"
    assert jobs[0]["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    # Forbid: the next run does not start while that job is active.
    clock.advance(300)
    await poke(client, CRONJOBS, namespace, "tick")
    await wait_status(client, namespace, "tick", lambda c: c["metadata"]["annotations"].get("pkt/poke") and True,
                      "poked", res=CRONJOBS)
    # Replace: the running job is replaced by the new run's.
    await client.patch(CRONJOBS, "tick", {"spec": {"concurrencyPolicy": "Replace"}}, namespace)
    cj = await wait_status(client, namespace, "tick", lambda c: c["status"]["lastScheduleTime"] != scheduled,
                           "the next run started", res=CRONJOBS)
    async def replaced() -> bool:
        names = {j["metadata"]["name"] for j in (await client.list(JOBS, namespace))["items"]
                 if not j["metadata"].get("deletionTimestamp")}
        return names == {cj["status"]["active"][0]["name"]}
    await wait_for(replaced, message="only the new run's job left")


def _minutes(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()) // 60


async def test_cronjob_history_limits_and_last_successful_time(client: Client, namespace: str, start_manager: Any,
                                                               clock: FakeClock) -> None:
    await start_manager("cronjob")
    await client.create(CRONJOBS, cronjob_body("hist", "* * * * *", successfulJobsHistoryLimit=1), namespace)
    made: list[str] = []
    for _ in range(3):
        clock.advance(60)
        await poke(client, CRONJOBS, namespace, "hist")
        cj = await wait_status(client, namespace, "hist",
                               lambda c: (c["status"].get("active") or [{}])[0].get("name") not in made + [None],
                               "a new job", res=CRONJOBS)
        name = cj["status"]["active"][0]["name"]
        made.append(name)
        job = await client.get(JOBS, name, namespace)
        job["status"] = {"startTime": job["metadata"]["creationTimestamp"],
                         "completionTime": job["metadata"]["creationTimestamp"], "succeeded": 1,
                         "conditions": [{"type": "Complete", "status": "True",
                                         "lastTransitionTime": job["metadata"]["creationTimestamp"]}]}
        await client.update_status(JOBS, job)
        await wait_status(client, namespace, "hist", lambda c: not c["status"].get("active"), "job seen finished",
                          res=CRONJOBS)

    async def trimmed() -> bool:
        left = [j["metadata"]["name"] for j in (await client.list(JOBS, namespace))["items"]
                if not j["metadata"].get("deletionTimestamp")]
        return left == made[-1:]
    await wait_for(trimmed, message="only the last successful job kept")
    cj = await client.get(CRONJOBS, "hist", namespace)
    assert cj["status"]["lastSuccessfulTime"]


async def test_disruption_condition_joins_the_kubelets_conditions(client: Client, namespace: str) -> None:
    """What the scheduler (preemption) and the taint manager write before deleting a pod: a strategic merge of
    pods/status that adds DisruptionTarget beside the kubelet's conditions, for podFailurePolicy to read."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "victim"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    await set_pod_ready(client, await client.create(PODS, body, namespace))
    await client.patch(PODS, "victim", disruption_status_patch(PREEMPTION_BY_SCHEDULER, "default-scheduler: x"),
                       namespace, patch_type="strategic", subresource="status")
    pod = await client.get(PODS, "victim", namespace)
    target = condition(pod, "DisruptionTarget")
    assert target is not None and (target["status"], target["reason"]) == ("True", "PreemptionByScheduler")
    assert condition(pod, "Ready")["status"] == "True"  # type: ignore[index]


async def test_deleted_job_keeps_or_removes_its_pods_as_asked(client: Client, namespace: str, start_manager: Any,
                                                               clock: FakeClock) -> None:
    await start_manager("job,garbagecollector")
    for name in ("kept", "removed"):
        await client.create(JOBS, job_body(name), namespace)
        await wait_for(lambda: _n_pods(client, namespace, name, 1), message=f"{name}'s pod")
    await client.delete(JOBS, "kept", namespace, propagation_policy="Orphan")
    await client.delete(JOBS, "removed", namespace)  # Background, pkube's default for every kind

    async def settled() -> bool:
        jobs = {j["metadata"]["name"] for j in (await client.list(JOBS, namespace))["items"]}
        pods = {p["metadata"]["labels"]["job-name"]: p for p in await list_pods(client, namespace)
                if not p["metadata"].get("deletionTimestamp")}
        return not jobs and set(pods) == {"kept"} and not pods["kept"]["metadata"].get("ownerReferences")
    await wait_for(settled, 15, message="the orphaned pod kept without its owner, the other pod deleted")


async def test_backoff_limit_per_index(client: Client, namespace: str, start_manager: Any, clock: FakeClock) -> None:
    await start_manager("job")
    await client.create(JOBS, job_body("per", completions=2, parallelism=2, completionMode="Indexed",
                                       backoffLimitPerIndex=0), namespace)
    pods = await wait_for(lambda: _n_pods(client, namespace, "per", 2), message="2 indexed pods")
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods}
    assert by_index["0"]["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] == "0"
    await finish_pod(client, by_index["0"], exit_code=1)
    await wait_status(client, namespace, "per", lambda j: j["status"].get("failedIndexes") == "0", "index 0 failed")
    await finish_pod(client, by_index["1"])
    job = await wait_status(client, namespace, "per", lambda j: condition(j, "Failed"), "job Failed")
    assert condition(job, "Failed")["reason"] == "FailedIndexes"  # type: ignore[index]
    assert job["status"]["completedIndexes"] == "1" and len(await job_pods(client, namespace, "per", False)) == 2
