"""The DisruptionTarget pod condition (Kubernetes' k8s.io/api core/v1 PodReason* constants).

Whoever deletes a pod for a reason of its own, not the pod's (preemption, a NoExecute taint), first says so in
the pod's status, so that a Job's podFailurePolicy can tell a disruption from a failure (`onPodConditions`).
"""
from __future__ import annotations

from typing import Any

from .timefmt import now_rfc3339

DISRUPTION_TARGET = "DisruptionTarget"
PREEMPTION_BY_SCHEDULER = "PreemptionByScheduler"
DELETION_BY_TAINT_MANAGER = "DeletionByTaintManager"


def disruption_status_patch(reason: str, message: str) -> dict[str, Any]:
    """A strategic merge patch of pods/status adding the condition (conditions merge by `type`)."""
    return {"status": {"conditions": [{"type": DISRUPTION_TARGET, "status": "True", "reason": reason,
                                       "message": message, "lastTransitionTime": now_rfc3339()}]}}
