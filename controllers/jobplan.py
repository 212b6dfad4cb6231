"""The Job controller's decisions, as a pure function of the Job, its pods and the time (Kubernetes'
pkg/controller/job): what its status is, which pods to create (and for which completion index) or delete,
and when to look again. controllers/job.py carries the plan out.

Counting: finished pods are kept, so succeeded and failed are counted from them, never lower than what the
status already says (a pod deleted by hand does not un-count it). Kubernetes tracks this with a finalizer on
each pod instead; pkube's pods carry none.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pklib.api.timefmt import format_time, parse_time
from pklib.api.wellknown import JOB_COMPLETION_INDEX, JOB_COMPLETION_INDEX_ENV

from .util import is_pod_ready, is_terminating, meta

Obj = dict[str, Any]

BACKOFF_BASE = 10.0   # seconds before the first retry; doubled for every failure after the last success
BACKOFF_MAX = 360.0   # the cap: 6 minutes
MAX_HOSTNAME = 63

# Condition reasons and messages as Kubernetes 1.32 writes them.
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
POD_FAILURE_POLICY = "PodFailurePolicy"
MAX_FAILED_INDEXES_EXCEEDED = ("MaxFailedIndexesExceeded",
                               "Job has exceeded the specified maximal number of failed indexes")
FAILED_INDEXES = ("FailedIndexes", "Job has failed indexes")
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"  # failures of the pod's index before it


def backoff_delay(failures: int) -> float:
    """Seconds to wait before creating a pod after `failures` failures in a row (0 without one)."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_BASE * 2 ** (failures - 1), BACKOFF_MAX)


def is_finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def finish_time(pod: Obj) -> datetime | None:
    """When a finished pod's last container ended (its Ready condition's change, without container times)."""
    status = pod.get("status") or {}
    ends = [parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])]
    known = [t for t in ends if t is not None]
    if known:
        return max(known)
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            return parse_time(c.get("lastTransitionTime"))
    return parse_time(meta(pod).get("creationTimestamp"))


def completion_index(pod: Obj) -> int | None:
    value = (meta(pod).get("annotations") or {}).get(JOB_COMPLETION_INDEX)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def index_failure_count(pod: Obj) -> int:
    try:
        return int((meta(pod).get("annotations") or {}).get(INDEX_FAILURE_COUNT) or 0)
    except ValueError:
        return 0


def parse_indexes(text: str | None) -> set[int]:
    """`1,3-5,7` -> {1, 3, 4, 5, 7} (status.completedIndexes)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            out.update(range(int(low), int(high or low) + 1))
        except ValueError:
            continue
    return out


def format_indexes(indexes: set[int]) -> str:
    """{1, 3, 4, 5, 7} -> `1,3-5,7`."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def _exit_code_matches(codes: Obj, pod: Obj) -> Obj | None:
    """The first terminated container whose exit code the rule's onExitCodes selects."""
    status = pod.get("status") or {}
    values = set(codes.get("values") or [])
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if codes.get("containerName") and c.get("name") != codes["containerName"]:
            continue
        term = (c.get("state") or {}).get("terminated")
        if not term:
            continue
        code = int(term.get("exitCode") or 0)
        if code == 0:
            continue  # a container that succeeded is never what a rule matches
        if (code in values) == (codes.get("operator") == "In"):
            return {"name": c.get("name", ""), "exitCode": code}
    return None


def match_pod_failure_policy(policy: Obj | None, pod: Obj) -> tuple[str | None, str]:
    """(action of the first rule a failed pod matches, or None; the message Kubernetes gives for it)."""
    key = f"{meta(pod).get('namespace', '')}/{meta(pod).get('name', '')}"
    for i, rule in enumerate((policy or {}).get("rules") or []):
        action = rule.get("action", "")
        codes = rule.get("onExitCodes")
        if codes is not None:
            hit = _exit_code_matches(codes, pod)
            if hit is not None:
                return action, (f"Container {hit['name']} for pod {key} failed with exit code {hit['exitCode']} "
                                f"matching {action} rule at index {i}")
            continue
        conditions = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
        for want in rule.get("onPodConditions") or []:
            if conditions.get(want.get("type")) == want.get("status", "True"):
                return action, f"Pod {key} has condition {want.get('type')} matching {action} rule at index {i}"
    return None, ""


