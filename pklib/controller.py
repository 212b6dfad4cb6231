"""The shared controller runtime: shared informers -> event handlers enqueue keys -> workers call sync(key).

A controller subclass declares what it watches in `__init__` (through `self.watch`),
and implements `sync(key)`, which re-reads the cache and converges. The manager
(controllers/main.py) builds every controller, starts the shared informers, then
runs each controller's workers once its caches are filled.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, Iterable

from .client import Client
from .events import EventRecorder
from .informer import Handler, Informer, InformerFactory, Obj
from .objects import key_of
from .resources import Resource
from .workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)


class Clock:
    """The time a controller decides by; tests replace a controller class's `clock` with a fake to drive time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass
class ControllerContext:
    client: Client
    informers: InformerFactory
    recorder: EventRecorder
    # Parsed command-line flags; controllers read their own options from here (see add_flags).
    options: argparse.Namespace = field(default_factory=argparse.Namespace)
    workers: int = 5


class Controller:
    name: ClassVar[str] = ""
    # What this controller writes is a function of its caches alone (the same caches give the same writes, whoever
    # makes them, however often): the successor of a controller-manager that died may run it while it lets its
    # predecessor's last requests land, before it takes the Lease (controllers/main.py). Services then stop
    # sending to pods deleted just before the death within a second or two, not after the settle time as well.
    state_only: ClassVar[bool] = False

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.queue = WorkQueue(self.name)
        self.workers = ctx.workers
        self._informers: list[Informer] = []
        self.log = logging.getLogger(f"controllers.{self.name}")

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        """Add this controller's command-line flags (read back from ctx.options)."""

    def option(self, name: str, default: Any) -> Any:
        return getattr(self.ctx.options, name, default)

    def watch(self, resource: Resource, on_add: Callable[[Obj], None] | None = None,
              on_update: Callable[[Obj, Obj], None] | None = None,
              on_delete: Callable[[Obj], None] | None = None) -> Informer:
        """The shared informer for `resource`, with this controller's handlers attached."""
        inf = self.ctx.informers.informer(resource)
        if on_add or on_update or on_delete:
            inf.add_handler(Handler(on_add, on_update, on_delete))
        if inf not in self._informers:
            self._informers.append(inf)
        return inf

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def enqueue_after(self, obj_or_key: Obj | str, delay: float) -> None:
        key = obj_or_key if isinstance(obj_or_key, str) else key_of(obj_or_key)
        self.queue.add_after(key, delay)

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """Wait until this controller's caches are filled, then process keys until cancelled."""
        await asyncio.gather(*(i.synced.wait() for i in self._informers))
        self.log.info("caches synced; starting %d workers", self.workers)
        try:
            await run_workers(self.queue, self._sync_logged, self.workers, self.name)
        finally:
            self.queue.shutdown()

    async def _sync_logged(self, key: Any) -> None:
        started = time.monotonic()
        await self.sync(str(key))
        took = time.monotonic() - started
        if took > 1:
            self.log.info("sync %s took %.2fs", key, took)


# -- expectations -------------------------------------------------------------------------------

EXPECTATIONS_TTL = 300.0


@dataclass
class _Expected:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)


class Expectations:
    """What a controller has asked for and not yet seen in its cache.

    A controller that just created 5 pods must not create them again because its
    cache lags behind: it records 5 expected creations and skips its "how many are
    missing" arithmetic until the informer has shown them (or TTL passed, in case
    a watch event was lost). Deletions are tracked by pod key, because a pod that
    was already terminating may never produce the event we count on otherwise.
    """

    def __init__(self, ttl: float = EXPECTATIONS_TTL):
        self.ttl = ttl
        self._by_key: dict[str, _Expected] = {}

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        if e is None:
            return True
        return (e.adds <= 0 and not e.deletes) or time.monotonic() - e.since > self.ttl

    def expect_creations(self, key: str, count: int) -> None:
        self._by_key[key] = _Expected(adds=count)

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        self._by_key[key] = _Expected(deletes=set(pod_keys))

    def creation_observed(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.adds -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.deletes.discard(pod_key)

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)
