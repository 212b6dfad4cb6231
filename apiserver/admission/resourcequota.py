"""The ResourceQuota admission plugin: a create that would take a namespace's usage past a quota's hard limit is
refused with 403 `exceeded quota: NAME, requested: ..., used: ..., limited: ...`, and one that is admitted is
charged to the quota's status.used before the object is written.

Consistency on concurrent creates is Kubernetes' own scheme, so it also holds across several API servers: the
charge is a write of the quota (status.used plus the new object's usage) at the revision the check read; when
another create charged the quota meanwhile the write fails, and the check runs again on the quota as etcd now has
it. Within one API server the charges of a namespace also take turns (a per-namespace lock, where Kubernetes
batches them per namespace), so concurrent creates through one server do not keep failing each other's writes. A create that then fails leaves the quota charged until the resourcequota controller recomputes it (as in
Kubernetes). A quota whose status does not know a resource yet (new, or a resource just added to spec.hard) gets
its usage computed from the watch cache first. Updates are charged what they add (a claim asking for more storage,
a Service becoming a NodePort one).
"""
from __future__ import annotations

import asyncio
import weakref
from typing import Any

from pklib.api import quota as q
from pklib.resources import RESOURCEQUOTAS, Resource

from ..status import StatusError, forbidden_object
from ..storage.interface import RevisionConflictError, Storage
from ..watchcache import WatchCache, resource_prefix

Obj = dict[str, Any]
PREFIX = resource_prefix(RESOURCEQUOTAS.group, RESOURCEQUOTAS.plural)
MAX_ATTEMPTS = 16


class QuotaAdmission:
    def __init__(self, storage: Storage, cache: WatchCache):
        self.storage = storage
        self.cache = cache
        self._turns: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _quotas(self, namespace: str) -> list[Obj]:
        return [c.obj for c in self.cache.for_prefix(PREFIX).items(f"{PREFIX}{namespace}/", None)]

    def _namespace_objects(self, namespace: str, names: list[str]) -> dict[tuple[str, str], list[Obj]]:
        out: dict[tuple[str, str], list[Obj]] = {}
        for name in names:
            kind = q.kind_of(name)
            if kind is None or kind in out:
                continue
            group, plural = kind
            prefix = resource_prefix(group, plural)
            out[kind] = [c.obj for c in self.cache.for_prefix(prefix).items(f"{prefix}{namespace}/", None)]
        return out

    async def charge(self, res: Resource, obj: Obj, dry_run: bool, old: Obj | None = None) -> None:
        """Check `obj` (about to be created, or to replace `old`) against its namespace's quotas and charge them
        what it uses (an update: what it uses more than `old`); 403 if one refuses."""
        if not res.namespaced:
            return
        namespace = obj["metadata"]["namespace"]
        quotas = [x for x in self._quotas(namespace) if q.covers(x, res.group, res.plural, obj)]
        if not quotas:
            return
        name = obj["metadata"].get("name") or ""
        delta = q.usage(res.group, res.plural, obj)
        if old is not None:
            delta = q.increase(q.usage(res.group, res.plural, old) if any(
                q.covers(x, res.group, res.plural, old) for x in quotas) else {}, delta)
            if not delta:
                return
        elif res.group == "" and res.plural == "pods" and delta:
            for quota in quotas:
                missing = q.missing_requirements(q.hard(quota), obj)
                if missing:
                    raise forbidden_object(res.plural, name, res.group,
                                           f"failed quota: {quota['metadata']['name']}: {missing}")
        charged: set[str] = set()
        turn = self._turns.get(namespace)
        if turn is None:
            turn = self._turns[namespace] = asyncio.Lock()
        async with turn:
            for _ in range(MAX_ATTEMPTS):
                try:
                    await self._charge_all(res, name, quotas, delta, charged, dry_run)
                    return
                except RevisionConflictError:
                    continue
        raise StatusError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": too many '
                                            f'concurrent writers to the namespace\'s resource quotas; try again')

    async def _charge_all(self, res: Resource, name: str, quotas: list[Obj], delta: q.Usage, charged: set[str],
                          dry_run: bool) -> None:
        """One attempt: read each quota from etcd, check them all, then write the charges (a conflict raises
        RevisionConflictError; the quotas charged already are in `charged`)."""
        writes = []
        for cached in quotas:
            key = f"{PREFIX}{cached['metadata']['namespace']}/{cached['metadata']['name']}"
            if key in charged:
                continue
            entry = await self.storage.get(key)
            if entry is None:
                continue  # deleted meanwhile
            current = entry.value
            limits = q.hard(current)
            names = [n for n in limits if n in delta]
            if not names:
                continue
            status = current.get("status") or {}
            used_text = status.get("used") or {}
            if any(n not in used_text for n in limits):
                used_text = {**q.compute_used(current, self._namespace_objects(entry.key.split("/")[-2],
                                                                                 list(limits))), **used_text}
            used = q.parse_used(used_text)
            refusal = q.exceeded(current["metadata"]["name"], limits, used, delta)
            if refusal:
                raise forbidden_object(res.plural, name, res.group, refusal)
            new = dict(current, status={**status, "hard": dict((current.get("spec") or {}).get("hard") or {}),
                                        "used": {**used_text, **q.add(used, delta, names)}})
            writes.append((entry, new))
        if dry_run:
            return
        for entry, new in writes:
            # Not noted as a policy write: charges read the quota from etcd, so nothing waits for the cache here.
            await self.storage.update(entry.key, new, entry.mod_revision)
            charged.add(entry.key)