def success_policy_match(policy: Obj | None, completed: set[int]) -> int | None:
    """The index of the first successPolicy rule the completed indexes satisfy (None: none, or no policy)."""
    for i, rule in enumerate((policy or {}).get("rules") or []):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            wanted = parse_indexes(rule["succeededIndexes"])
            done = len(wanted & completed)
            if done >= (int(count) if count is not None else len(wanted)):
                return i
        elif count is not None and len(completed) >= int(count):
            return i
    return None


def condition(job: Obj, type_: str) -> Obj | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def has_true_condition(job: Obj, type_: str) -> bool:
    c = condition(job, type_)
    return c is not None and c.get("status") == "True"


def is_job_finished(job: Obj) -> bool:
    return has_true_condition(job, "Complete") or has_true_condition(job, "Failed")


def _set_condition(conditions: list[Obj], type_: str, status: str, reason: str, message: str, now: str) -> bool:
    """Add or change a condition; True when it changed."""
    for c in conditions:
        if c.get("type") == type_:
            if c.get("status") == status:
                return False
            c.update(status=status, reason=reason, message=message, lastProbeTime=now, lastTransitionTime=now)
            return True
    conditions.append({"type": type_, "status": status, "lastProbeTime": now, "lastTransitionTime": now,
                       "reason": reason, "message": message})
    return True


@dataclass
class JobPlan:
    status: Obj
    create: list[int | None] = field(default_factory=list)   # a completion index per pod (None: NonIndexed)
    index_failures: dict[int, int] = field(default_factory=dict)  # backoffLimitPerIndex: failures so far per index
    delete: list[Obj] = field(default_factory=list)
    requeue_after: float | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (Normal|Warning, reason, message)


