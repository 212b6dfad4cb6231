"""Pure Deployment arithmetic (Kubernetes' deployment/util): surge/unavailable fenceposts,
how far to scale the new and old ReplicaSets, revisions, status and conditions.

Kept free of I/O so that the rollout rules are unit-tested on plain dicts.
"""
from __future__ import annotations

import copy
from typing import Any

from pklib.api.podtemplate import comparable_template
from pklib.api.wellknown import DEPLOYMENT_OWN_ANNOTATIONS as NOT_COPIED
from pklib.api.wellknown import DESIRED_REPLICAS_ANNOTATION as DESIRED_REPLICAS
from pklib.api.wellknown import MAX_REPLICAS_ANNOTATION as MAX_REPLICAS
from pklib.api.wellknown import REVISION_ANNOTATION as REVISION
from pklib.api.wellknown import REVISION_HISTORY_ANNOTATION as REVISION_HISTORY
from pklib.informer import Obj

from .util import int_or_percent, meta, now_rfc3339

DEFAULT_PROGRESS_DEADLINE = 600
DEFAULT_HISTORY_LIMIT = 10
# The revision-history annotation drops its oldest entries beyond this many characters.
MAX_REVISION_HISTORY_CHARS = 2000


def replicas_of(obj: Obj | None) -> int:
    if obj is None:
        return 0
    return int((obj.get("spec") or {}).get("replicas", 1))


def status_of(obj: Obj | None, field: str) -> int:
    return int(((obj or {}).get("status") or {}).get(field) or 0)


def revision_of(obj: Obj) -> int:
    return _parse_revision((meta(obj).get("annotations") or {}).get(REVISION))


