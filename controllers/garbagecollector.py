"""Garbage collector: ownerReferences -> cascading deletion.

- Background: an object whose owners are all gone is deleted; an owner that is
  gone is dropped from the references of an object that still has others.
- Foreground: an owner carrying the `foregroundDeletion` finalizer (set by the API
  server for propagationPolicy=Foreground) has its dependents deleted; once none
  of the blocking ones (blockOwnerDeletion=true) is left, the finalizer goes and
  the API server removes the owner.
- Orphan: an owner carrying the `orphan` finalizer has its references removed from
  every dependent, then the finalizer goes.

The graph is read from shared informers of every namespaced kind that commonly
has owners (the "owner" index maps an owner uid to its dependents), and of every
custom kind while its CustomResourceDefinition is established (operators' objects
own what they create). An owner that
the cache does not know is looked up live before anything is deleted, since a
cache that lags behind must never cause a deletion.
"""
from __future__ import annotations

import copy
import functools
from typing import Any

from pklib.api.customresources import established, preferred_row
from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError, is_conflict, is_not_found
from pklib.informer import Informer, Obj
from pklib.objects import key_of
from pklib.resources import CRDS, Resource, for_kind, lookup

from .util import meta, unless_gone

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"

# Kinds whose objects are owners or dependents in practice.
TRACKED = ("pods", "replicationcontrollers", "replicasets", "deployments", "daemonsets", "statefulsets", "jobs", "cronjobs", "services",
           "endpoints", "endpointslices", "configmaps", "secrets", "persistentvolumeclaims", "serviceaccounts",
           "leases", "controllerrevisions")


