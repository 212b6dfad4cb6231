"""Field sets for server-side apply: which fields a manager set, in Kubernetes' FieldsV1 form.

A field path is a tuple of elements as FieldsV1 writes them: `f:<field>` for a map field,
`k:{"name":"web"}` for an item of a list keyed by a merge key, `v:<json>` for a member of a
set-like primitive list, and `.` for "the list item itself". A set holds the leaves a
manager set, plus `.` entries for keyed items. Which lists are keyed comes from the same
merge-key table strategic merge patch uses (pklib/patch.py); other lists are atomic
(owned and replaced whole), as in Kubernetes' structured merge.
"""
from __future__ import annotations

import json
from typing import Any

from pklib import patch as patching

FieldPath = tuple[str, ...]
ITEM = "."
# Identity and server-owned fields: never part of what a manager owns.
_SKIP_TOP = {"apiVersion", "kind", "status"}
_SKIP_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
              "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "generateName"}


def _plain(path: FieldPath) -> tuple[str, ...]:
    """The field names of a path, as the merge-key table is indexed (list items share their list's path)."""
    return tuple(e[2:] for e in path if e.startswith("f:"))


def _item_key(item: Any, key: str) -> str | None:
    if isinstance(item, dict) and key in item:
        return "k:" + json.dumps({key: item[key]}, separators=(",", ":"), sort_keys=True)
    return None


def field_set(obj: dict[str, Any]) -> set[FieldPath]:
    """The fields `obj` (an applied configuration) sets."""
    out: set[FieldPath] = set()
    for k, v in obj.items():
        if k in _SKIP_TOP:
            continue
        if k == "metadata" and isinstance(v, dict):
            for mk, mv in v.items():
                if mk not in _SKIP_META:
                    _walk(mv, ("f:metadata", f"f:{mk}"), out)
            continue
        _walk(v, (f"f:{k}",), out)
    return out


def _walk(value: Any, path: FieldPath, out: set[FieldPath]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _walk(v, path + (f"f:{k}",), out)
        return
    if isinstance(value, list) and value:
        key = patching.merge_key_for(_plain(path))
        if key == patching.PRIMITIVE_MERGE and all(not isinstance(x, (dict, list)) for x in value):
            for x in value:
                out.add(path + ("v:" + json.dumps(x),))
            return
        if key is not None and key != patching.PRIMITIVE_MERGE:
            elements = [_item_key(item, key) for item in value]
            if all(elements):
                for item, element in zip(value, elements):
                    assert element is not None
                    out.add(path + (element, ITEM))
                    for k, v in item.items():
                        if k != key:
                            _walk(v, path + (element, f"f:{k}"), out)
                return
    out.add(path)  # a scalar, an empty map or list, or an atomic list: owned whole


# --- FieldsV1 (the nested form stored in metadata.managedFields) ----------------------------

def to_fields_v1(paths: set[FieldPath]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    return root


def from_fields_v1(doc: Any, prefix: FieldPath = ()) -> set[FieldPath]:
    out: set[FieldPath] = set()
    if not isinstance(doc, dict):
        return out
    for element, sub in doc.items():
        path = prefix + (element,)
        if isinstance(sub, dict) and sub:
            out |= from_fields_v1(sub, path)
        else:
            out.add(path)
    return out


# --- reading and removing fields of an object ------------------------------------------------

_MISSING = object()


def _step(node: Any, element: str) -> Any:
    if element.startswith("f:"):
        return node.get(element[2:], _MISSING) if isinstance(node, dict) else _MISSING
    if element.startswith("k:") and isinstance(node, list):
        wanted = json.loads(element[2:])
        for item in node:
            if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
                return item
        return _MISSING
    if element.startswith("v:") and isinstance(node, list):
        value = json.loads(element[2:])
        return value if value in node else _MISSING
    return _MISSING


def value_at(obj: Any, path: FieldPath) -> Any:
    """The value at `path` (`.` ends at the list item), or None when absent."""
    node = obj
    for element in path:
        if element == ITEM:
            break
        node = _step(node, element)
        if node is _MISSING:
            return None
    return node


def remove(obj: dict[str, Any], path: FieldPath) -> None:
    """Delete the field, list item (path ending in `.`) or set member at `path`; absent paths are fine."""
    if path and path[-1] == ITEM:
        path = path[:-1]
    parent: Any = obj
    for element in path[:-1]:
        parent = _step(parent, element)
        if parent is _MISSING:
            return
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith(("k:", "v:")) and isinstance(parent, list):
        target = _step(parent, last)
        if target is not _MISSING:
            parent.remove(target)


def describe(path: FieldPath) -> str:
    """A path as Kubernetes prints it in conflicts: `.spec.containers[name="web"].image`."""
    out = ""
    for element in path:
        if element.startswith("f:"):
            out += "." + element[2:]
        elif element.startswith("k:"):
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(element[2:]).items()) + "]"
        elif element.startswith("v:"):
            out += f"[{element[2:]}]"
    return out
