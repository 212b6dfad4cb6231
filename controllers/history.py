"""ControllerRevisions: the template history of DaemonSets and StatefulSets (Kubernetes' pkg/controller/history).

A revision stores, as its `data`, the strategic merge patch that puts the owner's pod template back
(`{"spec": {"template": {..., "$patch": "replace"}}}`), and a `revision` number that grows with each
template the owner rolls out. Its name is `<owner>-<hash>`, the hash being FNV-1 (32 bit) of the
canonical JSON of `data` plus, after name collisions, the owner's collisionCount: the same template
always gets the same name, so a restarted controller finds its revisions again instead of rolling pods.
A template that comes back reuses its old revision, whose number is bumped to the newest.
"""
from __future__ import annotations

import copy
from typing import Any

import orjson

from pklib.client import Client
from pklib.errors import ApiError, is_already_exists, is_conflict, is_not_found
from pklib.informer import Obj
from pklib.patch import strategic_merge_patch
from pklib.resources import CONTROLLERREVISIONS

from .util import meta, owner_reference


# The label a StatefulSet's revisions carry their hash in (history.ControllerRevisionHashLabel); a
# DaemonSet's revisions use the pod label below for it instead, as Kubernetes does.
HASH_LABEL = "controller.kubernetes.io/hash"
# On pods: which revision made them (a StatefulSet writes the revision name, a DaemonSet the hash).
POD_REVISION_LABEL = "controller-revision-hash"
# Kubernetes' rand.SafeEncodeString alphabet: no vowels, no confusable characters.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
# A collision needs two templates whose 32-bit hashes agree; more than a handful in a row is a bug.
MAX_COLLISIONS = 16


class RevisionError(Exception):
    """The history cannot be written (kept apart from ApiError: it is not one request that failed)."""


def template_patch(owner: Obj) -> Obj:
    """The revision data of `owner`: a strategic merge patch replacing spec.template with the current one.

    It has the shape Go gives the typed template (metadata.creationTimestamp null, `resources: {}` on
    every container) and sorted keys, so that kubectl, which compares its own encoding of the owner
    with the stored data byte for byte, sees the same bytes for the same template."""
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    spec = template.setdefault("spec", {})
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            container.setdefault("resources", {})
    template["$patch"] = "replace"
    return dict(orjson.loads(canonical({"spec": {"template": template}})))


def canonical(data: Any) -> bytes:
    """Compact JSON with sorted keys: Go's encoding of the same map (what Kubernetes hashes)."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def fnv1_32(payload: bytes) -> int:
    """FNV-1 (not 1a), 32 bit: Go's hash/fnv New32, which Kubernetes hashes revisions with."""
    h = 0x811C9DC5
    for byte in payload:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= byte
    return h


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: each character mapped into an alphabet that spells no words."""
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in text)


def hash_data(data: Any, collision_count: int | None = None) -> str:
    """history.HashControllerRevision: FNV-1 32 of the data (and the probe), safe-encoded decimal."""
    payload = canonical(data) + (str(collision_count).encode() if collision_count is not None else b"")
    return safe_encode(str(fnv1_32(payload)))


def revision_name(owner_name: str, hash_: str) -> str:
    # Names stay within 253 characters: the owner's part is cut to 223 (ControllerRevisionName).
    return f"{owner_name[:223]}-{hash_}"


def new_revision(owner: Obj, data: Obj, number: int, collision_count: int, hash_label: str) -> Obj:
    """An unsaved revision of `owner`: template labels (so the owner's selector finds it), the owner's
    annotations (change-cause as it was when this template was rolled out), a controller reference."""
    hash_ = hash_data(data, collision_count)
    labels = dict(((owner["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {})
    labels[hash_label] = hash_
    return {"apiVersion": CONTROLLERREVISIONS.api_version, "kind": CONTROLLERREVISIONS.kind,
            "metadata": {"name": revision_name(meta(owner)["name"], hash_), "namespace": meta(owner)["namespace"],
                         "labels": labels, "annotations": dict(meta(owner).get("annotations") or {}),
                         "ownerReferences": [owner_reference(owner)]},
            "data": data, "revision": number}


def sort_revisions(revisions: list[Obj]) -> list[Obj]:
    """By revision number; ties by creation time, then name (history.SortControllerRevisions)."""
    return sorted(revisions, key=lambda r: (int(r.get("revision") or 0), meta(r).get("creationTimestamp") or "",
                                            meta(r)["name"]))


def next_revision(revisions: list[Obj]) -> int:
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


def apply_revision(owner: Obj, revision: Obj) -> Obj:
    """A copy of `owner` with the template the revision recorded (ApplyRevision / applyDaemonSetHistory)."""
    return strategic_merge_patch(owner, revision.get("data") or {})


def stale_revisions(old: list[Obj], live: set[str], limit: int) -> list[Obj]:
    """The oldest revisions beyond `limit` that no live pod (nor the owner's status) still names."""
    history = [r for r in sort_revisions(old) if meta(r)["name"] not in live]
    return history[:max(0, len(history) - limit)]


async def create_revision(client: Client, owner: Obj, revision: Obj, collision_count: int,
                          hash_label: str) -> tuple[Obj, int]:
    """Create `revision` (built with `collision_count`); on a name taken by other data, count a collision
    and try the next name. Returns the stored revision and the collision count that named it."""
    for _ in range(MAX_COLLISIONS):
        body = copy.deepcopy(revision)
        hash_ = hash_data(body["data"], collision_count)
        body["metadata"]["name"] = revision_name(meta(owner)["name"], hash_)
        body["metadata"]["labels"][hash_label] = hash_
        try:
            return await client.create(CONTROLLERREVISIONS, body), collision_count
        except ApiError as e:
            if not is_already_exists(e):
                raise
        try:
            existing = await client.get(CONTROLLERREVISIONS, body["metadata"]["name"], meta(owner)["namespace"])
        except ApiError as e:
            if is_not_found(e):
                continue  # deleted meanwhile: the same name is free again
            raise
        ours = any(ref.get("controller") and ref.get("uid") == meta(owner)["uid"]
                   for ref in meta(existing).get("ownerReferences") or [])
        if ours and existing.get("data") == body["data"]:
            return existing, collision_count  # made by an earlier sync whose result the cache has not shown yet
        collision_count += 1
    raise RevisionError(f"{MAX_COLLISIONS} ControllerRevision name collisions in a row for "
                        f"{meta(owner)['namespace']}/{meta(owner)['name']}")


async def renumber(client: Client, revision: Obj, number: int) -> Obj:
    """Set the revision's number (the template came back), re-reading it once on a write conflict."""
    current = revision
    for _ in range(2):
        if int(current.get("revision") or 0) == number:
            return current
        body = copy.deepcopy(current)
        body["revision"] = number
        try:
            return await client.update(CONTROLLERREVISIONS, body)
        except ApiError as e:
            if not is_conflict(e):
                raise
        current = await client.get(CONTROLLERREVISIONS, meta(revision)["name"], meta(revision)["namespace"])
    raise RevisionError(f"ControllerRevision {meta(revision)['name']} keeps changing; will retry")


async def delete_revisions(client: Client, revisions: list[Obj]) -> None:
    for r in revisions:
        try:
            await client.delete(CONTROLLERREVISIONS, meta(r)["name"], meta(r)["namespace"])
        except ApiError as e:
            if not is_not_found(e):
                raise
