"""batch/v1 Job and CronJob (Kubernetes' pkg/registry/batch and apis/batch/validation).

A Job's selector is generated at creation (unless `manualSelector`): the Job's uid as the
`batch.kubernetes.io/controller-uid` label, added with the job-name labels to the pod template. Its pods run
to completion, so their restartPolicy is OnFailure or Never. A CronJob's job template is a Job spec without
the selector, which each Job created from it gets of its own.
"""
from __future__ import annotations

import re
from typing import Any

from pklib.api import cron
from pklib.api.wellknown import (JOB_CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_JOB_CONTROLLER_UID_LABEL,
                                 LEGACY_JOB_NAME_LABEL)

from .base import KindStrategy
from .fields import Cause, Path, forbidden, immutable, invalid, non_negative, not_supported, one_of, required
from .meta import as_dict, as_list
from .podspec import default_pod_spec, validate_pod_spec
from .workloads import template_label_causes, validate_selector

COMPLETION_MODES = ("NonIndexed", "Indexed")
POD_FAILURE_ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")
MAX_INDEXED_COMPLETIONS = 100_000
MAX_CRONJOB_NAME = 52  # a Job's name is the CronJob's plus an 11-character suffix
BACKOFF_LIMIT_DEFAULT = 6
_CONCURRENCY = ("Allow", "Forbid", "Replace")
_JOB_RESTART = ("OnFailure", "Never")
# Job spec fields that may change after creation (Kubernetes 1.32; the template only while suspended,
# for its scheduling directives, which pkube does not support changing).
_JOB_MUTABLE = ("parallelism", "activeDeadlineSeconds", "backoffLimit", "suspend",
                "ttlSecondsAfterFinished", "maxFailedIndexes", "managedBy")


def default_job_spec(spec: Any, in_template: bool = False) -> None:
    """SetDefaults_Job; a CronJob's job template only gets its pod template defaulted, as in Kubernetes."""
    if not isinstance(spec, dict):
        return
    default_pod_spec(as_dict(spec.get("template")).get("spec"), is_pod=False)
    if in_template:
        return
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None
                    else BACKOFF_LIMIT_DEFAULT)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    for rule in as_list(as_dict(spec.get("podFailurePolicy")).get("rules")):
        for cond in as_list(as_dict(rule).get("onPodConditions")):
            if isinstance(cond, dict):
                cond.setdefault("status", "True")


