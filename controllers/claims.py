"""Adoption and release of dependents (Kubernetes' ControllerRefManager).

A controller owns the objects whose controller ownerReference carries its uid.
Orphans that match its selector are adopted; owned objects that stopped matching
are released. Both are written with the object's resourceVersion, so a racing
controller makes the write fail with a conflict instead of creating two owners.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from pklib.client import Client
from pklib.errors import ApiError, is_conflict, is_not_found
from pklib.informer import Obj
from pklib.resources import Resource
from pklib.selectors import LabelSelector

from .util import controller_ref, is_terminating, meta, owner_reference

log = logging.getLogger(__name__)


async def claim(client: Client, res: Resource, owner: Obj, candidates: list[Obj],
                selector: LabelSelector | None) -> list[Obj]:
    """The candidates `owner` controls after adopting matching orphans and releasing non-matching ones."""
    uid = meta(owner).get("uid")
    owner_deleting = is_terminating(owner)
    owned: list[Obj] = []
    errors: list[ApiError] = []
    for obj in candidates:
        ref = controller_ref(obj)
        matches = selector is not None and selector.matches(meta(obj).get("labels"))
        if ref is not None:
            if ref.get("uid") != uid:
                continue  # someone else's
            if matches:
                owned.append(obj)
            elif not owner_deleting:
                await _write_refs(client, res, obj, [r for r in meta(obj).get("ownerReferences") or []
                                                     if r.get("uid") != uid], errors)
            continue
        if matches and not owner_deleting and not is_terminating(obj):
            adopted = await _write_refs(client, res, obj,
                                        list(meta(obj).get("ownerReferences") or []) + [owner_reference(owner)],
                                        errors)
            if adopted is not None:
                owned.append(adopted)
    if errors:
        raise errors[0]
    return owned


async def _write_refs(client: Client, res: Resource, obj: Obj, refs: list[dict[str, Any]],
                      errors: list[ApiError]) -> Obj | None:
    body = copy.deepcopy(obj)
    body["metadata"]["ownerReferences"] = refs
    try:
        return await client.update(res, body)
    except ApiError as e:
        if is_not_found(e):
            return None
        if not is_conflict(e):
            log.info("could not update owner refs of %s/%s: %s", meta(obj).get("namespace"), meta(obj)["name"], e)
        errors.append(e)
        return None
