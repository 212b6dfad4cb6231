"""Pure logic of Jobs and CronJobs: back-off, index sets, pod failure policy, the Job plan, cron schedules."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from controllers import jobplan
from controllers.cronjob import due, job_from_template, job_name
from controllers.ttlafterfinished import expires_in
from pklib.api import cron
from pklib.api.timefmt import format_time

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def pod(name: str, phase: str = "Running", exit_code: int | None = None, at: datetime = T0, index: int | None = None,
        conditions: list[dict[str, Any]] | None = None, container: str = "main") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if exit_code is not None:
        status["containerStatuses"] = [{"name": container, "state": {"terminated": {
            "exitCode": exit_code, "finishedAt": format_time(at)}}}]
    annotations = {} if index is None else {"batch.kubernetes.io/job-completion-index": str(index)}
    return {"metadata": {"name": name, "namespace": "ns", "annotations": annotations,
                         "creationTimestamp": format_time(T0)}, "spec": {}, "status": status}


def job(**spec: Any) -> dict[str, Any]:
    base = {"completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
            "template": {"spec": {"restartPolicy": "Never"}}}
    status = spec.pop("status", {})
    return {"metadata": {"name": "j", "namespace": "ns"}, "spec": {**base, **spec}, "status": status}


def test_backoff_doubles_from_ten_seconds_up_to_six_minutes() -> None:
    assert [jobplan.backoff_delay(n) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 320, 360]


@pytest.mark.parametrize("text,indexes", [("", set()), ("1", {1}), ("1,3-5,7", {1, 3, 4, 5, 7}), ("0-2", {0, 1, 2})])
def test_completed_indexes_round_trip(text: str, indexes: set[int]) -> None:
    assert jobplan.parse_indexes(text) == indexes
    assert jobplan.format_indexes(indexes) == text


def test_pod_failure_policy_first_matching_rule_wins() -> None:
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 42]}},
                        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [3, 42]}}]}
    assert jobplan.match_pod_failure_policy(policy, pod("a", "Failed", 42)) == (
        "FailJob", "Container main for pod ns/a failed with exit code 42 matching FailJob rule at index 1")
    assert jobplan.match_pod_failure_policy(policy, pod("b", "Failed", 1))[0] == "Count"
    disrupted = pod("c", "Failed", 137, conditions=[{"type": "DisruptionTarget", "status": "True"}])
    assert jobplan.match_pod_failure_policy(policy, disrupted) == (
        "Ignore", "Pod ns/c has condition DisruptionTarget matching Ignore rule at index 0")
    only_other = {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "side", "operator": "In",
                                                                  "values": [42]}}]}
    assert jobplan.match_pod_failure_policy(only_other, pod("d", "Failed", 42)) == (None, "")


def test_plan_creates_up_to_parallelism_and_completes() -> None:
    p = jobplan.plan(job(completions=5, parallelism=2), [], T0)
    assert p.create == [None, None] and p.status["startTime"] == format_time(T0)
    done = [pod(f"s{i}", "Succeeded", 0) for i in range(4)]
    p = jobplan.plan(job(completions=5, parallelism=2), done + [pod("r")], T0)
    assert p.create == [] and p.status["succeeded"] == 4 and p.status["active"] == 1
    p = jobplan.plan(job(completions=5, parallelism=2), done + [pod("s4", "Succeeded", 0)], T0)
    types = [(c["type"], c["reason"]) for c in p.status["conditions"]]
    assert types == [("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached")]
    assert p.status["completionTime"] == format_time(T0) and p.events == [("Normal", "Completed", "Job completed")]


def test_plan_work_queue_job_stops_creating_after_a_success() -> None:
    spec = {"completions": None, "parallelism": 3}
    assert len(jobplan.plan(job(**spec), [], T0).create) == 3
    p = jobplan.plan(job(**spec), [pod("s", "Succeeded", 0), pod("r1"), pod("r2")], T0)
    assert p.create == [] and not any(c["type"] == "Complete" for c in p.status.get("conditions", []))


def test_plan_waits_out_the_backoff_then_fails_past_the_limit() -> None:
    spec = {"backoffLimit": 2}
    failures = [pod("f1", "Failed", 1, T0)]
    p = jobplan.plan(job(**spec), failures, T0 + timedelta(seconds=4))
    assert p.create == [] and p.requeue_after == pytest.approx(6)
    assert jobplan.plan(job(**spec), failures, T0 + timedelta(seconds=10)).create == [None]
    failures.append(pod("f2", "Failed", 1, T0 + timedelta(seconds=15)))
    p = jobplan.plan(job(**spec), failures, T0 + timedelta(seconds=30))  # second retry after 20 s
    assert p.create == [] and p.requeue_after == pytest.approx(5)
    failures.append(pod("f3", "Failed", 1, T0 + timedelta(seconds=40)))
    p = jobplan.plan(job(**spec), failures, T0 + timedelta(seconds=41))
    assert [c["type"] for c in p.status["conditions"]] == ["FailureTarget", "Failed"]
    assert p.status["conditions"][1]["reason"] == "BackoffLimitExceeded" and p.status["failed"] == 3


def test_plan_failing_job_deletes_active_pods_before_it_is_failed() -> None:
    started = {"startTime": format_time(T0)}
    p = jobplan.plan(job(activeDeadlineSeconds=30, parallelism=2, completions=2, status=started),
                     [pod("a"), pod("b")], T0 + timedelta(seconds=31))
    assert [x["metadata"]["name"] for x in p.delete] == ["a", "b"]
    assert [c["type"] for c in p.status["conditions"]] == ["FailureTarget"]
    assert p.status["conditions"][0]["message"] == "Job was active longer than specified deadline"
    p = jobplan.plan(job(activeDeadlineSeconds=30, status=started), [], T0 + timedelta(seconds=10))
    assert p.requeue_after == pytest.approx(20) and p.create == [None]


def test_plan_indexed_creates_missing_indexes_only() -> None:
    spec = {"completionMode": "Indexed", "completions": 4, "parallelism": 2}
    p = jobplan.plan(job(**spec, status={"completedIndexes": "0"}), [pod("r2", index=2)], T0)
    assert p.create == [1]
    p = jobplan.plan(job(**spec), [pod("a", index=1), pod("b", index=1), pod("s", "Succeeded", 0, index=3)], T0)
    assert [x["metadata"]["name"] for x in p.delete] == ["b"] and p.status["completedIndexes"] == "3"
    assert p.create == [0]  # the duplicate of index 1 goes; index 0 takes the second slot


def test_plan_suspended_job_deletes_its_pods_and_says_so() -> None:
    p = jobplan.plan(job(suspend=True, status={"startTime": format_time(T0)}), [pod("a")], T0)
    assert [x["metadata"]["name"] for x in p.delete] == ["a"] and "startTime" not in p.status
    assert p.status["conditions"][0]["type"] == "Suspended" and p.events == [("Normal", "Suspended",
                                                                               "Job suspended")]
    stopped = pod("a", "Failed", 137)
    stopped["metadata"]["deletionTimestamp"] = format_time(T0)
    assert "failed" not in jobplan.plan(job(suspend=True), [stopped], T0).status  # not the pod's failure


def test_pod_for_index_sets_env_from_the_annotation() -> None:
    body = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}}
    jobplan.pod_for_index(body, "work", 7)
    assert body["metadata"]["generateName"] == "work-7-" and "name" not in body["metadata"]
    assert body["spec"]["hostname"] == "work-7"
    env = body["spec"]["containers"][0]["env"]
    assert env[1]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def test_ttl_counts_from_the_finish() -> None:
    finished = job(ttlSecondsAfterFinished=100, status={"conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": format_time(T0)}]})
    assert expires_in(finished, T0 + timedelta(seconds=40)) == pytest.approx(60)
    assert expires_in(job(ttlSecondsAfterFinished=100), T0) is None  # not finished
    del finished["spec"]["ttlSecondsAfterFinished"]
    assert expires_in(finished, T0) is None


# -- cron ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule,problem", [
    ("*/15 * * * *", None), ("@hourly", None), ("@midnight", None), ("0 9 * * MON-FRI", None),
    ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
    ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("CRON_TZ=UTC 0 * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
    ("61 * * * *", "unparseable schedule: 61 * * * *"),
])
def test_schedule_syntax(schedule: str, problem: str | None) -> None:
    assert cron.validate_schedule(schedule) == problem


def test_schedules_run_in_their_time_zone() -> None:
    s = cron.Schedule.parse("0 9 * * *", "America/New_York")
    assert s.next_after(T0) == datetime(2026, 3, 1, 14, 0, tzinfo=timezone.utc)  # EST: UTC-5
    assert s.next_after(datetime(2026, 3, 9, 0, 0, tzinfo=timezone.utc)) == \
        datetime(2026, 3, 9, 13, 0, tzinfo=timezone.utc)  # EDT after the switch on March 8
    assert cron.Schedule.parse("@daily").next_after(T0) == datetime(2026, 3, 2, tzinfo=timezone.utc)
    with pytest.raises(cron.CronError, match="unknown time zone Nowhere/City"):
        cron.Schedule.parse("@daily", "Nowhere/City")


def test_missed_runs_after_downtime_start_only_the_latest() -> None:
    s = cron.Schedule.parse("*/10 * * * *")
    assert cron.missed_runs(s, T0, T0 + timedelta(minutes=35)) == (T0 + timedelta(minutes=30), 3)
    assert cron.missed_runs(s, T0, T0 + timedelta(minutes=5)) == (None, 0)
    latest, count = cron.missed_runs(cron.Schedule.parse("* * * * *"), T0, T0 + timedelta(days=1))
    assert latest == T0 + timedelta(days=1) and count == cron.TOO_MANY_MISSED + 1


def cronjob(created: datetime, **spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "ns", "uid": "u1", "creationTimestamp": format_time(created)},
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"metadata": {"labels": {"a": "b"}},
                                                              "spec": {"template": {}}}, **spec},
            "status": status}


def test_due_honours_last_schedule_and_starting_deadline() -> None:
    s = cron.Schedule.parse("0 * * * *")
    cj = cronjob(T0 - timedelta(minutes=1))
    d = due(cj, s, T0 + timedelta(minutes=5))
    assert d.scheduled == T0 and d.missed == 1 and not d.too_late
    assert d.next_check == pytest.approx(55 * 60 + 0.1)
    ran = cronjob(T0 - timedelta(hours=5), status={"lastScheduleTime": format_time(T0)})
    assert due(ran, s, T0 + timedelta(minutes=59)).scheduled is None
    # Down for three hours with a 10-minute starting deadline: the missed runs are too old to start.
    strict = cronjob(T0 - timedelta(minutes=1), startingDeadlineSeconds=600)
    assert due(strict, s, T0 + timedelta(hours=3, minutes=20)).scheduled is None
    assert due(strict, s, T0 + timedelta(hours=3, minutes=5)).scheduled == T0 + timedelta(hours=3)


def test_jobs_from_a_cronjob_are_named_by_scheduled_minute() -> None:
    cj = cronjob(T0)
    assert job_name(cj, T0) == f"nightly-{int(T0.timestamp()) // 60}"
    body = job_from_template(cj, T0, cron.zone("Europe/Berlin"))
    assert body["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
        "2026-03-01T13:00:00+01:00"
    assert body["metadata"]["labels"] == {"a": "b"}
    assert body["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert job_from_template(cj, T0, timezone.utc)["metadata"]["annotations"][
        "batch.kubernetes.io/cronjob-scheduled-timestamp"] == "2026-03-01T12:00:00Z"


def test_plan_on_failure_counts_container_restarts_against_the_limit() -> None:
    restarting = pod("r")
    restarting["status"]["containerStatuses"] = [{"name": "main", "restartCount": 3, "state": {"running": {}}}]
    spec = {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure"}}}
    p = jobplan.plan(job(**spec), [restarting], T0)
    assert p.status["conditions"][0]["reason"] == "BackoffLimitExceeded" and p.delete == [restarting]
    spec["backoffLimit"] = 3
    assert "conditions" not in jobplan.plan(job(**spec), [restarting], T0).status


def test_plan_backoff_limit_per_index_fails_indexes_not_the_job() -> None:
    spec = {"completionMode": "Indexed", "completions": 3, "parallelism": 3, "backoffLimitPerIndex": 1,
            "backoffLimit": 2**31 - 1}
    first = pod("i1-a", "Failed", 1, T0, index=1)
    p = jobplan.plan(job(**spec), [first, pod("i0", index=0), pod("i2", index=2)], T0 + timedelta(seconds=11))
    assert p.create == [1] and p.index_failures == {1: 1} and p.status["failedIndexes"] == ""
    body = {"metadata": {}, "spec": {"containers": [{"name": "c"}]}}
    jobplan.pod_for_index(body, "j", 1, p.index_failures[1])
    assert body["metadata"]["annotations"][jobplan.INDEX_FAILURE_COUNT] == "1"
    # the retry fails too: index 1 has used its one retry and is not run again; the others go on
    second = pod("i1-b", "Failed", 1, T0 + timedelta(seconds=20), index=1)
    second["metadata"]["annotations"][jobplan.INDEX_FAILURE_COUNT] = "1"
    p = jobplan.plan(job(**spec), [first, second, pod("i0", index=0), pod("i2", index=2)], T0 + timedelta(days=1))
    assert p.create == [] and p.status["failedIndexes"] == "1" and "conditions" not in p.status
    # once every index is done, the failed one fails the Job
    done = [first, second, pod("i0", "Succeeded", 0, index=0), pod("i2", "Succeeded", 0, index=2)]
    p = jobplan.plan(job(**spec), done, T0 + timedelta(days=1))
    assert [(c["type"], c["reason"]) for c in p.status["conditions"]] == [("FailureTarget", "FailedIndexes"),
                                                                          ("Failed", "FailedIndexes")]
    assert p.status["completedIndexes"] == "0,2"
    # maxFailedIndexes 0: the first failed index fails the Job at once
    p = jobplan.plan(job(**spec, maxFailedIndexes=0), [first, second, pod("i0", index=0)], T0 + timedelta(days=1))
    assert p.status["conditions"][0]["reason"] == "MaxFailedIndexesExceeded"


def test_success_policy_completes_an_indexed_job_early() -> None:
    rules = {"rules": [{"succeededIndexes": "0,2-3", "succeededCount": 2}, {"succeededCount": 3}]}
    assert jobplan.success_policy_match(rules, {0}) is None
    assert jobplan.success_policy_match(rules, {0, 3}) == 0
    assert jobplan.success_policy_match(rules, {1, 4, 5}) == 1
    assert jobplan.success_policy_match({"rules": [{"succeededIndexes": "1-2"}]}, {1}) is None
    spec = {"completionMode": "Indexed", "completions": 6, "parallelism": 6, "successPolicy": rules}
    pods = [pod("s0", "Succeeded", 0, index=0), pod("s3", "Succeeded", 0, index=3), pod("r1", index=1)]
    p = jobplan.plan(job(**spec), pods, T0)
    assert [x["metadata"]["name"] for x in p.delete] == ["r1"] and p.create == []
    assert [(c["type"], c["reason"], c["message"]) for c in p.status["conditions"]] == [
        ("SuccessCriteriaMet", "SuccessPolicy", "Matched rules at index 0")]
    p = jobplan.plan(job(**spec, status={"conditions": p.status["conditions"]}), pods[:2], T0)
    assert p.status["conditions"][1]["type"] == "Complete" and p.status["conditions"][1]["reason"] == "SuccessPolicy"


def test_pod_replacement_policy_failed_waits_for_terminating_pods() -> None:
    going = pod("t")
    going["metadata"]["deletionTimestamp"] = format_time(T0)
    assert jobplan.plan(job(parallelism=2, completions=4), [going, pod("r")], T0).create == [None]
    p = jobplan.plan(job(parallelism=2, completions=4, podReplacementPolicy="Failed"), [going, pod("r")], T0)
    assert p.create == [] and p.delete == []
    indexed = {"completionMode": "Indexed", "completions": 3, "parallelism": 3, "podReplacementPolicy": "Failed"}
    going["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] = "1"
    assert jobplan.plan(job(**indexed), [going], T0).create == [0, 2]
