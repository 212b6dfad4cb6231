"""DELETE semantics: preconditions, finalizers, graceful pod deletion, propagation policy, namespaces.

As in Kubernetes, a DELETE removes an object at once only when nothing has to
happen first. Otherwise it is marked (deletionTimestamp) and kept:
- while it has finalizers (Orphan / Foreground propagation add "orphan" /
  "foregroundDeletion" for the garbage collector);
- a scheduled pod for its grace period, until the kubelet deletes it with
  gracePeriodSeconds=0;
- a namespace until the namespace controller has emptied it and cleared
  spec.finalizers through /finalize.
The kind's strategy says which kinds wait how (check_graceful_delete, prepare_for_delete,
finished_deleting); this module names no kind.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pklib.api.timefmt import now_rfc3339
from pklib.resources import Resource

from . import bodies, kinds
from .handlers_objects import Objects, object_key
from .status import StatusError, bad_request, conflict, forbidden_object, not_found
from .storage.interface import Entry, KeyNotFoundError, RevisionConflictError
from .watchcache import with_rv

POLICIES = {"Orphan": "orphan", "Foreground": "foregroundDeletion", "Background": None}


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False

    @classmethod
    def parse(cls, body: dict[str, Any] | None, query: Any) -> "DeleteOptions":
        body = body or {}
        if body.get("kind") not in (None, "DeleteOptions"):
            raise bad_request(f"expected a DeleteOptions body, got kind {body.get('kind')!r}")
        grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        policy = body.get("propagationPolicy", query.get("propagationPolicy"))
        if body.get("orphanDependents") is not None and policy is None:
            policy = "Orphan" if body["orphanDependents"] else "Background"
        pre = bodies.member(body, "preconditions")
        grace_int = None if grace in (None, "") else bodies.int64(grace, "gracePeriodSeconds")
        if grace_int is not None and grace_int < 0:
            grace_int = 0  # Kubernetes treats a negative grace period as "now"
        if policy not in (None, *POLICIES):
            raise StatusError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
                                              f'Unsupported value: "{policy}": supported values: '
                                              f'"Foreground", "Background", "Orphan"',
                              {"kind": "DeleteOptions", "causes": [{"reason": "FieldValueNotSupported",
                                                                    "field": "propagationPolicy",
                                                                    "message": f'Unsupported value: "{policy}"'}]})
        dry_run = body.get("dryRun") or query.getall("dryRun", [])
        if not isinstance(dry_run, list) or any(v != "All" for v in dry_run):
            raise bad_request(f'unsupported dryRun value {dry_run!r}: only ["All"] is supported')
        return cls(grace_int, policy, pre.get("uid"), pre.get("resourceVersion"), bool(dry_run))


def check_preconditions(res: Resource, entry: Entry, opts: DeleteOptions) -> None:
    meta = entry.value.get("metadata") or {}
    name = meta.get("name", "")
    if opts.precondition_uid and opts.precondition_uid != meta.get("uid"):
        raise conflict(res.plural, name, res.group,
                       f"Precondition failed: UID in precondition: {opts.precondition_uid}, "
                       f"UID in object meta: {meta.get('uid')}")
    if opts.precondition_rv and opts.precondition_rv != str(entry.mod_revision):
        raise conflict(res.plural, name, res.group,
                       f"Precondition failed: ResourceVersion in precondition: {opts.precondition_rv}, "
                       f"ResourceVersion in object meta: {entry.mod_revision}")


def _marked(strategy: kinds.KindStrategy, obj: dict[str, Any], opts: DeleteOptions) -> dict[str, Any] | None:
    """The object marked for deletion, or None if it can be removed now."""
    new = copy.deepcopy(obj)
    meta = new.setdefault("metadata", {})
    finalizers = list(meta.get("finalizers") or [])
    policy_finalizer = POLICIES.get(opts.propagation_policy or "")
    if policy_finalizer:
        # One propagation finalizer at a time: the latest request's policy wins, as in Kubernetes.
        finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")] + [policy_finalizer]
    elif opts.propagation_policy == "Background":
        finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
    if finalizers:
        meta["finalizers"] = finalizers
    else:
        meta.pop("finalizers", None)
    grace = strategy.check_graceful_delete(new, opts.grace_period_seconds)
    strategy.prepare_for_delete(new)
    # A graceful kind's object is marked again when its grace period changes (it can only shorten).
    if not meta.get("deletionTimestamp") or grace is not None and grace != meta.get("deletionGracePeriodSeconds"):
        meta["deletionTimestamp"] = now_rfc3339(grace or 0)
        meta["deletionGracePeriodSeconds"] = grace or 0
    if strategy.finished_deleting(new):
        return None
    return new


async def delete(objects: Objects, res: Resource, namespace: str | None, name: str,
                 opts: DeleteOptions) -> tuple[dict[str, Any], bool]:
    """(the object's last state, whether it is gone now)."""
    storage = objects.storage
    strategy = kinds.strategy_for(res)
    key = object_key(res, namespace, name)
    for _ in range(16):
        entry = await storage.get(key)
        if entry is None:
            raise not_found(res.plural, name, res.group)
        check_preconditions(res, entry, opts)
        if (refusal := strategy.delete_refusal(entry.value)) is not None:
            raise forbidden_object(res.plural, name, res.group, refusal)
        marked = _marked(strategy, entry.value, opts)
        if opts.dry_run:
            return with_rv(marked or entry.value, entry.mod_revision), marked is None
        try:
            if marked is None:
                deleted = await storage.delete(key, entry.mod_revision)
                objects.wrote(key, deleted.mod_revision)
                await strategy.after_delete(deleted.value, storage)
                return with_rv(deleted.value, deleted.mod_revision), True
            if marked == entry.value:
                return with_rv(marked, entry.mod_revision), False
            revision = objects.wrote(key, await storage.update(key, marked, entry.mod_revision))
            return with_rv(marked, revision), False
        except RevisionConflictError:
            continue
        except KeyNotFoundError:
            raise not_found(res.plural, name, res.group) from None
    raise conflict(res.plural, name, res.group, "too many concurrent writers; try again")