class GarbageCollector(Controller):
    name = "garbagecollector"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.informers: dict[str, Informer] = {}
        self.resources: dict[str, Resource] = {}
        # uid -> queue key of the object, for every tracked object in the caches.
        self.uids: dict[str, str] = {}
        for plural in TRACKED:
            res = lookup(plural)
            if res is None:
                continue
            self._track(plural, res)
        self.watch(CRDS, self._crd_changed, lambda old, new: self._crd_changed(new), self._crd_deleted)

    def _track(self, name: str, res: Resource) -> None:
        self.resources[name] = res
        self.informers[name] = self.watch(res, functools.partial(self._changed, name),
                                          functools.partial(self._updated, name),
                                          functools.partial(self._deleted, name))

    # -- custom kinds come and go with their CRDs -----------------------------------------------

    @staticmethod
    def _custom_name(res: Resource) -> str:
        return f"{res.plural}.{res.group}"

    def _crd_changed(self, crd: Obj) -> None:
        res = preferred_row(crd) if established(crd) else None
        if res is None:
            return
        name = self._custom_name(res)
        current = self.resources.get(name)
        if current is not None and current.version == res.version:
            return
        if current is not None:
            self._untrack(name)
        self._track(name, res)
        self.ctx.informers.start()

    def _crd_deleted(self, crd: Obj) -> None:
        res = preferred_row(crd)
        if res is not None and self._custom_name(res) in self.resources:
            self._untrack(self._custom_name(res))

    def _untrack(self, name: str) -> None:
        res = self.resources.pop(name)
        inf = self.informers.pop(name)
        for obj in inf.store.list():
            self.uids.pop(meta(obj).get("uid", ""), None)
        self.ctx.informers.remove(res)

    # -- graph bookkeeping ----------------------------------------------------------------------

    def _changed(self, plural: str, obj: Obj, old: Obj | None = None) -> None:
        qkey = f"{plural}|{key_of(obj)}"
        uid = meta(obj).get("uid")
        if uid:
            self.uids[uid] = qkey
        m = meta(obj)
        if m.get("ownerReferences") or FOREGROUND in (m.get("finalizers") or []) \
                or ORPHAN in (m.get("finalizers") or []):
            self.queue.add(qkey)
        # A dependent that changed (e.g. started terminating) may unblock an owner.
        self._enqueue_owners(obj)
        if old is not None:
            self._enqueue_owners(old)

    def _updated(self, plural: str, old: Obj, new: Obj) -> None:
        self._changed(plural, new, old)

    def _deleted(self, plural: str, obj: Obj) -> None:
        uid = meta(obj).get("uid")
        if uid:
            self.uids.pop(uid, None)
            for dep_plural, dep in self._dependents(uid):
                self.queue.add(f"{dep_plural}|{key_of(dep)}")
        self._enqueue_owners(obj)

    def _enqueue_owners(self, obj: Obj) -> None:
        for ref in meta(obj).get("ownerReferences") or []:
            owner = self.uids.get(ref.get("uid", ""))
            if owner is not None:
                self.queue.add(owner)

    def _dependents(self, uid: str) -> list[tuple[str, Obj]]:
        return [(plural, dep) for plural, inf in self.informers.items() for dep in inf.store.by_index("owner", uid)]

    # -- reconcile ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        plural, _, obj_key = key.partition("|")
        informer = self.informers.get(plural)
        obj = informer.store.get(obj_key) if informer is not None else None
        if obj is None:
            return
        res = self.resources[plural]
        finalizers = meta(obj).get("finalizers") or []
        if meta(obj).get("deletionTimestamp"):
            if FOREGROUND in finalizers:
                await self._delete_dependents_then_release(res, obj)
                return
            if ORPHAN in finalizers:
                await self._orphan_dependents_then_release(res, obj)
                return
        await self._collect_if_orphaned(res, obj)

    async def _delete_dependents_then_release(self, res: Resource, owner: Obj) -> None:
        uid = meta(owner)["uid"]
        blocking = 0
        for plural, dep in self._dependents(uid):
            ref = next(r for r in meta(dep).get("ownerReferences") or [] if r.get("uid") == uid)
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if not meta(dep).get("deletionTimestamp"):
                # Dependents that own things themselves go in the foreground too, so the wait is transitive.
                has_own = bool(self._dependents(meta(dep).get("uid", "")))
                await self._delete(self.resources[plural], dep, "Foreground" if has_own else "Background")
        if blocking == 0:
            await self._remove_finalizer(res, owner, FOREGROUND)

    async def _orphan_dependents_then_release(self, res: Resource, owner: Obj) -> None:
        uid = meta(owner)["uid"]
        for plural, dep in self._dependents(uid):
            await self._drop_refs(self.resources[plural], dep, {uid})
        await self._remove_finalizer(res, owner, ORPHAN)

    async def _collect_if_orphaned(self, res: Resource, obj: Obj) -> None:
        refs = meta(obj).get("ownerReferences") or []
        if not refs:
            return
        absent: set[str] = set()
        waiting_owner = False
        for ref in refs:
            owner = await self._find_owner(obj, ref)
            if owner is None:
                absent.add(ref["uid"])
            elif meta(owner).get("deletionTimestamp") and FOREGROUND in (meta(owner).get("finalizers") or []) \
                    and ref.get("blockOwnerDeletion"):
                waiting_owner = True
        if not absent:
            return
        if len(absent) == len(refs):
            await self._delete(res, obj, "Foreground" if waiting_owner else "Background")
        else:
            await self._drop_refs(res, obj, absent)

    async def _find_owner(self, dependent: Obj, ref: dict[str, Any]) -> Obj | None:
        """The owner if it exists with the referenced uid; verified live when the cache does not know it."""
        qkey = self.uids.get(ref.get("uid", ""))
        if qkey is not None:
            plural, _, okey = qkey.partition("|")
            informer = self.informers.get(plural)
            cached = informer.store.get(okey) if informer is not None else None
            if cached is not None:
                return cached
        res = for_kind(ref.get("apiVersion", ""), ref.get("kind", "")) or self._custom_kind(ref)
        if res is None:
            # A kind we cannot look up: never delete on a guess.
            return {"metadata": {"uid": ref.get("uid")}}
        ns = meta(dependent).get("namespace") if res.namespaced else None
        try:
            live = await self.client.get(res, ref["name"], ns)
        except ApiError as e:
            if is_not_found(e):
                return None
            raise
        return live if meta(live).get("uid") == ref.get("uid") else None

    def _custom_kind(self, ref: dict[str, Any]) -> Resource | None:
        """The tracked custom kind of an owner reference (any version of its group: no conversion needed)."""
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        return next((r for r in self.resources.values() if r.custom and r.group == group
                     and r.kind == ref.get("kind")), None)

    async def _delete(self, res: Resource, obj: Obj, policy: str) -> None:
        m = meta(obj)
        try:
            await self.client.delete(res, m["name"], m.get("namespace"), propagation_policy=policy,
                                     preconditions={"uid": m["uid"]})
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise

    async def _drop_refs(self, res: Resource, obj: Obj, uids: set[str]) -> None:
        body = copy.deepcopy(obj)
        body["metadata"]["ownerReferences"] = [r for r in meta(obj).get("ownerReferences") or []
                                               if r.get("uid") not in uids]
        await self._update(res, body)

    async def _remove_finalizer(self, res: Resource, obj: Obj, finalizer: str) -> None:
        body = copy.deepcopy(obj)
        body["metadata"]["finalizers"] = [f for f in meta(obj).get("finalizers") or [] if f != finalizer]
        await self._update(res, body)

    async def _update(self, res: Resource, body: Obj) -> None:
        await unless_gone(self.client.update(res, body))  # a conflict is retried with the fresher cached object
