"""The CRD registry: serves the kinds of CustomResourceDefinitions, and keeps their status.

Every API server learns CRDs from its own watch cache (one listener on the CRD prefix), so with several API
servers each serves a CRD's kinds as soon as it sees the CRD Established, whoever wrote it. On each change it
rebuilds the custom rows of the kind table (`pklib.resources.set_custom`) and their strategies
(`apiserver.kinds.set_custom`): from then on the generic handlers, discovery and OpenAPI serve them.

Like Kubernetes' apiextensions controllers (naming, establishing, finalizing), a work queue then:
- accepts a CRD's names unless another CRD of the group already uses them (NamesAccepted, acceptedNames)
  and marks it Established;
- for a deleted CRD (kept by the customresourcecleanup finalizer) deletes its custom resources, then removes
  the finalizer, which lets the CRD go.
Every API server runs this; the writes are idempotent (a no-op status update writes nothing).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Hashable

from pklib import resources
from pklib.api.timefmt import now_rfc3339
from pklib.workqueue import WorkQueue, run_workers

from . import deletion, kinds
from .handlers_objects import Objects, clone_stored
from .kinds.customresources import CLEANUP_FINALIZER, condition, rows, storage_version
from .kinds.meta import as_dict, as_list
from .status import StatusError
from .storage.interface import Entry
from .watchcache import WatchCache, resource_prefix

log = logging.getLogger("apiserver.crds")

CRDS = resources.CRDS
PREFIX = resource_prefix(CRDS.group, CRDS.plural)
CLEANUP_RETRY = 0.5  # seconds between two sweeps of a deleted CRD's remaining custom resources


def _set_condition(conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str
                   ) -> list[dict[str, Any]]:
    old = next((c for c in conditions if c.get("type") == type_), None)
    if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (status, reason, message):
        return conditions
    new = {"type": type_, "status": status,
           "lastTransitionTime": old["lastTransitionTime"] if old is not None and old.get("status") == status
           and old.get("lastTransitionTime") else now_rfc3339(),
           "reason": reason, "message": message}
    return [new if c is old else c for c in conditions] if old is not None else [*conditions, new]


def _names(crd: dict[str, Any]) -> dict[str, Any]:
    names = dict(as_dict(as_dict(crd.get("spec")).get("names")))
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    return names


def _conflict(crd: dict[str, Any], others: list[dict[str, Any]]) -> str:
    """Why the CRD's names cannot be accepted ("" if they can): another CRD of the group uses one of them."""
    names = _names(crd)
    group = as_dict(crd.get("spec")).get("group")
    name = as_dict(crd.get("metadata")).get("name")
    for other in others:
        if as_dict(other.get("metadata")).get("name") == name or as_dict(other.get("spec")).get("group") != group:
            continue
        taken = as_dict(as_dict(other.get("status")).get("acceptedNames"))
        resource_names = {taken.get("plural"), taken.get("singular"), *as_list(taken.get("shortNames"))} - {None, ""}
        kind_names = {taken.get("kind"), taken.get("listKind")} - {None, ""}
        for candidate in (names.get("plural"), names.get("singular"), *as_list(names.get("shortNames"))):
            if candidate in resource_names:
                return f'"{candidate}" is already in use'
        for candidate in (names.get("kind"), names.get("listKind")):
            if candidate in kind_names:
                return f'"{candidate}" is already in use'
    return ""


