"""Revision histories for `pkctl rollout history|undo`: pure functions.

Every pod template a Deployment ever rolled out lives on in a ReplicaSet that carries the
`deployment.kubernetes.io/revision` annotation (and `kubernetes.io/change-cause` if the user set one).
Undo is kubectl's: copy the chosen ReplicaSet's template, without its pod-template-hash label, back
into the Deployment; the deployment controller then rolls it out as the next revision.

DaemonSets and StatefulSets keep theirs in ControllerRevisions: `revision` is the number, `data` the
strategic merge patch that restores the template, the annotations the owner's when it was recorded.
Undo sends that patch to the owner (kubectl's DaemonSetRollbacker / StatefulSetRollbacker).
"""
from __future__ import annotations

from typing import Any

from pklib.api.podtemplate import template_without_hash
from pklib.api.wellknown import CHANGE_CAUSE_ANNOTATION, DEPLOYMENT_OWN_ANNOTATIONS, REVISION_ANNOTATION
from pklib.patch import PatchError, strategic_merge_patch

from .rollout_status import RolloutError

Obj = dict[str, Any]

NONE = "<none>"


def revision_of(obj: Obj) -> int | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def controlled_by(owner: Obj, objs: list[Obj]) -> list[Obj]:
    """The objects whose controller is `owner` (same uid: not a deleted namesake's)."""
    uid = (owner.get("metadata") or {}).get("uid")
    return [o for o in objs
            if any(ref.get("controller") and ref.get("uid") == uid
                   for ref in (o.get("metadata") or {}).get("ownerReferences") or [])]


def owned_replicasets(deployment: Obj, replicasets: list[Obj]) -> list[Obj]:
    """The ReplicaSets whose controller is this Deployment."""
    return controlled_by(deployment, replicasets)


def revisions(replicasets: list[Obj]) -> dict[int, Obj]:
    """Revision number → ReplicaSet; ReplicaSets without a readable revision are not history."""
    out: dict[int, Obj] = {}
    for rs in replicasets:
        rev = revision_of(rs)
        if rev is not None:
            out[rev] = rs
    return out


def history_table(replicasets: list[Obj]) -> str:
    """kubectl's REVISION / CHANGE-CAUSE table of a Deployment's ReplicaSets."""
    return _table(revisions(replicasets))


def _table(by_rev: dict[int, Obj]) -> str:
    """kubectl's REVISION / CHANGE-CAUSE table (tabwriter, padding 2), or the no-history sentence."""
    if not by_rev:
        return "No rollout history found."
    rows = [("REVISION", "CHANGE-CAUSE")]
    for rev in sorted(by_rev):
        cause = ((by_rev[rev].get("metadata") or {}).get("annotations") or {}).get(CHANGE_CAUSE_ANNOTATION) or NONE
        rows.append((str(rev), cause))
    width = max(len(r[0]) for r in rows) + 2
    return "".join(f"{r[0].ljust(width)}{r[1]}\n" for r in rows)


# -- ControllerRevisions: DaemonSets and StatefulSets --------------------------------------------

def controller_revisions(owner: Obj, listed: list[Obj]) -> dict[int, Obj]:
    """Revision number → the owner's ControllerRevision (a later one of the same number wins, as in kubectl)."""
    return {int(r.get("revision") or 0): r for r in controlled_by(owner, listed)}


def revision_table(owner: Obj, listed: list[Obj]) -> str:
    return _table(controller_revisions(owner, listed))


def revision_template(owner: Obj, revision: Obj) -> Obj:
    """The pod template a revision restores: its patch applied to the owner (kubectl's applyHistory)."""
    name = (revision.get("metadata") or {}).get("name")
    try:
        restored = strategic_merge_patch(owner, revision.get("data") or {})
    except PatchError:
        raise RolloutError(f"unable to parse history {name}") from None
    template = (restored.get("spec") or {}).get("template")
    if not isinstance(template, dict):
        raise RolloutError(f"unable to parse history {name}")
    return template


def revision_to_restore(owner: Obj, listed: list[Obj], to_revision: int) -> Obj:
    """The revision `rollout undo` goes back to: `to_revision`, or with 0 the one before the newest."""
    if to_revision < 0:
        raise RolloutError(f"unable to find specified revision {to_revision} in history")
    by_rev = controller_revisions(owner, listed)
    if to_revision == 0:
        if len(by_rev) <= 1:
            raise RolloutError("no last revision to roll back to")
        return by_rev[sorted(by_rev)[-2]]
    if to_revision not in by_rev:
        raise RolloutError(f"unable to find specified revision {to_revision} in history")
    return by_rev[to_revision]


def rollback_target(replicasets: list[Obj], to_revision: int, deployment_name: str) -> tuple[int, Obj]:
    """The (revision, ReplicaSet) to go back to: `to_revision`, or with 0 the one before the latest."""
    if to_revision < 0:
        raise RolloutError(f"unable to find specified revision {to_revision} in history")
    by_rev = revisions(replicasets)
    if to_revision > 0:
        if to_revision not in by_rev:
            raise RolloutError(f"unable to find specified revision {to_revision} in history")
        return to_revision, by_rev[to_revision]
    ordered = sorted(by_rev)
    if len(ordered) < 2:
        raise RolloutError(f'no rollout history found for deployment "{deployment_name}"')
    return ordered[-2], by_rev[ordered[-2]]


def undo_patch(deployment: Obj, rs: Obj) -> list[Obj]:
    """A JSON patch that puts the ReplicaSet's template back into the Deployment.

    Annotations: the ReplicaSet's (but those in DEPLOYMENT_OWN_ANNOTATIONS) over the Deployment's current ones. kubectl
    replaces them with the ReplicaSet's outright, relying on the controller copying the Deployment's
    annotations to each ReplicaSet; merging keeps user annotations whichever way the controller does it.
    """
    template = template_without_hash((rs.get("spec") or {}).get("template") or {})
    annotations = dict((deployment.get("metadata") or {}).get("annotations") or {})
    for key, value in ((rs.get("metadata") or {}).get("annotations") or {}).items():
        if key not in DEPLOYMENT_OWN_ANNOTATIONS:
            annotations[key] = value
    # `add` on an object member replaces it, and also works when the Deployment has no annotations yet.
    return [{"op": "replace", "path": "/spec/template", "value": template},
            {"op": "add", "path": "/metadata/annotations", "value": annotations}]
