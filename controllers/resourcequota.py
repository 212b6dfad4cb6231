"""ResourceQuota controller: keeps every quota's status (hard = spec.hard, used = what the namespace's objects use).

The apiserver's quota admission charges creates as they happen; this controller gives usage back when objects
go (deleted, a pod finished, a service or claim changed what it uses), computes it for new quotas and resources
newly added to spec.hard, and recomputes every quota each --resource-quota-sync-period (Kubernetes' replenishment
and full resync). The counting rules are pklib/api/quota.py, shared with the admission. Kinds counted through
`count/<plural>.<group>` that it has no informer for are listed at each sync.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable

from pklib.api import quota
from pklib.controller import Controller, ControllerContext
from pklib.informer import Informer, Obj
from pklib.resources import (CONFIGMAPS, PODS, PVCS, REPLICATIONCONTROLLERS, RESOURCEQUOTAS, SECRETS, SERVICES,
                             Resource, all_resources)

from .util import meta, write_status

TRACKED: tuple[Resource, ...] = (PODS, SERVICES, PVCS, CONFIGMAPS, SECRETS, REPLICATIONCONTROLLERS)


class ResourceQuotaController(Controller):
    name = "resourcequota"

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--resource-quota-sync-period", type=float, default=300.0,
                            help="seconds between full recomputations of every quota's usage")

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.period = float(self.option("resource_quota_sync_period", 300.0))
        self.quotas = self.watch(RESOURCEQUOTAS, self.enqueue, self._quota_updated, self._counted_gone)
        self.informers: dict[tuple[str, str], Informer] = {(RESOURCEQUOTAS.group, RESOURCEQUOTAS.plural): self.quotas}
        for res in TRACKED:
            self.informers[(res.group, res.plural)] = self.watch(res, None, self._usage_changed(res),
                                                                 self._counted_gone)

    # -- event handlers: enqueue the quotas of the namespace whose usage went down or changed -----------

    def _enqueue_namespace(self, namespace: str) -> None:
        for q in self.quotas.store.by_index("namespace", namespace):
            self.enqueue(q)

    def _quota_updated(self, old: Obj, new: Obj) -> None:
        status = new.get("status") or {}
        if old.get("spec") != new.get("spec") or status.get("hard") != (new.get("spec") or {}).get("hard"):
            self.enqueue(new)

    def _counted_gone(self, obj: Obj) -> None:
        self._enqueue_namespace(meta(obj).get("namespace", ""))

    def _usage_changed(self, res: Resource) -> Callable[[Obj, Obj], None]:
        def changed(old: Obj, new: Obj) -> None:
            if quota.usage(res.group, res.plural, old) != quota.usage(res.group, res.plural, new):
                self._enqueue_namespace(meta(new).get("namespace", ""))
        return changed

    # -- reconcile ------------------------------------------------------------------------------

    async def _objects(self, namespace: str, names: list[str]) -> dict[tuple[str, str], list[Obj]]:
        out: dict[tuple[str, str], list[Obj]] = {}
        for name in names:
            kind = quota.kind_of(name)
            if kind is None or kind in out:
                continue
            informer = self.informers.get(kind)
            if informer is not None:
                out[kind] = informer.store.by_index("namespace", namespace)
                continue
            res = next((r for r in all_resources() if (r.group, r.plural) == kind and r.namespaced), None)
            if res is not None:
                listed: dict[str, Any] = await self.client.list(res, namespace)
                out[kind] = listed.get("items") or []
        return out

    async def sync(self, key: str) -> None:
        q = self.quotas.store.get(key)
        if q is None:
            return
        hard = dict((q.get("spec") or {}).get("hard") or {})
        used = quota.compute_used(q, await self._objects(meta(q)["namespace"], list(hard)))
        status = {"hard": hard, "used": used}
        if (q.get("status") or {}) != status:
            await write_status(self.client, RESOURCEQUOTAS, q, status)
        self.queue.add_after(key, self.period)
