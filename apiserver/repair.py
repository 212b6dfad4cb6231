"""Allocator repair: ClusterIPs and NodePorts that a crash left allocated, or Services whose values are not.

kube-apiserver runs repair controllers for its ClusterIP and NodePort bitmaps at start and every few
minutes (`pkg/registry/core/service/ipallocator/controller/repair.go`); this is the same for pkube's
allocation keys (allocators.py):
- an allocation no Service holds is a leak (the apiserver died between allocating and writing the
  Service, or between deleting a Service and releasing). Since an allocation is made just before its
  Service is written, a leak is released only once it has been seen, unchanged, on LEAK_ROUNDS
  consecutive runs (Kubernetes' numRepairsBeforeLeakCleanup), never an allocation in flight;
- a Service whose value has no allocation key (a key lost, a restored backup) gets it recorded, so that
  the value cannot be handed out twice; a key recorded for another owner is rewritten to the holder.
Several apiservers may repair at once: every write is a create-if-absent or conditional on the revision.
"""
from __future__ import annotations

import asyncio
import logging

from .allocators import IP_PREFIX, Owner
from .kinds.services import held_allocations
from .metrics import Metrics
from .storage.interface import Entry, KeyExistsError, KeyNotFoundError, RevisionConflictError, Storage, StorageError
from .watchcache import resource_prefix

log = logging.getLogger("apiserver.repair")

ALLOCATIONS_PREFIX = "/registry/allocations/"
SERVICES_PREFIX = resource_prefix("", "services")
DEFAULT_INTERVAL = 180.0  # kube-apiserver repairs its allocators every 3 minutes
LEAK_ROUNDS = 3


def _allocator(key: str) -> str:
    return "serviceip" if key.startswith(IP_PREFIX) else "nodeport"


class AllocatorRepair:
    def __init__(self, storage: Storage, interval: float = DEFAULT_INTERVAL, metrics: Metrics | None = None):
        self.storage, self.interval, self.metrics = storage, interval, metrics
        # allocation key -> (its revision when first seen unheld, consecutive runs seen so)
        self._suspects: dict[str, tuple[int, int]] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except StorageError as e:
                log.warning("allocator repair failed: %s", e)
            if self.interval <= 0:
                return
            await asyncio.sleep(self.interval)

    async def run_once(self) -> None:
        # Allocations first: a Service created after this read is then seen by the next one.
        allocations = {e.key: e for e in (await self.storage.list(ALLOCATIONS_PREFIX)).entries}
        held: dict[str, Owner] = {}
        for service in (await self.storage.list(SERVICES_PREFIX)).entries:
            held.update(held_allocations(service.value))
        for key, owner in held.items():
            await self._record(key, owner, allocations.get(key))
        suspects: dict[str, tuple[int, int]] = {}
        for key, entry in allocations.items():
            if key in held:
                continue
            revision, rounds = self._suspects.get(key, (entry.mod_revision, 0))
            rounds = rounds + 1 if revision == entry.mod_revision else 1
            if rounds < LEAK_ROUNDS:
                suspects[key] = (entry.mod_revision, rounds)
                continue
            try:
                await self.storage.delete(key, entry.mod_revision)
                log.warning("released leaked allocation %s (recorded for %s, held by no Service)", key,
                            entry.value.get("service"))
                self._count(key, "released")
            except (KeyNotFoundError, RevisionConflictError):
                pass  # released or re-taken meanwhile
        self._suspects = suspects

    async def _record(self, key: str, owner: Owner, entry: Entry | None) -> None:
        try:
            if entry is None:
                await self.storage.create(key, owner.record())
                log.warning("recorded the missing allocation %s of service %s", key, owner.name)
                self._count(key, "recorded")
            elif entry.value.get("uid") != owner.uid:
                await self.storage.update(key, owner.record(), entry.mod_revision)
                log.warning("allocation %s was recorded for %s; it belongs to service %s", key,
                            entry.value.get("service"), owner.name)
                self._count(key, "recorded")
        except KeyExistsError:
            now = await self.storage.get(key)  # usually the Service's own create, which raced with this run
            if now is not None and now.value.get("uid") != owner.uid:
                log.warning("service %s holds %s, which was just allocated to %s", owner.name, key,
                            now.value.get("service"))
        except (KeyNotFoundError, RevisionConflictError):
            pass  # changed meanwhile: the next run looks again

    def _count(self, key: str, action: str) -> None:
        if self.metrics is not None:
            self.metrics.allocator_repairs.labels(_allocator(key), action).inc()
