"""Namespace controller: empties a Terminating namespace, then finalizes it.

Deleting a namespace only marks it (deletionTimestamp, phase Terminating) because
spec.finalizers holds "kubernetes". This controller deletes every namespaced
object in it, waits until they are all gone (pods may take their grace period),
and then PUTs /namespaces/<ns>/finalize without "kubernetes", which lets the API
server remove the namespace.
"""
from __future__ import annotations

import asyncio
import copy

from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError, is_conflict, is_not_found
from pklib.informer import Obj
from pklib.api.customresources import preferred_rows
from pklib.resources import CRDS, NAMESPACES, RESOURCES, Resource

from .util import meta, now_rfc3339

FINALIZER = "kubernetes"
RECHECK_SECONDS = 1.0  # how soon to look again while objects are still terminating


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.ns_informer = self.watch(NAMESPACES, self._maybe_enqueue, lambda old, new: self._maybe_enqueue(new))

    def _maybe_enqueue(self, ns: Obj) -> None:
        if meta(ns).get("deletionTimestamp"):
            self.enqueue(ns)

    async def sync(self, key: str) -> None:
        ns = self.ns_informer.store.get(key)
        if ns is None or not meta(ns).get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        remaining = await self._delete_content(key)
        if remaining:
            await self._report_remaining(ns, remaining)
            self.queue.add_after(key, RECHECK_SECONDS)
            return
        body = copy.deepcopy(ns)
        body.setdefault("spec", {})["finalizers"] = [f for f in body["spec"].get("finalizers") or []
                                                     if f != FINALIZER]
        try:
            await self.client.request("PUT", NAMESPACES.path(None, key, "finalize"), body=body)
        except ApiError as e:
            if not is_not_found(e):
                raise
        self.recorder.normal(ns, "NamespaceFinalized", "All resources in the namespace were deleted")

    async def _delete_content(self, namespace: str) -> dict[str, int]:
        """Delete all objects in the namespace; returns how many of each kind still exist."""
        kinds = [res for res in RESOURCES if res.namespaced and "list" in res.verbs and "delete" in res.verbs]
        kinds += [res for res in preferred_rows(await self._crds()) if res.namespaced]
        counts = await asyncio.gather(*(self._delete_all(res, namespace) for res in kinds))
        return {_resource_name(res): n for res, n in zip(kinds, counts) if n}

    async def _crds(self) -> list[Obj]:
        """The CustomResourceDefinitions: their namespaced kinds are emptied too (none if CRDs are not served)."""
        try:
            return list((await self.client.list_all(CRDS)).get("items") or [])
        except ApiError as e:
            if e.code in (403, 404):
                return []
            raise

    async def _report_remaining(self, ns: Obj, remaining: dict[str, int]) -> None:
        """The NamespaceContentRemaining condition `describe` shows while objects terminate."""
        message = "Some resources are remaining: " + ", ".join(
            f"{name} has {n} resource instances" for name, n in sorted(remaining.items()))
        conditions = [c for c in (ns.get("status") or {}).get("conditions") or []
                      if c.get("type") != "NamespaceContentRemaining"]
        current = next((c for c in (ns.get("status") or {}).get("conditions") or []
                        if c.get("type") == "NamespaceContentRemaining"), None)
        if current is not None and current.get("message") == message:
            return
        body = copy.deepcopy(ns)
        body.setdefault("status", {})["conditions"] = conditions + [{
            "type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
            "message": message, "lastTransitionTime": now_rfc3339()}]
        try:
            await self.client.update_status(NAMESPACES, body)
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise

    async def _delete_all(self, res: Resource, namespace: str) -> int:
        try:
            items = (await self.client.list_all(res, namespace)).get("items") or []
        except ApiError as e:
            if e.code in (404, 405):
                return 0  # the server does not serve this kind
            raise
        for obj in items:
            if meta(obj).get("deletionTimestamp"):
                continue
            try:
                await self.client.delete(res, meta(obj)["name"], namespace, propagation_policy="Background")
            except ApiError as e:
                if not (is_not_found(e) or is_conflict(e)):
                    raise
        return len(items)


def _resource_name(res: Resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else res.plural
