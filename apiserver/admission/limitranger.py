"""The LimitRanger admission plugin: a namespace's LimitRanges default and bound Pods and PersistentVolumeClaims.

Pods on create: missing requests/limits get the Container items' defaults (mutation, before validation), then
min/max/maxLimitRequestRatio of the Container and Pod items are checked; claims on create and update: the
PersistentVolumeClaim items' min/max storage. A refusal is 403 `pods "x" is forbidden: maximum cpu usage per
Container is 500m, but limit is 1` (several problems in brackets), as Kubernetes words it. The rules are the pure
ones of pklib/api/limitrange.py; the ranges come from the watch cache.
"""
from __future__ import annotations

from typing import Any

from pklib.api import limitrange
from pklib.resources import Resource

from ..status import forbidden_object

Obj = dict[str, Any]


def governs(res: Resource) -> bool:
    return res.group == "" and res.plural in ("pods", "persistentvolumeclaims")


def default(res: Resource, obj: Obj, ranges: list[Obj]) -> None:
    """Mutation of a create: the Container items' default requests and limits."""
    if res.group == "" and res.plural == "pods" and ranges:
        limitrange.apply_defaults(ranges, obj)


def check(res: Resource, obj: Obj, old: Obj | None, ranges: list[Obj]) -> None:
    """Validation: 403 when `obj` breaks a range (pods on create only: their resources cannot change)."""
    if not ranges or not governs(res):
        return
    if res.plural == "pods":
        if old is not None:
            return
        problems = limitrange.pod_violations(ranges, obj)
    elif old is not None and obj.get("spec") == old.get("spec"):
        return  # a status or metadata write (Kubernetes skips subresources): the claim asks for nothing new
    else:
        problems = limitrange.claim_violations(ranges, obj)
    if problems:
        raise forbidden_object(res.plural, (obj.get("metadata") or {}).get("name") or "", res.group,
                               limitrange.aggregate(problems))

