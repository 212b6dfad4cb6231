"""ObjectMeta rules shared by every kind: names, labels, annotations, finalizers, owners."""
from __future__ import annotations

from typing import Any, Callable

from pklib import validation as v

from .fields import Cause, Path, forbidden, immutable, invalid, required, too_long

NameCheck = Callable[[str], list[str]]

# Kubernetes' TotalAnnotationSizeLimitB.
ANNOTATIONS_MAX_BYTES = 256 * 1024
_ORPHAN = "orphan"
_FOREGROUND = "foregroundDeletion"


def as_dict(value: Any) -> dict[str, Any]:
    """The value if it is a dict, else an empty one: defaulting must not trip on malformed input."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def validate_labels(labels: Any, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in as_dict(labels).items():
        causes += [invalid(path, key, e) for e in v.is_qualified_name(key)]
        if isinstance(value, str):
            causes += [invalid(path, value, e) for e in v.is_label_value(value)]
    return causes


def validate_meta(obj: dict[str, Any], old: dict[str, Any] | None, name_check: NameCheck,
                  namespaced: bool) -> list[Cause]:
    meta = as_dict(obj.get("metadata"))
    path = Path("metadata")
    causes: list[Cause] = []
    name, generate = meta.get("name"), meta.get("generateName")
    if name:
        causes += [invalid(path.child("name"), name, e) for e in name_check(name)]
    elif generate:
        # The server appends a random suffix, so a trailing dash in the prefix is fine.
        prefix = generate[:-1] if generate.endswith("-") else generate
        causes += [invalid(path.child("generateName"), generate, e) for e in name_check(prefix)]
    else:
        causes.append(required(path.child("name"), "name or generateName is required"))

    ns = meta.get("namespace")
    if namespaced and ns:
        causes += [invalid(path.child("namespace"), ns, e) for e in v.is_dns1123_label(ns)]
    elif not namespaced and ns:
        causes.append(forbidden(path.child("namespace"), "not allowed on this type"))

    causes += validate_labels(meta.get("labels"), path.child("labels"))
    causes += _validate_annotations(meta.get("annotations"), path.child("annotations"))
    causes += _validate_finalizers(meta.get("finalizers"), path.child("finalizers"))
    causes += _validate_owners(meta.get("ownerReferences"), path.child("ownerReferences"))

    if old is not None:
        old_meta = as_dict(old.get("metadata"))
        for field in ("name", "namespace"):
            if old_meta.get(field) and meta.get(field) != old_meta.get(field):
                causes.append(immutable(path.child(field), meta.get(field)))
        if meta.get("uid") and old_meta.get("uid") and meta["uid"] != old_meta["uid"]:
            causes.append(immutable(path.child("uid"), meta["uid"]))
    return causes


def _validate_annotations(annotations: Any, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    size = 0
    for key, value in as_dict(annotations).items():
        causes += [invalid(path, key, e) for e in v.is_qualified_name(key.lower())]
        size += len(key) + len(value if isinstance(value, str) else "")
    if size > ANNOTATIONS_MAX_BYTES:
        causes.append(too_long(path, ANNOTATIONS_MAX_BYTES))
    return causes


def _validate_finalizers(finalizers: Any, path: Path) -> list[Cause]:
    items = [f for f in as_list(finalizers) if isinstance(f, str)]
    causes: list[Cause] = []
    for f in items:
        causes += [invalid(path, f, e) for e in v.is_qualified_name(f)]
    if _ORPHAN in items and _FOREGROUND in items:
        causes.append(invalid(path, items, "finalizer orphan and foregroundDeletion cannot be both set"))
    return causes


def _validate_owners(owners: Any, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    controllers = []
    for i, ref in enumerate(as_list(owners)):
        p = path.index(i)
        ref = as_dict(ref)
        for field, word in (("apiVersion", "version"), ("kind", "kind"), ("name", "name"), ("uid", "uid")):
            if ref.get(field) == "":
                causes.append(invalid(p.child(field), "", f"{word} must not be empty"))
        if ref.get("controller") is True:
            controllers.append(ref.get("name", ""))
    if len(controllers) > 1:
        names = ", ".join(controllers)
        causes.append(invalid(path, controllers, f"Only one reference can have Controller set to true. "
                                                 f"Found \"true\" in references for {names}"))
    return causes