def desired_status(crd: dict[str, Any], others: list[dict[str, Any]]) -> dict[str, Any]:
    """The CRD's status as the naming and establishing controllers would write it."""
    status = clone_stored(as_dict(crd.get("status")))
    conditions = [c for c in as_list(status.get("conditions")) if isinstance(c, dict)]
    why = _conflict(crd, others)
    if why:
        conditions = _set_condition(conditions, "NamesAccepted", "False", "NameConflict", why)
        if condition(crd, "Established").get("status") != "True":
            conditions = _set_condition(conditions, "Established", "False", "NotAccepted",
                                        "not all names are accepted")
    else:
        status["acceptedNames"] = _names(crd)
        conditions = _set_condition(conditions, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
        conditions = _set_condition(conditions, "Established", "True", "InitialNamesAccepted",
                                    "the initial names have been accepted")
    status["conditions"] = conditions
    stored = storage_version(crd)
    if stored and stored not in as_list(status.get("storedVersions")):
        status["storedVersions"] = [*as_list(status.get("storedVersions")), stored]
    return status


def _storage_row(crd: dict[str, Any]) -> resources.Resource:
    """A row for the CRD's objects whether or not it is served (to delete them all)."""
    spec = crd["spec"]
    names = spec["names"]
    return resources.Resource(spec["group"], storage_version(crd), names["kind"], names["plural"],
                              spec["scope"] == "Namespaced", custom=True)


class Registry:
    def __init__(self, objects: Objects, cache: WatchCache):
        self.objects = objects
        self.cache = cache
        self.queue = WorkQueue("crds")
        self._task: asyncio.Task[None] | None = None
        cache.listen(PREFIX, self._changed)

    def _crds(self) -> list[dict[str, Any]]:
        return [c.obj for c in self.cache.for_prefix(PREFIX).objects.values()]

    def _changed(self, key: str | None) -> None:
        crds = self._crds()
        before = {resource_prefix(r.group, r.plural) for r in resources.all_resources() if r.custom}
        self.rebuild(crds)
        after = {resource_prefix(r.group, r.plural) for r in resources.all_resources() if r.custom}
        for prefix in before - after:
            # A kind no longer served: its watches end, as Kubernetes ends them (clients re-list and get 404).
            for watcher in list(self.cache.for_prefix(prefix).watchers):
                watcher.end()
        for crd in crds if key is None else [c for c in crds if key == PREFIX + c["metadata"]["name"]]:
            self.queue.add(crd["metadata"]["name"])

    @staticmethod
    def rebuild(crds: list[dict[str, Any]]) -> None:
        """Serve the kinds of every established CRD (synchronously: before the next request is read)."""
        table: list[resources.Resource] = []
        strategies: dict[resources.Resource, kinds.KindStrategy] = {}
        for crd in sorted(crds, key=lambda c: str(c["metadata"]["name"])):
            if condition(crd, "Established").get("status") != "True":
                continue
            try:
                for res, strategy in rows(crd):
                    table.append(res)
                    strategies[res] = strategy
            except (KeyError, TypeError, ValueError):
                log.exception("cannot serve CRD %s", crd["metadata"].get("name"))
        kinds.set_custom(strategies)
        resources.set_custom(table)

    def start(self) -> None:
        self._task = asyncio.create_task(run_workers(self.queue, self._sync, 1), name="crds")

    async def stop(self) -> None:
        self.queue.shutdown()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _sync(self, key: Hashable) -> None:
        name = str(key)
        cached = self.cache.for_prefix(PREFIX).objects.get(PREFIX + name)
        if cached is None:
            return
        crd = cached.obj
        if as_dict(crd.get("metadata")).get("deletionTimestamp"):
            await self._finalize(crd)
            return
        others = self._crds()

        def mutate(entry: Entry) -> dict[str, Any]:
            new = clone_stored(entry.value)
            new["status"] = desired_status(new, others)
            return new

        await self._write(name, mutate)

    async def _write(self, name: str, mutate: Callable[[Entry], dict[str, Any]]) -> None:
        """Update the CRD `name`; one already gone needs nothing more."""
        try:
            await self.objects.guaranteed_update(CRDS, None, name, mutate)
        except StatusError as e:
            if e.code != 404:
                raise

    async def _finalize(self, crd: dict[str, Any]) -> None:
        """Delete the CRD's custom resources; once none is left, remove the cleanup finalizer."""
        name = crd["metadata"]["name"]
        if CLEANUP_FINALIZER not in as_list(crd["metadata"].get("finalizers")):
            return
        res = _storage_row(crd)
        page = await self.objects.storage.list(resource_prefix(res.group, res.plural))
        for entry in page.entries:
            meta = as_dict(entry.value.get("metadata"))
            if meta.get("deletionTimestamp"):
                continue  # deleting already, waiting for its own finalizers
            try:
                await deletion.delete(self.objects, res, meta.get("namespace"), meta["name"],
                                      deletion.DeleteOptions())
            except StatusError as e:
                if e.code != 404:
                    raise
        if page.entries:
            self.queue.add_after(name, CLEANUP_RETRY)
            return

        def mutate(entry: Entry) -> dict[str, Any]:
            new = clone_stored(entry.value)
            meta = new["metadata"]
            meta["finalizers"] = [f for f in as_list(meta.get("finalizers")) if f != CLEANUP_FINALIZER]
            if not meta["finalizers"]:
                del meta["finalizers"]
            return new

        await self._write(name, mutate)
