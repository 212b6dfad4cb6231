"""Patches as the Kubernetes API applies them.

- `merge_patch` — JSON merge patch (RFC 7386): maps merge, null deletes, lists replace.
- `json_patch` — JSON patch (RFC 6902), via the `jsonpatch` library.
- `strategic_merge_patch` — Kubernetes' strategic merge patch: like a merge patch, but
  lists of objects that have a merge key (containers by name, env by name, ...) merge
  element by element, and the directives `$patch`, `$retainKeys`, `$setElementOrder/<f>`,
  `$deleteFromPrimitiveList/<f>` are honoured.
- `three_way_strategic_patch` — what `kubectl apply` (client-side) sends: the changes from
  the live object to the new manifest, plus deletions of what the last applied manifest had
  and the new one dropped; fields only the server or other writers set are left alone.

Kubernetes reads merge keys from Go struct tags; we have no Go types, so the table below
names them by field path (list elements do not add a path segment), which works for a Pod
and for the pod templates inside workloads alike. Every function returns a new object and
never mutates its arguments.
"""
from __future__ import annotations

import copy
import sys
from typing import Any

__all__ = ["PatchError", "PatchTooLargeError", "merge_patch", "json_patch", "strategic_merge_patch",
           "three_way_strategic_patch", "merge_key_for", "MAX_JSON_PATCH_OPERATIONS", "MAX_JSON_PATCH_COPY_BYTES"]

# Kubernetes' limits: a JSON patch has at most 10,000 operations, and its `copy` operations together
# copy at most 3 MiB (the request limit; without it ~30 copies of a doubling value fill the memory).
MAX_JSON_PATCH_OPERATIONS = 10_000
MAX_JSON_PATCH_COPY_BYTES = 3 * 1024 * 1024


class PatchError(ValueError):
    """A patch that cannot be applied; the message says why, for a 4xx to the user."""


class PatchTooLargeError(PatchError):
    """A patch over the operation or copy limits (413 RequestEntityTooLarge in Kubernetes)."""


# --- merge keys -------------------------------------------------------------------------

# A primitive list whose patch strategy is "merge" (union) rather than replace.
PRIMITIVE_MERGE = "$primitive"

_POD_SPEC_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "schedulingGates": "name",
    "resourceClaims": "name",
}
_CONTAINER_KEYS = {
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "resizePolicy": "resourceName",
}
# Where a PodSpec lives: a Pod's spec, a workload's template, a CronJob's job template.
_POD_SPEC_PATHS = (("spec",), ("spec", "template", "spec"), ("spec", "jobTemplate", "spec", "template", "spec"),
                   ("template", "spec"))
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def _build_table() -> dict[tuple[str, ...], str]:
    table: dict[tuple[str, ...], str] = {}
    for root in _POD_SPEC_PATHS:
        for field, key in _POD_SPEC_KEYS.items():
            table[root + (field,)] = key
        for clist in _CONTAINER_LISTS:
            for field, key in _CONTAINER_KEYS.items():
                table[root + (clist, field)] = key
    table[("spec", "ports")] = "port"  # Service ports (a Pod spec has no `ports`)
    table[("status", "conditions")] = "type"
    table[("status", "addresses")] = "type"  # Node addresses
    return table


_TABLE = _build_table()
# Maps whose patch strategy is retainKeys: a 3-way patch lists the keys the manifest keeps, so
# that switching a union (Deployment strategy Recreate, a volume's source) drops the old member.
RETAIN_KEYS_PATHS = frozenset({("spec", "strategy")} | {root + ("volumes",) for root in _POD_SPEC_PATHS})
# Suffix rules that hold wherever the field appears (also in templates' metadata).
_SUFFIX_RULES: dict[tuple[str, ...], str] = {
    ("metadata", "finalizers"): PRIMITIVE_MERGE,
    ("metadata", "ownerReferences"): "uid",
    ("spec", "finalizers"): PRIMITIVE_MERGE,  # Namespace spec.finalizers
}