def _parse_revision(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") != "Recreate"


def fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as absolute numbers; never both zero."""
    if not is_rolling(d):
        return 0, 0
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas_of(d)
    surge = int_or_percent(ru.get("maxSurge", "25%"), desired, round_up=True)
    unavailable = int_or_percent(ru.get("maxUnavailable", "25%"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # otherwise a rollout could never make progress
    return surge, unavailable


def max_unavailable(d: Obj) -> int:
    _, unavailable = fenceposts(d)
    return min(unavailable, replicas_of(d))


def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose pod template equals the Deployment's (see comparable_template)."""
    want = comparable_template((d.get("spec") or {}).get("template") or {})
    same = [rs for rs in rss if comparable_template((rs.get("spec") or {}).get("template") or {}) == want]
    same.sort(key=lambda rs: (meta(rs).get("creationTimestamp") or "", meta(rs)["name"]))
    return same[0] if same else None


def new_rs_annotations(d: Obj, current: dict[str, str], revision: int) -> dict[str, str]:
    """The annotations the Deployment's new ReplicaSet should carry (Kubernetes' SetNewReplicaSetAnnotations):
    the Deployment's own (but NOT_COPIED) over the ReplicaSet's current ones, and the revision raised to
    `revision` if it is lower. A ReplicaSet that comes back (a rollback) remembers the revisions it had
    before in revision-history. Annotations the Deployment no longer has stay, as in Kubernetes."""
    out = dict(current)
    for key, value in (meta(d).get("annotations") or {}).items():
        if key not in NOT_COPIED:
            out[key] = value
    had = current.get(REVISION)
    if _parse_revision(had) < revision:
        out[REVISION] = str(revision)
        if had:
            out[REVISION_HISTORY] = _history_with(current.get(REVISION_HISTORY) or "", had)
    return out


def _history_with(history: str, revision: str) -> str:
    entries = [e for e in history.split(",") if e] + [revision]
    while len(entries) > 1 and len(",".join(entries)) > MAX_REVISION_HISTORY_CHARS:
        entries.pop(0)
    return ",".join(entries)


def new_rs_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """How many replicas the new ReplicaSet should have now."""
    desired = replicas_of(d)
    if not is_rolling(d):
        return desired
    current_new = replicas_of(new_rs)
    if current_new >= desired:
        return desired
    surge, _ = fenceposts(d)
    # Pods that a ReplicaSet still has beyond its (lowered) spec exist until it reports them gone.
    total = sum(max(replicas_of(rs), status_of(rs, "replicas")) for rs in all_rss)
    max_total = desired + surge
    if total >= max_total:
        return current_new
    return current_new + min(max_total - total, desired - current_new)


def max_old_scale_down(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """How many old replicas may go without dropping below replicas - maxUnavailable."""
    min_available = replicas_of(d) - max_unavailable(d)
    new_unavailable = replicas_of(new_rs) - status_of(new_rs, "availableReplicas")
    total = sum(replicas_of(rs) for rs in all_rss)
    return total - min_available - new_unavailable


def calculate_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> dict[str, Any]:
    old_status = d.get("status") or {}
    available = sum(status_of(rs, "availableReplicas") for rs in all_rss)
    status: dict[str, Any] = {
        "observedGeneration": meta(d).get("generation", 0),
        "replicas": sum(status_of(rs, "replicas") for rs in all_rss),
        "updatedReplicas": status_of(new_rs, "replicas"),
        "readyReplicas": sum(status_of(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(0, sum(replicas_of(rs) for rs in all_rss) - available),
        "conditions": copy.deepcopy(old_status.get("conditions") or []),
    }
    if old_status.get("collisionCount"):
        status["collisionCount"] = old_status["collisionCount"]
    if available >= replicas_of(d) - max_unavailable(d):
        set_condition(status, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        set_condition(status, "Available", "False", "MinimumReplicasUnavailable",
                      "Deployment does not have minimum availability.")
    return status


def is_complete(d: Obj, status: dict[str, Any]) -> bool:
    desired = replicas_of(d)
    return (status.get("updatedReplicas") == desired and status.get("replicas") == desired
            and status.get("availableReplicas") == desired
            and status.get("observedGeneration", 0) >= meta(d).get("generation", 0))


def is_progressing(d: Obj, new: dict[str, Any]) -> bool:
    old = d.get("status") or {}
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = int(new.get("replicas") or 0) - int(new.get("updatedReplicas") or 0)
    return (new.get("updatedReplicas", 0) > int(old.get("updatedReplicas") or 0)
            or new.get("readyReplicas", 0) > int(old.get("readyReplicas") or 0)
            or new.get("availableReplicas", 0) > int(old.get("availableReplicas") or 0)
            or new_old < old_old)


def get_condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def set_condition(status: dict[str, Any], type_: str, value: str, reason: str, message: str) -> None:
    """Set a condition; lastTransitionTime moves only when the status flips, lastUpdateTime on any change."""
    ts = now_rfc3339()
    conditions = status.setdefault("conditions", [])
    cur = get_condition(status, type_)
    if cur is not None and cur.get("status") == value and cur.get("reason") == reason \
            and cur.get("message") == message:
        return
    cond = {"type": type_, "status": value, "reason": reason, "message": message, "lastUpdateTime": ts,
            "lastTransitionTime": cur["lastTransitionTime"] if cur is not None and cur.get("status") == value
            and cur.get("lastTransitionTime") else ts}
    status["conditions"] = [c for c in conditions if c.get("type") != type_] + [cond]


def history_to_delete(d: Obj, old_rss: list[Obj]) -> list[Obj]:
    """Old, fully scaled-down ReplicaSets beyond revisionHistoryLimit, oldest revision first."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    limit = DEFAULT_HISTORY_LIMIT if limit is None else int(limit)
    idle = [rs for rs in old_rss if replicas_of(rs) == 0 and status_of(rs, "replicas") == 0
            and not meta(rs).get("deletionTimestamp")]
    excess = len(idle) - limit
    if excess <= 0:
        return []
    idle.sort(key=lambda rs: (revision_of(rs), meta(rs).get("creationTimestamp") or ""))
    return idle[:excess]


def proportions(d: Obj, active: list[Obj], delta: int) -> dict[str, int]:
    """Spread a replica change over several active ReplicaSets in proportion to their size
    (scaling in the middle of a rollout); the rounding remainder goes to the largest."""
    total = sum(replicas_of(rs) for rs in active)
    if total == 0 or delta == 0:
        return {}
    ordered = sorted(active, key=lambda rs: (-replicas_of(rs), meta(rs).get("creationTimestamp") or ""))
    out: dict[str, int] = {}
    for rs in ordered:
        # int() truncates toward zero, so no ReplicaSet gets more than its share either way.
        out[meta(rs)["name"]] = int(replicas_of(rs) * delta / total)
    largest = meta(ordered[0])["name"]
    out[largest] += delta - sum(out.values())
    return {name: n for name, n in out.items() if n}
