"""Helpers the workload controllers share: pod state, owner references, pods from templates.

Mirrors the parts of Kubernetes' controller_utils.go / podutil that decide what a
controller counts (active, ready, available) so that every controller agrees.
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import random
from datetime import datetime
from typing import Any, Awaitable, Callable, ClassVar, Iterator, TypeVar

import orjson

from pklib.client import Client
from pklib.controller import Controller, ControllerContext, Expectations
from pklib.errors import ApiError, ConnectionFailed, is_already_exists, is_not_found
from pklib.informer import Informer, Obj, Store
from pklib.objects import key_of
from pklib.objects import controller_of as controller_ref
from pklib.api.timefmt import now, now_rfc3339, parse_time
from pklib.objects import meta, owner_reference
from pklib.resources import CONTROLLERREVISIONS, PODS, Resource
from pklib.selectors import LabelSelector, SelectorError, selector_from_match

T = TypeVar("T")

# Kubernetes' rand.SafeEncodeString alphabet: no vowels (no words), no confusable 0/1/3.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


__all__ = ["controller_ref", "meta", "now", "now_rfc3339", "owner_reference", "parse_time"]


# -- pods -------------------------------------------------------------------------------------

def is_terminating(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def is_pod_active(pod: Obj) -> bool:
    """Counts toward replicas: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_terminating(pod)