def merge_key_for(path: tuple[str, ...]) -> str | None:
    """The merge key of the list at `path`, PRIMITIVE_MERGE for union lists, None for replace."""
    key = _TABLE.get(path)
    if key is not None:
        return key
    for suffix, rule in _SUFFIX_RULES.items():
        if path[-len(suffix):] == suffix:
            return rule
    return None


# --- RFC 7386 / RFC 6902 ----------------------------------------------------------------

def _json_copy(doc: Any) -> Any:
    """A deep copy of a JSON document: an orjson round trip (several times faster than deepcopy) where orjson is
    loaded already (every component), else deepcopy: a `pkctl apply` copies a few small documents, not worth
    orjson's ~10 ms of imports (see pklib/rest.py). deepcopy also takes what orjson cannot encode (integers past
    64 bits, non-string keys)."""
    orjson = sys.modules.get("orjson")
    if orjson is not None:
        try:
            return orjson.loads(orjson.dumps(doc))
        except (TypeError, orjson.JSONEncodeError):
            pass
    return copy.deepcopy(doc)


def merge_patch(obj: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return _json_copy(patch)
    result = _json_copy(obj) if isinstance(obj, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Merge `patch` into `target` (a private copy) in place; what the patch brings is copied."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            current = target.get(k)
            if not isinstance(current, dict):
                current = target[k] = {}
            _merge_into(current, v)
        else:
            target[k] = _json_copy(v) if isinstance(v, list) else v


def json_patch(obj: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch; a failing `test` op or a bad path raises PatchError, a patch over the limits
    (operations, bytes copied) PatchTooLargeError."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchTooLargeError(f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
                                 f"got {len(ops)}")
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError(f"JSON patch operation {i} must be an object with an \"op\" field")
    import jsonpatch  # on the first JSON patch: a `pkctl apply` (a merge patch at most) starts without it
    import jsonpointer
    import orjson
    doc = copy.deepcopy(obj)
    copied = 0
    try:
        for op in ops:
            if op["op"] == "copy" and isinstance(op.get("from"), str):
                # Measured before copying: the copy itself is what must not happen past the limit.
                copied += len(orjson.dumps(jsonpointer.resolve_pointer(doc, op["from"])))
                if copied > MAX_JSON_PATCH_COPY_BYTES:
                    raise PatchTooLargeError(f"Unable to complete the copy, the accumulated size of the copied values "
                                             f"exceeds the limit of {MAX_JSON_PATCH_COPY_BYTES} bytes")
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        return doc
    except jsonpatch.JsonPatchTestFailed as e:
        raise PatchError(f"the JSON patch test failed: {e}") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise PatchError(f"the JSON patch cannot be applied: {e}") from None
    except (TypeError, KeyError, IndexError, ValueError, orjson.JSONEncodeError) as e:
        if isinstance(e, PatchError):
            raise
        raise PatchError(f"the JSON patch cannot be applied: {e}") from None


# --- strategic merge patch --------------------------------------------------------------

_PATCH = "$patch"
_RETAIN = "$retainKeys"
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def _where(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<root>"


def strategic_merge_patch(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a strategic merge patch to `obj`, returning the new object."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    if not isinstance(obj, dict):
        raise PatchError("a strategic merge patch applies to a JSON object")
    result = _merge_map(copy.deepcopy(obj), patch, ())
    return result if result is not None else {}


def _merge_map(original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """Merge `patch` into `original` (which this owns and may change). None means: delete this map."""
    directive = patch.get(_PATCH)
    if directive is not None:
        if directive == "delete":
            return None
        if directive == "replace":
            return _clean_map(patch, path)
        if directive != "merge":
            raise PatchError(f"unknown patch directive {_PATCH}: {directive!r} at {_where(path)}")

    retain = patch.get(_RETAIN)
    if retain is not None:
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise PatchError(f"{_RETAIN} must be a list of field names at {_where(path)}")
        original = {k: v for k, v in original.items() if k in retain}

    # Primitive deletions first, so that a same-patch addition of the value wins.
    for k, v in patch.items():
        if k.startswith(_DELETE_PRIMITIVE):
            field = k[len(_DELETE_PRIMITIVE):]
            if not isinstance(v, list):
                raise PatchError(f"{k} must be a list at {_where(path)}")
            current = original.get(field)
            if isinstance(current, list):
                original[field] = [x for x in current if x not in v]

    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            original.pop(k, None)
            continue
        sub = path + (k,)
        cur = original.get(k)
        if isinstance(v, dict):
            merged = _merge_map(cur if isinstance(cur, dict) else {}, v, sub)
            if merged is None:
                original.pop(k, None)
            else:
                original[k] = merged
        elif isinstance(v, list):
            original[k] = _merge_list(cur if isinstance(cur, list) else [], v, sub)
        else:
            original[k] = v

    for k, order in patch.items():
        if k.startswith(_ORDER):
            field = k[len(_ORDER):]
            if not isinstance(order, list):
                raise PatchError(f"{k} must be a list at {_where(path)}")
            if isinstance(original.get(field), list):
                original[field] = _apply_order(original[field], order, merge_key_for(path + (field,)))
    return original


def _clean_map(value: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    merged = _merge_map({}, {k: v for k, v in value.items() if k != _PATCH}, path)
    return merged if merged is not None else {}


def _clean(value: Any, path: tuple[str, ...]) -> Any:
    """A patch value taken as is: drop directives and nulls (they mean nothing without an original)."""
    if isinstance(value, dict):
        return _clean_map(value, path)
    if isinstance(value, list):
        return _merge_list([], value, path)
    return value


def _merge_list(original: list[Any], patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    replace = [e for e in patch if isinstance(e, dict) and e.get(_PATCH) == "replace" and len(e) == 1]
    if replace:
        rest = [e for e in patch if not (isinstance(e, dict) and e.get(_PATCH) == "replace" and len(e) == 1)]
        return [_clean(e, path) for e in rest]
    key = merge_key_for(path)
    if key is None:
        for e in patch:
            if isinstance(e, dict) and _PATCH in e:
                raise PatchError(f"{_PATCH} directive in a list without a merge key at {_where(path)}")
        return [_clean(e, path) for e in patch]
    if key == PRIMITIVE_MERGE:
        out = list(original)
        for e in patch:
            if isinstance(e, (dict, list)):
                raise PatchError(f"{_where(path)} is a list of values, got an object")
            if e not in out:
                out.append(e)
        return out
    out = list(original)
    for e in patch:
        if not isinstance(e, dict):
            raise PatchError(f"{_where(path)}: list element {e!r} must be an object with merge key {key!r}")
        if key not in e:
            raise PatchError(f"{_where(path)}: list element does not contain the merge key {key!r}")
        idx = _find(out, key, e[key])
        if e.get(_PATCH) == "delete":
            out = [x for x in out if not (isinstance(x, dict) and x.get(key) == e[key])]
            continue
        if idx is None:
            out.append(_clean(e, path))
        else:
            merged = _merge_map(out[idx] if isinstance(out[idx], dict) else {}, e, path)
            if merged is None:
                del out[idx]
            else:
                out[idx] = merged
    return out


def _find(items: list[Any], key: str, value: Any) -> int | None:
    for i, x in enumerate(items):
        if isinstance(x, dict) and x.get(key) == value:
            return i
    return None


def _apply_order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """Reorder per `$setElementOrder`: the items the order lists take the positions that listed
    items hold, in the listed order; items it does not list (set by others) keep their places."""
    keyed = key is not None and key != PRIMITIVE_MERGE

    def ident(x: Any) -> Any:
        return x.get(key) if keyed and isinstance(x, dict) else x

    wanted = [o.get(key) if keyed and isinstance(o, dict) else o for o in order]
    listed = [x for w in wanted for x in items if ident(x) == w]
    slots = iter(listed)
    return [next(slots) if ident(x) in wanted else x for x in items]


# --- three-way patch (client-side apply) ------------------------------------------------

def three_way_strategic_patch(last_applied: dict[str, Any] | None, modified: dict[str, Any],
                              current: dict[str, Any]) -> dict[str, Any]:
    """The strategic merge patch that turns `current` into `modified`, deleting what
    `last_applied` had and `modified` no longer has; other fields of `current` stay."""
    if not isinstance(modified, dict) or not isinstance(current, dict):
        raise PatchError("three-way patch needs objects")
    deletions = _diff(last_applied or {}, modified, (), additions=False, deletions=True)
    changes = _diff(current, modified, (), additions=True, deletions=False)
    return _combine(deletions, changes, ())


def _diff(old: dict[str, Any], new: dict[str, Any], path: tuple[str, ...], *,
          additions: bool, deletions: bool) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    if deletions:
        for k in old:
            if k not in new:
                patch[k] = None
    for k, nv in new.items():
        sub = path + (k,)
        if k not in old:
            if additions:
                patch[k] = copy.deepcopy(nv)
            continue
        ov = old[k]
        if isinstance(ov, dict) and isinstance(nv, dict):
            d = _diff(ov, nv, sub, additions=additions, deletions=deletions)
            if d:
                if sub in RETAIN_KEYS_PATHS:
                    d[_RETAIN] = sorted(nv)
                patch[k] = d
        elif isinstance(ov, list) and isinstance(nv, list):
            _diff_list(patch, k, ov, nv, sub, additions=additions, deletions=deletions)
        elif ov != nv and additions:
            patch[k] = copy.deepcopy(nv)
    return patch


def _diff_list(patch: dict[str, Any], field: str, old: list[Any], new: list[Any], path: tuple[str, ...], *,
               additions: bool, deletions: bool) -> None:
    key = merge_key_for(path)
    if key == PRIMITIVE_MERGE:
        added = [x for x in new if x not in old]
        removed = [x for x in old if x not in new]
        if additions and added:
            patch[field] = added
        if deletions and removed:
            patch[_DELETE_PRIMITIVE + field] = removed
        if (additions and added) or (deletions and removed) or (additions and _order(old, new) != new):
            patch[_ORDER + field] = list(new)
        return
    keyed = key is not None and all(isinstance(x, dict) and key in x for x in old + new)
    if not keyed:
        if old != new and additions:
            patch[field] = copy.deepcopy(new)
        return
    assert key is not None
    items: list[Any] = []
    new_ids = [x[key] for x in new]
    if deletions:
        for x in old:
            if x[key] not in new_ids:
                items.append({key: x[key], _PATCH: "delete"})
    for x in new:
        idx = _find(old, key, x[key])
        if idx is None:
            if additions:
                items.append(copy.deepcopy(x))
            continue
        d = _diff(old[idx], x, path, additions=additions, deletions=deletions)
        if d:
            d[key] = x[key]
            if path in RETAIN_KEYS_PATHS:
                d[_RETAIN] = sorted(x)
            items.append(d)
    old_ids = [x[key] for x in old]
    reordered = additions and [i for i in old_ids if i in new_ids] != [i for i in new_ids if i in old_ids]
    if items or reordered:
        if items:
            patch[field] = items
        patch[_ORDER + field] = [{key: i} for i in new_ids]


def _order(old: list[Any], new: list[Any]) -> list[Any]:
    """`new`'s items in the order they have in `old` (to detect a pure reordering)."""
    return [x for x in old if x in new] + [x for x in new if x not in old]


def _combine(a: dict[str, Any], b: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """Union of two patches for the same object (deletions `a`, changes `b`)."""
    out = copy.deepcopy(a)
    for k, bv in b.items():
        av = out.get(k)
        if isinstance(av, dict) and isinstance(bv, dict):
            out[k] = _combine(av, bv, path + (k,))
        elif isinstance(av, list) and isinstance(bv, list) and not k.startswith(_ORDER):
            key = merge_key_for(path + (k,)) if not k.startswith("$") else PRIMITIVE_MERGE
            if key and key != PRIMITIVE_MERGE:
                merged = list(av)
                for e in bv:
                    idx = _find(merged, key, e.get(key)) if isinstance(e, dict) else None
                    if idx is None:
                        merged.append(copy.deepcopy(e))
                    else:
                        merged[idx] = _combine(merged[idx], e, path + (k,))
                out[k] = merged
            else:
                out[k] = av + [x for x in bv if x not in av]
        else:
            out[k] = copy.deepcopy(bv)
    return out
