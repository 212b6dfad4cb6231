"""What `pkctl rollout status` says about one object: pure functions, object in, (message, done) out.

The wording and the order of the checks are kubectl's (kubectl/pkg/polymorphichelpers/rollout_status.go,
v1.32), so scripts that read kubectl's output read ours. A rollout that can no longer succeed (the
Deployment's progress deadline passed, a revision other than the one pinned) raises RolloutError.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pklib.api.timefmt import parse_duration  # noqa: F401 (re-exported for the rollout command)
from pklib.api.wellknown import REVISION_ANNOTATION

Obj = dict[str, Any]

# The Progressing condition's reason once the deployment controller gave up waiting.
TIMED_OUT_REASON = "ProgressDeadlineExceeded"


class RolloutError(Exception):
    """The rollout failed or cannot be judged; the message is what the user sees after `error: `."""


@dataclass(frozen=True)
class Status:
    message: str  # one line, without the newline
    done: bool


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _parts(obj: Obj) -> tuple[Obj, Obj, Obj]:
    return obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}


def _observed(meta: Obj, status: Obj) -> bool:
    """Has the controller seen the latest spec? Until then the status describes an older one."""
    return _int(meta.get("generation")) <= _int(status.get("observedGeneration"))


def deployment_status(obj: Obj, revision: int = 0) -> Status:
    meta, spec, status = _parts(obj)
    name = meta.get("name", "")
    if revision > 0:
        raw = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
        try:
            current = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RolloutError(f"cannot get the revision of deployment {name!r}: "
                               f"invalid revision annotation {raw!r}") from None
        if revision != current:
            raise RolloutError(f"desired revision ({revision}) is different from the running revision ({current})")
    if not _observed(meta, status):
        return Status("Waiting for deployment spec update to be observed...", False)
    progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
    if progressing is not None and progressing.get("reason") == TIMED_OUT_REASON:
        raise RolloutError(f'deployment "{name}" exceeded its progress deadline')
    updated, total = _int(status.get("updatedReplicas")), _int(status.get("replicas"))
    return _rolling("deployment", name, "replicas", desired=_int(spec.get("replicas"), 1), updated=updated,
                    old=total - updated, available=_int(status.get("availableReplicas")), available_of=updated)


def _rolling(what: str, name: str, unit: str, desired: int, updated: int, old: int, available: int,
             available_of: int) -> Status:
    """The steps of a rolling update as kubectl reports them: the new ones updated, the old ones gone, the
    updated ones available."""
    waiting = f'Waiting for {what} "{name}" rollout to finish: '
    if updated < desired:
        return Status(f"{waiting}{updated} out of {desired} new {unit} have been updated...", False)
    if old > 0:
        return Status(f"{waiting}{old} old {unit} are pending termination...", False)
    if available < available_of:
        return Status(f"{waiting}{available} of {available_of} updated {unit} are available...", False)
    return Status(f'{what} "{name}" successfully rolled out', True)


def daemonset_status(obj: Obj, revision: int = 0) -> Status:
    # DaemonSets keep no revision history here (as in kubectl): `revision` is ignored.
    meta, spec, status = _parts(obj)
    name = meta.get("name", "")
    if ((spec.get("updateStrategy") or {}).get("type") or "RollingUpdate") != "RollingUpdate":
        raise RolloutError("rollout status is only available for RollingUpdate strategy type")
    if not _observed(meta, status):
        return Status("Waiting for daemon set spec update to be observed...", False)
    desired = _int(status.get("desiredNumberScheduled"))
    return _rolling("daemon set", name, "pods", desired=desired, updated=_int(status.get("updatedNumberScheduled")),
                    old=0, available=_int(status.get("numberAvailable")), available_of=desired)


def statefulset_status(obj: Obj, revision: int = 0) -> Status:
    meta, spec, status = _parts(obj)
    strategy = spec.get("updateStrategy") or {}
    if (strategy.get("type") or "RollingUpdate") != "RollingUpdate":
        raise RolloutError("rollout status is only available for RollingUpdate strategy type")
    if _int(status.get("observedGeneration")) == 0 or not _observed(meta, status):
        return Status("Waiting for statefulset spec update to be observed...", False)
    replicas = _int(spec.get("replicas"), 1)
    ready, updated = _int(status.get("readyReplicas")), _int(status.get("updatedReplicas"))
    if ready < replicas:
        return Status(f"Waiting for {replicas - ready} pods to be ready...", False)
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:
        partition = rolling.get("partition")
        if partition is not None and updated < replicas - _int(partition):
            return Status(f"Waiting for partitioned roll out to finish: {updated} out of "
                          f"{replicas - _int(partition)} new pods have been updated...", False)
        return Status(f"partitioned roll out complete: {updated} new pods have been updated...", True)
    update_rev, current_rev = status.get("updateRevision") or "", status.get("currentRevision") or ""
    if update_rev != current_rev:
        return Status(f"waiting for statefulset rolling update to complete {updated} pods at revision "
                      f"{update_rev}...", False)
    return Status(f"statefulset rolling update complete {_int(status.get('currentReplicas'))} pods at revision "
                  f"{current_rev}...", True)


# Keyed by (group, kind): the kinds whose controllers maintain the status fields read above.
VIEWERS: dict[tuple[str, str], Callable[[Obj, int], Status]] = {
    ("apps", "Deployment"): deployment_status,
    ("apps", "DaemonSet"): daemonset_status,
    ("apps", "StatefulSet"): statefulset_status,
}