def plan(job: Obj, pods: list[Obj], now: datetime) -> JobPlan:
    """Everything the controller does for `job` (not yet finished) given its pods at `now`."""
    spec = job.get("spec") or {}
    old = job.get("status") or {}
    stamp = format_time(now)
    conditions = copy.deepcopy(old.get("conditions") or [])
    status: Obj = {k: v for k, v in copy.deepcopy(old).items()
                   if k in ("startTime", "completionTime", "completedIndexes", "failedIndexes")}
    out = JobPlan(status)
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions")

    active = [p for p in pods if not is_finished(p) and not is_terminating(p)]
    terminating = [p for p in pods if not is_finished(p) and is_terminating(p)]
    succeeded_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
    failed_pods = sorted((p for p in pods if (p.get("status") or {}).get("phase") == "Failed"),
                         key=lambda p: finish_time(p) or now)

    suspended = bool(spec.get("suspend"))
    per_index_limit = spec.get("backoffLimitPerIndex") if indexed else None
    failed_indexes = parse_indexes(old.get("failedIndexes"))
    fail_job: str | None = None
    counted_failures: list[Obj] = []
    for p in failed_pods:
        if suspended and is_terminating(p):
            continue  # stopped because the Job was suspended: not a failure of the pod's
        action, message = match_pod_failure_policy(spec.get("podFailurePolicy"), p)
        if action == "FailJob" and fail_job is None:
            fail_job = message
        if action != "Ignore":
            counted_failures.append(p)
            index = completion_index(p)
            if per_index_limit is not None and index is not None:
                count = index_failure_count(p) + 1
                out.index_failures[index] = max(out.index_failures.get(index, 0), count)
                if action == "FailIndex" or count > int(per_index_limit):
                    failed_indexes.add(index)
    failed = max(int(old.get("failed") or 0), len(counted_failures))
    succeeded = max(int(old.get("succeeded") or 0), len(succeeded_pods))
    completed: set[int] = set()
    if indexed:
        completed = parse_indexes(old.get("completedIndexes"))
        completed |= {i for i in map(completion_index, succeeded_pods) if i is not None and i < (completions or 0)}
    failures_for_limit = failed
    if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
        failures_for_limit += sum(int(c.get("restartCount") or 0) for p in active
                                  for c in (p.get("status") or {}).get("containerStatuses") or [])

    # suspend / resume
    if suspended:
        if _set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", stamp):
            out.events.append(("Normal", "Suspended", "Job suspended"))
        status.pop("startTime", None)
    else:
        if has_true_condition(job, "Suspended"):
            _set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", stamp)
            out.events.append(("Normal", "Resumed", "Job resumed"))
            status["startTime"] = stamp
        status.setdefault("startTime", stamp)

    # failure and success criteria
    failure: tuple[str, str] | None = None
    target = condition(job, "FailureTarget")
    start = parse_time(status.get("startTime"))
    deadline = spec.get("activeDeadlineSeconds")
    if target is not None and target.get("status") == "True":
        failure = (target.get("reason", ""), target.get("message", ""))
    elif fail_job is not None:
        failure = (POD_FAILURE_POLICY, fail_job)
    elif spec.get("maxFailedIndexes") is not None and len(failed_indexes) > int(spec["maxFailedIndexes"]):
        failure = MAX_FAILED_INDEXES_EXCEEDED
    elif failures_for_limit > int(spec.get("backoffLimit", 6)):
        failure = BACKOFF_LIMIT_EXCEEDED
    elif deadline is not None and start is not None and not suspended \
            and now >= start + timedelta(seconds=int(deadline)):
        failure = DEADLINE_EXCEEDED
    met = condition(job, "SuccessCriteriaMet")
    success: tuple[str, str] | None = None
    if met is not None and met.get("status") == "True":
        success = (met.get("reason", ""), met.get("message", ""))
        failure = None  # once met, the Job completes
    elif indexed:
        matched = success_policy_match(spec.get("successPolicy"), completed)
        if matched is not None:
            success = ("SuccessPolicy", f"Matched rules at index {matched}")
        elif len(completed) >= int(completions or 0):
            success = COMPLETIONS_REACHED
        elif failure is None and failed_indexes and len(completed | failed_indexes) >= int(completions or 0):
            failure = FAILED_INDEXES  # every index is done, some of them failed
    elif (succeeded >= int(completions)) if completions is not None else (succeeded > 0 and not active):
        success = COMPLETIONS_REACHED

    if failure is not None:
        _set_condition(conditions, "FailureTarget", "True", failure[0], failure[1], stamp)
        out.delete = list(active)
        if not active and not terminating:
            _set_condition(conditions, "Failed", "True", failure[0], failure[1], stamp)
            out.events.append(("Warning", failure[0], failure[1]))
    elif success is not None:
        _set_condition(conditions, "SuccessCriteriaMet", "True", *success, stamp)
        out.delete = list(active)
        if not active and not terminating:
            _set_condition(conditions, "Complete", "True", *success, stamp)
            status["completionTime"] = stamp
            out.events.append(("Normal", "Completed", "Job completed"))
    elif suspended:
        out.delete = list(active)
    else:
        # podReplacementPolicy Failed: a terminating pod still holds its place until it has stopped
        waiting = terminating if spec.get("podReplacementPolicy") == "Failed" else []
        _plan_pods(out, spec, active, waiting, succeeded_pods, succeeded, counted_failures,
                   completed | failed_indexes, now)
        if deadline is not None and start is not None:
            left = (start + timedelta(seconds=int(deadline)) - now).total_seconds()
            out.requeue_after = left if out.requeue_after is None else min(out.requeue_after, left)

    status["active"] = len(active)
    status["ready"] = sum(1 for p in active if is_pod_ready(p))
    status["terminating"] = len(terminating)
    status["succeeded"] = succeeded
    status["failed"] = failed
    for k in ("active", "succeeded", "failed"):
        if not status[k]:
            del status[k]  # omitempty, as Kubernetes serializes them
    if indexed:
        status["completedIndexes"] = format_indexes(completed)
        if not status["completedIndexes"]:
            del status["completedIndexes"]
        if per_index_limit is not None:
            status["failedIndexes"] = format_indexes(failed_indexes)
    status["uncountedTerminatedPods"] = {}
    if conditions:
        status["conditions"] = conditions
    return out