def validate_job_spec(spec: dict[str, Any], path: Path, needs_selector: bool) -> list[Cause]:
    causes: list[Cause] = []
    for field in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                  "backoffLimitPerIndex", "maxFailedIndexes"):
        causes += non_negative(path.child(field), spec.get(field))
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and ads == 0:
        causes.append(invalid(path.child("activeDeadlineSeconds"), ads, "must be greater than 0"))
    mode = spec.get("completionMode")
    causes += one_of(path.child("completionMode"), mode, COMPLETION_MODES)
    if mode == "Indexed":
        if spec.get("completions") is None:
            causes.append(required(path.child("completions"), "when completion mode is Indexed"))
        for field in ("completions", "parallelism"):
            value = spec.get(field)
            if isinstance(value, int) and value > MAX_INDEXED_COMPLETIONS:
                causes.append(invalid(path.child(field), value,
                                      f"must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion "
                                      "mode is Indexed"))
    per_index, max_failed = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
    if per_index is not None and mode != "Indexed":
        causes.append(invalid(path.child("backoffLimitPerIndex"), per_index, "requires indexed completion mode"))
    if max_failed is not None:
        if per_index is None:
            causes.append(required(path.child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
        completions = spec.get("completions")
        if isinstance(completions, int) and isinstance(max_failed, int) and max_failed > completions:
            causes.append(invalid(path.child("maxFailedIndexes"), max_failed,
                                  "must be less than or equal to completions"))
    causes += _validate_success_policy(spec, path)
    causes += one_of(path.child("podReplacementPolicy"), spec.get("podReplacementPolicy"),
                     ("TerminatingOrFailed", "Failed"))
    selector = spec.get("selector")
    selector_bad = False
    if selector is None:
        if needs_selector:
            causes.append(required(path.child("selector")))
            selector_bad = True
    else:
        before = len(causes)
        causes += validate_selector(selector, path.child("selector"))
        selector_bad = len(causes) > before
    causes += _validate_template(spec, None if selector_bad else selector, path.child("template"))
    causes += _validate_pod_failure_policy(spec, path)
    return causes


_INDEXES = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*")


def _validate_success_policy(spec: dict[str, Any], path: Path) -> list[Cause]:
    policy = spec.get("successPolicy")
    if policy is None:
        return []
    p = path.child("successPolicy")
    if spec.get("completionMode") != "Indexed":
        return [invalid(p, policy, "requires indexed completion mode")]
    rules = as_list(policy.get("rules"))
    causes: list[Cause] = []
    if not rules or len(rules) > 20:
        causes.append(invalid(p.child("rules"), len(rules), "must have between 1 and 20 rules"))
    completions = spec.get("completions")
    for i, rule in enumerate(rules):
        rp = p.child("rules").index(i)
        indexes, count = rule.get("succeededIndexes"), rule.get("succeededCount")
        if indexes is None and count is None:
            causes.append(required(rp, "at least one of succeededCount or succeededIndexes must be specified"))
        if indexes is not None:
            bad = not _INDEXES.fullmatch(indexes) or any(
                int(lo) > int(hi or lo) for lo, _, hi in (part.partition("-") for part in indexes.split(",")))
            if bad:
                causes.append(invalid(rp.child("succeededIndexes"), indexes, "error parsing succeededIndexes"))
            elif isinstance(completions, int) and max(int(x) for x in re.split("[,-]", indexes)) >= completions:
                causes.append(invalid(rp.child("succeededIndexes"), indexes,
                                      "must be less than completions"))
        if isinstance(count, int):
            if count < 0:
                causes.append(invalid(rp.child("succeededCount"), count, "must be greater than or equal to 0"))
            elif isinstance(completions, int) and count > completions:
                causes.append(invalid(rp.child("succeededCount"), count,
                                      f"must be less than or equal to {completions} (the number of specified "
                                      "completions)"))
    return causes


def _validate_template(spec: dict[str, Any], selector: dict[str, Any] | None, path: Path) -> list[Cause]:
    template = as_dict(spec.get("template"))
    causes = template_label_causes(template, selector, path)
    pod_spec = template.get("spec")
    if pod_spec is None:
        return causes + [required(path.child("spec"))]
    causes += validate_pod_spec(pod_spec, path.child("spec"))
    policy = pod_spec.get("restartPolicy")
    if policy not in _JOB_RESTART:
        causes.append(not_supported(path.child("spec").child("restartPolicy"), policy, _JOB_RESTART))
    return causes


def _validate_pod_failure_policy(spec: dict[str, Any], path: Path) -> list[Cause]:
    policy = spec.get("podFailurePolicy")
    if policy is None:
        return []
    causes: list[Cause] = []
    restart = as_dict(as_dict(spec.get("template")).get("spec")).get("restartPolicy")
    if restart != "Never":
        causes.append(invalid(path.child("template").child("spec").child("restartPolicy"), restart,
                              'only "Never" is supported when podFailurePolicy is specified'))
    rules_path = path.child("podFailurePolicy").child("rules")
    for i, rule in enumerate(as_list(policy.get("rules"))):
        p = rules_path.index(i)
        action = rule.get("action")
        if action not in POD_FAILURE_ACTIONS:
            causes.append(not_supported(p.child("action"), action, POD_FAILURE_ACTIONS))
        elif action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            causes.append(forbidden(p.child("action"), "requires the backoffLimitPerIndex to be set"))
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conditions is None):
            causes.append(invalid(p, rule, "specifying one of OnExitCodes and OnPodConditions is required"))
        if codes is not None:
            causes += _validate_exit_codes(codes, p.child("onExitCodes"))
        for j, cond in enumerate(as_list(conditions)):
            cp = p.child("onPodConditions").index(j)
            causes += one_of(cp.child("status"), cond.get("status"), ("True", "False", "Unknown"))
            if not cond.get("type"):
                causes.append(required(cp.child("type")))
    return causes


def _validate_exit_codes(codes: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    operator = codes.get("operator")
    if operator not in ("In", "NotIn"):
        causes.append(not_supported(path.child("operator"), operator, ("In", "NotIn")))
    values = codes.get("values") or []
    if not values:
        causes.append(required(path.child("values"), "at least one value is required"))
    if len(values) > 255:
        causes.append(invalid(path.child("values"), len(values), "must have at most 255 elements"))
    for k, value in enumerate(values):
        vp = path.child("values").index(k)
        if k > 0 and value == values[k - 1]:
            causes.append(invalid(vp, value, "duplicated values are not allowed"))
        elif k > 0 and value < values[k - 1]:
            causes.append(invalid(vp, value, "must be ordered"))
        if operator == "In" and value == 0:
            causes.append(invalid(vp, value, "must not be 0 for the In operator"))
    return causes


class JobStrategy(KindStrategy):
    kind = "Job"
    field_labels = ("status.successful",)

    def field_value(self, obj: dict[str, Any], path: str) -> str:
        if path == "status.successful":
            return str(as_dict(obj.get("status")).get("succeeded", 0))
        return super().field_value(obj, path)

    def prepare_for_create(self, obj: dict[str, Any], status_subresource: bool) -> None:
        super().prepare_for_create(obj, status_subresource)
        generate_selector(obj)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        default_job_spec(obj.get("spec"))

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = obj["spec"]
        path = Path("spec")
        if old is None:
            causes = validate_job_spec(spec, path, needs_selector=True)
            uid = as_dict(obj.get("metadata")).get("uid")
            generated = {"matchLabels": {JOB_CONTROLLER_UID_LABEL: uid}}
            if spec.get("manualSelector") is not True and spec.get("selector") != generated:
                causes.append(invalid(path.child("selector"), spec.get("selector"), "`selector` not auto-generated"))
            return causes
        old_spec = as_dict(old.get("spec"))
        if spec == old_spec:
            return []  # a status or metadata write
        causes = validate_job_spec(spec, path, needs_selector=True)
        for field in sorted(set(spec) | set(old_spec)):
            if field in _JOB_MUTABLE or spec.get(field) == old_spec.get(field):
                continue
            if field == "completions" and spec.get("completionMode") == "Indexed" \
                    and spec.get("completions") == spec.get("parallelism"):
                continue  # elastic Indexed Jobs scale completions with parallelism
            causes.append(immutable(path.child(field), spec.get(field)))
        return causes


def generate_selector(job: dict[str, Any]) -> None:
    """Kubernetes' generateSelectorIfNeeded: unless the user manages the selector, select the Job's pods by its
    uid, and label the template with it and the Job's name."""
    spec, meta = job.get("spec"), as_dict(job.get("metadata"))
    if not isinstance(spec, dict) or spec.get("manualSelector") is True:
        return
    template = spec.setdefault("template", {})
    if not isinstance(template, dict):
        return
    tmeta = template.setdefault("metadata", {})
    if not isinstance(tmeta, dict):
        return
    labels = tmeta.setdefault("labels", {})
    if not isinstance(labels, dict):
        return
    uid, name = meta.get("uid", ""), meta.get("name", "")
    for key, value in ((JOB_CONTROLLER_UID_LABEL, uid), (JOB_NAME_LABEL, name),
                       (LEGACY_JOB_CONTROLLER_UID_LABEL, uid), (LEGACY_JOB_NAME_LABEL, name)):
        labels.setdefault(key, value)
    selector = spec.setdefault("selector", {})
    if isinstance(selector, dict):
        match = selector.setdefault("matchLabels", {})
        if isinstance(match, dict):
            match.setdefault(JOB_CONTROLLER_UID_LABEL, uid)


class CronJobStrategy(KindStrategy):
    kind = "CronJob"

    def name_errors(self, name: str) -> list[str]:
        errors = super().name_errors(name)
        if len(name) > MAX_CRONJOB_NAME:
            errors.append(f"must be no more than {MAX_CRONJOB_NAME} characters")
        return errors

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        default_job_spec(as_dict(spec.get("jobTemplate")).get("spec"), in_template=True)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = obj["spec"]
        if old is not None and spec == as_dict(old.get("spec")):
            return []
        path = Path("spec")
        causes: list[Cause] = []
        schedule = spec["schedule"]
        problem = cron.validate_schedule(schedule) if schedule else None
        if not schedule:
            causes.append(required(path.child("schedule")))
        elif problem:
            causes.append(invalid(path.child("schedule"), schedule, problem))
        tz = spec.get("timeZone")
        if tz is not None and (problem := cron.validate_time_zone(tz)):
            causes.append(invalid(path.child("timeZone"), tz, problem))
        causes += one_of(path.child("concurrencyPolicy"), spec.get("concurrencyPolicy"), _CONCURRENCY)
        for field in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
            causes += non_negative(path.child(field), spec.get(field))
        tpath = path.child("jobTemplate").child("spec")
        job_spec = as_dict(as_dict(spec.get("jobTemplate")).get("spec"))
        if job_spec.get("manualSelector") is not True and job_spec.get("selector") is not None:
            causes.append(invalid(tpath.child("selector"), job_spec["selector"],
                                  "`selector` will be auto-generated"))
        causes += validate_job_spec(job_spec, tpath, needs_selector=False)
        return causes
