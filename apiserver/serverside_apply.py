"""Server-side apply: PATCH with `Content-Type: application/apply-patch+yaml` (`kubectl apply --server-side`).

The body is the manager's whole intent for the object. The server merges it into the live
object (keyed lists by merge key, other lists atomic), records in `metadata.managedFields`
which fields this manager set, removes fields the manager set before and no longer sets
(unless another manager also owns them), and refuses with 409 Conflict, listing the fields,
when the intent changes a field another manager owns — unless `force=true`, which moves
ownership to this manager.

Approximation (said plainly): only apply operations are tracked. Writes through PUT and the
other patch types keep the recorded managedFields but do not take ownership, so they do not
cause conflicts for later applies as Kubernetes' "Update" entries would.
"""
from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from pklib import patch as patching
from pklib.api.timefmt import now_rfc3339
from pklib.resources import Resource

from . import fieldsets, fieldvalidation
from .bodies import parse_yaml, read_raw
from .handlers_objects import Objects, object_key, served
from .status import StatusError, bad_request, json_response
from .storage.interface import Entry

CONTENT_TYPE = "application/apply-patch+yaml"


def is_apply(request: web.Request) -> bool:
    return request.headers.get("Content-Type", "").split(";")[0].strip() == CONTENT_TYPE


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", ""):
        raise bad_request(f"{name}: invalid boolean value {value!r}")
    return value in ("true", "1")


async def _read_intent(request: web.Request, res: Resource, name: str) -> dict[str, Any]:
    raw = await read_raw(request)
    body = parse_yaml(raw) if raw.strip() else None
    if not isinstance(body, dict):
        raise bad_request("an apply patch must be an object (the configuration to apply)")
    # Kubernetes insists on both: the apply body is a complete, self-describing configuration.
    if body.get("apiVersion") != res.api_version or body.get("kind") != res.kind:
        raise bad_request(f"apply patch must have apiVersion {res.api_version!r} and kind {res.kind!r}, got "
                          f"{body.get('apiVersion')!r} and {body.get('kind')!r}")
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if meta.get("name", name) != name:
        raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
    meta["name"] = name
    return body


def _entry(manager: str, res: Resource, fields: set[fieldsets.FieldPath]) -> dict[str, Any]:
    return {"manager": manager, "operation": "Apply", "apiVersion": res.api_version, "time": now_rfc3339(),
            "fieldsType": "FieldsV1", "fieldsV1": fieldsets.to_fields_v1(fields)}


def _conflict(conflicts: list[tuple[str, str, fieldsets.FieldPath]]) -> StatusError:
    causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {api}',
               "field": fieldsets.describe(p)} for m, api, p in conflicts]
    n = len(conflicts)
    lines = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
    message = (f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {causes[0]['message']}: {causes[0]['field']}"
               if n == 1 else f"Apply failed with {n} conflicts: {lines}")
    return StatusError(409, "Conflict", message, {"causes": causes})


def merge_intent(res: Resource, current: dict[str, Any], intent: dict[str, Any], manager: str, force: bool
                 ) -> dict[str, Any]:
    """The object after `manager` applies `intent` over `current` (pure; raises 409 on conflicts)."""
    applied = fieldsets.field_set(intent)
    managed = [m for m in (current.get("metadata") or {}).get("managedFields") or [] if isinstance(m, dict)]
    mine: set[fieldsets.FieldPath] = set()
    others: list[tuple[dict[str, Any], set[fieldsets.FieldPath]]] = []
    for m in managed:
        owned = fieldsets.from_fields_v1(m.get("fieldsV1"))
        if m.get("manager") == manager and m.get("operation") == "Apply":
            mine |= owned
        else:
            others.append((m, owned))
    conflicts = []
    for m, owned in others:
        for path in sorted(owned & applied):
            if path[-1] != fieldsets.ITEM and \
                    fieldsets.value_at(current, path) != fieldsets.value_at(intent, path):
                conflicts.append((str(m.get("manager")), str(m.get("apiVersion", res.api_version)), path))
    if conflicts and not force:
        raise _conflict(conflicts)
    taken = {p for _, _, p in conflicts}
    owned_by_others: set[fieldsets.FieldPath] = set()
    kept: list[dict[str, Any]] = []
    for m, owned in others:
        owned -= taken
        owned_by_others |= owned
        if owned:
            kept.append(dict(m, fieldsV1=fieldsets.to_fields_v1(owned)))
    body = {k: v for k, v in intent.items() if k != "status"}
    try:
        merged = patching.strategic_merge_patch(copy.deepcopy(current), body)
    except patching.PatchError as e:
        raise StatusError(422, "Invalid", f"the configuration could not be applied: {e}") from None
    # Longest paths first, so that removing a list item does not hide the fields under it.
    for path in sorted(mine - applied - owned_by_others, key=len, reverse=True):
        fieldsets.remove(merged, path)
    merged.setdefault("metadata", {})["managedFields"] = [*kept, _entry(manager, res, applied)]
    return merged


async def apply(objects: Objects, request: web.Request, res: Resource, namespace: str | None, name: str,
                dry_run: bool) -> web.Response:
    manager = request.query.get("fieldManager") or ""
    if not manager:
        raise bad_request("PATCH requests of type application/apply-patch+yaml require a fieldManager")
    force = _flag(request, "force")
    intent = await _read_intent(request, res, name)
    fieldvalidation.check(request, res, intent)
    objects.check_identity(res, intent, namespace)
    for _ in range(2):  # a create that loses a race to another create becomes an update
        if await objects.storage.get(object_key(res, namespace, name)) is None:
            body = copy.deepcopy(intent)
            managed = [_entry(manager, res, fieldsets.field_set(intent))]
            try:
                return json_response(served(res, await objects.create(res, namespace, body, dry_run=dry_run,
                                                                      managed_fields=managed)), 201)
            except StatusError as e:
                if e.reason != "AlreadyExists":
                    raise
                continue

        def mutate(entry: Entry) -> dict[str, Any]:
            merged = merge_intent(res, served(res, copy.deepcopy(entry.value)), intent, manager, force)
            new = objects.merge_for_update(res, entry.value, merged, None)
            new["metadata"]["managedFields"] = merged["metadata"]["managedFields"]
            return new

        return json_response(served(res, await objects.guaranteed_update(res, namespace, name, mutate, dry_run)))
    raise StatusError(409, "Conflict", f'{res.plural} "{name}" is being created and deleted concurrently; retry')
