"""Taints and tolerations (k8s.io/api core/v1 Toleration.ToleratesTaint)."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from pklib.api.wellknown import (DISK_PRESSURE_TAINT, MEMORY_PRESSURE_TAINT, NOT_READY_TAINT, PID_PRESSURE_TAINT,
                                 UNREACHABLE_TAINT)

# What the DaemonSet controller adds to every daemon pod (Kubernetes' AddOrUpdateDaemonPodTolerations): a daemon
# pod stays on its node when the node is lost (no tolerationSeconds: it is never evicted for it, nor moved) and
# under resource pressure.
DAEMON_POD_TOLERATIONS: tuple[dict[str, Any], ...] = (
    *({"key": k, "operator": "Exists", "effect": "NoExecute"} for k in (NOT_READY_TAINT, UNREACHABLE_TAINT)),
    *({"key": k, "operator": "Exists", "effect": "NoSchedule"}
      for k in (DISK_PRESSURE_TAINT, MEMORY_PRESSURE_TAINT, PID_PRESSURE_TAINT)),
)


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """An empty effect matches every effect and an empty key every key (with operator Exists); the operator
    Equal (also when empty) compares values, Exists ignores them, and any other operator tolerates nothing."""
    effect = toleration.get("effect") or ""
    if effect and effect != (taint.get("effect") or ""):
        return False
    key = toleration.get("key") or ""
    if key and key != (taint.get("key") or ""):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: Iterable[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def untolerated(taints: Iterable[dict[str, Any]], tolerations: Sequence[dict[str, Any]],
                effects: tuple[str, ...]) -> list[dict[str, Any]]:
    """The taints with one of `effects` that no toleration tolerates."""
    return [t for t in taints if t.get("effect") in effects and not tolerated(tolerations, t)]


def with_daemon_tolerations(tolerations: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """`tolerations` with DAEMON_POD_TOLERATIONS in place of any of the same key and effect (as Kubernetes'
    AddOrUpdateTolerationInPodSpec: the controller's own toleration wins)."""
    ours = {(t["key"], t["effect"]) for t in DAEMON_POD_TOLERATIONS}
    kept = [t for t in tolerations or [] if (t.get("key"), t.get("effect")) not in ours]
    return [*kept, *(dict(t) for t in DAEMON_POD_TOLERATIONS)]
