"""Helpers for object metadata shared by every component (objects are plain dicts)."""
from __future__ import annotations

from typing import Any, Mapping


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def name_of(obj: Mapping[str, Any]) -> str:
    return meta(obj).get("name") or ""


def namespace_of(obj: Mapping[str, Any]) -> str:
    return meta(obj).get("namespace") or ""


def key_of(obj: Mapping[str, Any]) -> str:
    """`namespace/name` (or `name` for cluster-scoped objects): the work-queue key."""
    ns = namespace_of(obj)
    return f"{ns}/{name_of(obj)}" if ns else name_of(obj)


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a work-queue key; namespace "" for cluster-scoped keys."""
    ns, _, name = key.rpartition("/")
    return ns, name


def controller_of(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The owner reference with controller=true, if any."""
    refs: list[dict[str, Any]] = meta(obj).get("ownerReferences") or []
    return next((ref for ref in refs if ref.get("controller")), None)


def owner_reference(owner: Mapping[str, Any], controller: bool = True, block_owner_deletion: bool = True
                    ) -> dict[str, Any]:
    m = meta(owner)
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": m["name"], "uid": m["uid"],
            "controller": controller, "blockOwnerDeletion": block_owner_deletion}


def is_owned_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid for ref in meta(obj).get("ownerReferences") or [])


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def has_finalizer(obj: Mapping[str, Any], finalizer: str) -> bool:
    return finalizer in (meta(obj).get("finalizers") or [])
