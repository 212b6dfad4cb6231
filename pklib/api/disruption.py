"""PodDisruptionBudget semantics shared by the apiserver's Eviction subresource, the disruption controller and
`pkctl drain` (Kubernetes' policy/v1 types and pkg/apis/policy helpers): which pods a budget covers, which
pods count as healthy, and the words Kubernetes uses for a refused eviction; and the DisruptionTarget pod
condition: whoever deletes a pod for a reason of its own, not the pod's (an eviction, preemption, a NoExecute
taint), first says so in the pod's status, so that a Job's podFailurePolicy can tell a disruption from a failure.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from pklib.selectors import SelectorError, selector_from_match

from .timefmt import now_rfc3339

Obj = dict[str, Any]

DISRUPTION_ALLOWED = "DisruptionAllowed"  # the PDB status condition
SUFFICIENT_PODS, INSUFFICIENT_PODS, SYNC_FAILED = "SufficientPods", "InsufficientPods", "SyncFailed"
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"  # the StatusCause type of a refused eviction
IF_HEALTHY_BUDGET, ALWAYS_ALLOW = "IfHealthyBudget", "AlwaysAllow"
UNHEALTHY_POD_EVICTION_POLICIES = (IF_HEALTHY_BUDGET, ALWAYS_ALLOW)
# An evicted pod listed in status.disruptedPods stops counting as healthy; if it is still not being deleted
# after this long, the controller forgets it (Kubernetes' DeletionTimeout).
DELETION_TIMEOUT = timedelta(minutes=2)
# More unconfirmed evictions than this and the apiserver refuses more (Kubernetes' MaxDisruptedPodSize).
MAX_DISRUPTED_PODS = 2000

VIOLATION_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_BUDGETS_MESSAGE = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not " \
                           "support."
DISRUPTION_TARGET = "DisruptionTarget"  # the pod condition an eviction adds before deleting
PREEMPTION_BY_SCHEDULER = "PreemptionByScheduler"
DELETION_BY_TAINT_MANAGER = "DeletionByTaintManager"


def disruption_status_patch(reason: str, message: str) -> dict[str, Any]:
    """A strategic merge patch of pods/status adding the condition (conditions merge by `type`)."""
    return {"status": {"conditions": [{"type": DISRUPTION_TARGET, "status": "True", "reason": reason,
                                       "message": message, "lastTransitionTime": now_rfc3339()}]}}


def needs_healthy_message(name: str, desired: int, current: int) -> str:
    return f"The disruption budget {name} needs {desired} healthy pods and has {current} currently"


def processing_message(name: str) -> str:
    return f"The disruption budget {name} is still being processed by the server."


def selects(pdb: Obj, labels: dict[str, str] | None) -> bool:
    """Whether the budget covers a pod with these labels. In policy/v1 an empty selector covers every pod of
    the namespace and a missing (or unparsable) one covers none."""
    selector = (pdb.get("spec") or {}).get("selector")
    if selector is None:
        return False
    try:
        return selector_from_match(selector).matches(labels or {})
    except SelectorError:
        return False


def is_pod_ready(pod: Obj) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def ignores_budget(pod: Obj) -> bool:
    """Pods an eviction deletes without consulting a budget: finished, not yet running, or already going
    (Kubernetes' canIgnorePDB)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def set_allowed_condition(pdb: Obj, status: Obj, reason: str, message: str, at: str) -> None:
    """Set the DisruptionAllowed condition of `status` (in place) from status.disruptionsAllowed, as
    apimachinery's SetStatusCondition does: the transition time moves only when the status flips.
    `reason` is SyncFailed after an error, else derived (SufficientPods / InsufficientPods)."""
    allowed = reason != SYNC_FAILED and int(status.get("disruptionsAllowed") or 0) > 0
    if reason != SYNC_FAILED:
        reason = SUFFICIENT_PODS if allowed else INSUFFICIENT_PODS
    wanted: Obj = {"type": DISRUPTION_ALLOWED, "status": "True" if allowed else "False", "reason": reason,
              "message": message, "observedGeneration": int((pdb.get("metadata") or {}).get("generation") or 0)}
    conditions = [dict(c) for c in status.get("conditions") or []]
    for c in conditions:
        if c.get("type") == DISRUPTION_ALLOWED:
            wanted["lastTransitionTime"] = c.get("lastTransitionTime") if c.get("status") == wanted["status"] else at
            c.clear()
            c.update(wanted)
            break
    else:
        wanted["lastTransitionTime"] = at
        conditions.append(wanted)
    status["conditions"] = conditions