def pod_ready_condition(pod: Obj) -> dict[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = pod_ready_condition(pod)
    return c is not None and c.get("status") == "True"


def available_in(pod: Obj, min_ready_seconds: int, at: datetime | None = None) -> float | None:
    """Seconds until the pod counts as available: 0 if it is, None if it is not ready at all."""
    c = pod_ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = parse_time(c.get("lastTransitionTime"))
    if since is None:
        return 0.0
    left = min_ready_seconds - ((at or now()) - since).total_seconds()
    return max(0.0, left)


def is_pod_available(pod: Obj, min_ready_seconds: int, at: datetime | None = None) -> bool:
    return available_in(pod, min_ready_seconds, at) == 0.0


# -- selectors and owners -------------------------------------------------------------------------

def selector_of(obj: Obj) -> LabelSelector | None:
    """The object's spec.selector; None if missing or invalid (such an object selects nothing)."""
    sel = (obj.get("spec") or {}).get("selector")
    if not sel:
        return None
    if obj.get("kind") == "ReplicationController" and isinstance(sel, dict):
        sel = {"matchLabels": sel}  # an equality selector: a plain label map
    try:
        parsed = selector_from_match(sel)
    except SelectorError:
        return None
    return None if parsed.empty() else parsed


def pod_from_template(template: Obj, owner: Obj, name: str | None = None,
                      generate_name: str | None = None) -> Obj:
    """A Pod body from a pod template, owned (controller=true) by `owner`."""
    tmpl = copy.deepcopy(template or {})
    tmeta = tmpl.get("metadata") or {}
    pmeta: dict[str, Any] = {
        "namespace": meta(owner)["namespace"],
        "labels": dict(tmeta.get("labels") or {}),
        "annotations": dict(tmeta.get("annotations") or {}),
        "ownerReferences": [owner_reference(owner)],
    }
    if name:
        pmeta["name"] = name
    else:
        pmeta["generateName"] = generate_name or f"{meta(owner)['name']}-"
    if tmeta.get("finalizers"):
        pmeta["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pmeta, "spec": tmpl.get("spec") or {}}


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A short, stable, label-safe hash of a pod template (the pod-template-hash label)."""
    data = orjson.dumps(template or {}, option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += str(collision_count).encode()
    n = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    out = []
    for _ in range(10):
        n, r = divmod(n, len(_SAFE))
        out.append(_SAFE[r])
    return "".join(out)


def random_suffix(length: int = 5) -> str:
    """The random tail of a generated name (Kubernetes' generateName suffix)."""
    return "".join(random.choices(_SAFE, k=length))


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """Resolve maxSurge / maxUnavailable style values: 2 or "25%" of total."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        pct = int(text[:-1])
        whole, rest = divmod(pct * total, 100)
        return whole + (1 if round_up and rest else 0)
    return int(text)


# A create whose answer was lost is tried again this many times, after these delays (seconds, doubling).
CREATE_ATTEMPTS, CREATE_RETRY = 4, 0.25


async def create_owned(client: Client, res: Resource, obj: Obj) -> Obj:
    """Create `obj`, named by the caller and controlled by its owner, for sure once. A request whose answer was
    lost with its connection (an apiserver killed while it wrote) may have been carried out: the same create is
    sent again, and AlreadyExists for an object of that name and controller says it was. A controller that instead
    counted the creation as failed would make a second pod in its place at its next sync: one more than the
    Deployment's replicas + maxSurge until it deletes one."""
    owner = (controller_ref(obj) or {}).get("uid")
    for attempt in range(CREATE_ATTEMPTS):
        try:
            return await client.create(res, obj)
        except ConnectionFailed:
            if attempt == CREATE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(CREATE_RETRY * 2 ** attempt)
        except ApiError as e:
            if not (attempt and is_already_exists(e)):
                raise
            existing = await client.get(res, meta(obj)["name"], meta(obj).get("namespace"))
            if owner is None or (controller_ref(existing) or {}).get("uid") != owner:
                raise
            return existing
    raise AssertionError("unreachable")


async def slow_start_batch(count: int, create: Callable[[int], Awaitable[Any]],
                           initial: int = 1) -> tuple[int, ApiError | None]:
    """Kubernetes' slowStartBatch: call create(0..count-1) in batches of 1, 2, 4, ..., stopping after the first
    batch with a failure, so that a template the API rejects costs one call, not hundreds.

    Returns how many calls succeeded and the first error (calls never made count as not succeeded)."""
    done = succeeded = 0
    batch = initial
    first_error: ApiError | None = None
    while done < count and first_error is None:
        batch = min(batch, count - done)
        results = await asyncio.gather(*(create(done + i) for i in range(batch)), return_exceptions=True)
        done += batch
        for r in results:
            if not isinstance(r, BaseException):
                succeeded += 1
            elif first_error is None:
                first_error = r if isinstance(r, ApiError) else ApiError(
                    {"code": 500, "reason": "InternalError", "message": str(r)})
        batch *= 2
    return succeeded, first_error


async def delete_pods(client: Client, expectations: Expectations, key: str,
                      victims: list[Obj]) -> tuple[list[Obj], ApiError | None]:
    """Delete `victims` together, each deletion expected for `key` until seen; (the pods deleted, the first error
    other than NotFound). A deletion that failed is no longer expected."""
    expectations.expect_deletions(key, [key_of(p) for p in victims])
    results = await asyncio.gather(*(client.delete(PODS, meta(p)["name"], meta(p)["namespace"]) for p in victims),
                                   return_exceptions=True)
    deleted, first_error = [], None
    for pod, r in zip(victims, results):
        if not isinstance(r, BaseException):
            deleted.append(pod)
            continue
        expectations.deletion_observed(key, key_of(pod))
        if not (isinstance(r, ApiError) and is_not_found(r)) and first_error is None:
            first_error = r if isinstance(r, ApiError) else ApiError(
                {"code": 500, "reason": "InternalError", "message": str(r)})
    return deleted, first_error


async def unless_gone(call: Awaitable[T]) -> T | None:
    """Await a write to one object; None when the object is gone (there is nothing left to write to)."""
    try:
        return await call
    except ApiError as e:
        if not is_not_found(e):
            raise
        return None


async def write_status(client: Client, res: Resource, obj: Obj, status: dict[str, Any]) -> None:
    """Replace `obj`'s status through the status subresource; an object deleted meanwhile needs none."""
    body = copy.deepcopy(obj)
    body["status"] = status
    await unless_gone(client.update_status(res, body))


def selecting(store: Store, obj: Obj) -> Iterator[Obj]:
    """The objects of `store` in obj's namespace whose spec.selector matches obj's labels (the owners that may
    adopt an orphan)."""
    labels = meta(obj).get("labels")
    for candidate in store.by_index("namespace", meta(obj)["namespace"]):
        sel = selector_of(candidate)
        if sel is not None and sel.matches(labels):
            yield candidate


# -- controllers whose objects own pods directly ------------------------------------------------

class PodOwnerController(Controller):
    """Base of the ReplicaSet, DaemonSet and StatefulSet controllers: their objects own pods directly.

    Pod events map to the owner's work-queue key and are counted in `expectations`, which hold a
    sync back until the cache has seen the creates and deletes the controller itself made.
    Subclasses set `owner_kind` and return their owner informer's store from `owner_store()`.
    """
    owner_kind: ClassVar[str] = ""

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.expectations = Expectations()

    def owner_store(self) -> Store:
        raise NotImplementedError

    def _owner_key(self, pod: Obj) -> str | None:
        """The key of the owner that controls `pod`, if the cache holds it with the uid the pod's reference
        names (a namesake created after the owner was deleted does not own the pod)."""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.owner_kind:
            return None
        key = f"{meta(pod)['namespace']}/{ref['name']}"
        owner = self.owner_store().get(key)
        return key if owner is not None and meta(owner).get("uid") == ref.get("uid") else None

    def _requeue_owner(self, obj: Obj) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)

    def watch_revisions(self) -> Informer:
        """The owners' ControllerRevisions: one deleted or changed behind our back is recreated or renumbered by
        its owner's next sync."""
        return self.watch(CONTROLLERREVISIONS, None, lambda old, new: self._requeue_owner(new), self._requeue_owner)

    def _owned_pod_added(self, pod: Obj) -> bool:
        """Count a new pod (or one already terminating) against its owner's expectations and queue the owner;
        False when no owner of ours controls it."""
        key = self._owner_key(pod)
        if key is None:
            return False
        self.expectations.creation_observed(key)
        if meta(pod).get("deletionTimestamp"):
            self.expectations.deletion_observed(key, key_of(pod))
        self.queue.add(key)
        return True

    def _owned_pod_updated(self, pod: Obj) -> bool:
        """Queue the owner of a changed pod (a terminating one no longer counts as expected); False when no owner
        of ours controls it."""
        key = self._owner_key(pod)
        if key is None:
            return False
        if meta(pod).get("deletionTimestamp"):
            self.expectations.deletion_observed(key, key_of(pod))
        self.queue.add(key)
        return True

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, key_of(pod))
            self.queue.add(key)

    def _owner_to_sync(self, key: str) -> Obj | None:
        """The owner for `sync(key)`; None once it is gone, which also drops its expectations."""
        owner = self.owner_store().get(key)
        if owner is None:
            self.expectations.forget(key)
        return owner