def _plan_pods(out: JobPlan, spec: Obj, active: list[Obj], waiting: list[Obj], succeeded: list[Obj],
               succeeded_count: int, failures: list[Obj], completed: set[int], now: datetime) -> None:
    parallelism = int(spec.get("parallelism", 1))
    completions = spec.get("completions")
    if spec.get("completionMode") == "Indexed":
        by_index: dict[int, list[Obj]] = {}
        for p in active:
            i = completion_index(p)
            if i is None or i >= int(completions or 0) or i in completed:
                out.delete.append(p)  # a pod for no index, or one already done
            else:
                by_index.setdefault(i, []).append(p)
        for pods in by_index.values():
            out.delete += pods[1:]  # two pods for one index: keep one
        held = {completion_index(p) for p in waiting}
        running = len(by_index | {i: [] for i in held if i is not None and i not in by_index})
        pending = [i for i in range(int(completions or 0)) if i not in completed and i not in by_index
                   and i not in held]
        want: list[int | None] = list(pending[:max(0, parallelism - running)])
        excess = len(by_index) - parallelism
        if excess > 0:
            out.delete += [ps[0] for _, ps in sorted(by_index.items(), reverse=True)[:excess]]
    else:
        if completions is None:
            wanted = parallelism if not succeeded else len(active)
        else:
            wanted = min(parallelism, max(0, int(completions) - succeeded_count))
        want = [None] * max(0, wanted - len(active) - len(waiting))
        excess = len(active) - wanted
        if excess > 0:
            ranked = sorted(active, key=lambda p: (is_pod_ready(p), bool((p.get("spec") or {}).get("nodeName"))))
            out.delete += ranked[:excess]
    if want and spec.get("completionMode") == "Indexed" and spec.get("backoffLimitPerIndex") is not None:
        # each index waits out its own failures
        ready: list[int | None] = []
        for i in want:
            delay = _backoff_left([], [p for p in failures if completion_index(p) == i], now)
            if delay > 0:
                out.requeue_after = delay if out.requeue_after is None else min(out.requeue_after, delay)
            else:
                ready.append(i)
        want = ready
    elif want:
        delay = _backoff_left(succeeded, failures, now)
        if delay > 0:
            out.requeue_after = delay
            want = []
    out.create = want


def _backoff_left(succeeded: list[Obj], failures: list[Obj], now: datetime) -> float:
    """Seconds until a new pod may start after the failures that followed the last success."""
    last_success = max((t for t in map(finish_time, succeeded) if t is not None), default=None)
    recent = [t for t in map(finish_time, failures) if t is not None and (last_success is None or t > last_success)]
    if not recent:
        return 0.0
    ready_at = max(recent) + timedelta(seconds=backoff_delay(len(recent)))
    return max(0.0, (ready_at - now).total_seconds())


def pod_for_index(pod: Obj, job_name: str, index: int, failures: int | None = None) -> None:
    """What an Indexed Job's pod carries (in place): its index as annotation and label, the JOB_COMPLETION_INDEX
    variable read from that annotation through the downward API, and `<job>-<index>` as its hostname."""
    pmeta = pod["metadata"]
    pmeta.setdefault("annotations", {})[JOB_COMPLETION_INDEX] = str(index)
    pmeta.setdefault("labels", {})[JOB_COMPLETION_INDEX] = str(index)
    if failures is not None:
        pmeta["annotations"][INDEX_FAILURE_COUNT] = str(failures)
    pmeta.pop("name", None)
    pmeta["generateName"] = f"{job_name}-{index}-"
    spec = pod["spec"]
    hostname = f"{job_name}-{index}"
    if "hostname" not in spec and len(hostname) <= MAX_HOSTNAME:
        spec["hostname"] = hostname
    env_var = {"name": JOB_COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": f"metadata.annotations['{JOB_COMPLETION_INDEX}']"}}}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            env = c.setdefault("env", [])
            if not any(e.get("name") == JOB_COMPLETION_INDEX_ENV for e in env):
                env.append(copy.deepcopy(env_var))
