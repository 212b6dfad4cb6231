"""The relist loop (Kubernetes' PLEG): compare the runtime's containers with what the last relist saw and
requeue the pods whose containers changed state; tear down what belongs to pods that are gone (deleted while we
were down, or bound elsewhere now); rotate container logs. Every sync_frequency, a full sync: every pod is
requeued and orphaned volume directories are removed.

A relist runs at once when something woke it: a container exited (the runtime's watch_exits; Kubernetes' Evented
PLEG gets the same from CRI events) or a pod left this node (the pod informer's deletes). Otherwise every
relist_period, which only has to catch what no event reports (log sizes, a monitor that died without a word)."""
from __future__ import annotations

import asyncio
import builtins
import logging
from typing import Any, Awaitable, Callable, Protocol

from pklib.objects import key_of

from kubelet.runtime.interface import NotFound, Runtime, RuntimeError_
from kubelet.shared import call_blocking
from kubelet.volumes import VolumeManager

log = logging.getLogger("kubelet")

RELIST_MIN_GAP = 0.25  # seconds from one relist to the next, however often something wakes it


class PodStore(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def list(self) -> list[dict[str, Any]]: ...
    def keys(self) -> builtins.list[str]: ...


class Relister:
    def __init__(self, runtime: Runtime, pods: PodStore, volumes: VolumeManager, requeue: Callable[[str], None],
                 remove_pod: Callable[[str], Awaitable[None]], relist_period: float, sync_frequency: float) -> None:
        self.runtime = runtime
        self.pods = pods
        self.volumes = volumes
        self.requeue = requeue
        self.remove_pod = remove_pod        # uid -> tear down everything of a pod the API no longer gives us
        self.relist_period = relist_period
        self.sync_frequency = sync_frequency
        self._snapshot: dict[str, tuple[Any, ...]] = {}   # uid -> what the relist saw last
        self._wake = asyncio.Event()

    def forget(self, uid: str) -> None:
        self._snapshot.pop(uid, None)

    def wake(self) -> None:
        """Relist now (from the event loop): a container exited, or a pod left this node."""
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.sync_frequency
        self.runtime.watch_exits(self.wake)
        while True:
            self._wake.clear()  # before the relist: what happens during it wakes the next one
            full = loop.time() >= next_full
            try:
                await self.relist()
                await call_blocking(self.runtime.in_memory, self.runtime.rotate_logs)  # containerLogMaxSize/MaxFiles
                if full:
                    await self.remove_orphaned_volumes()
            except (RuntimeError_, OSError) as e:
                log.warning("relist failed: %s", e)
            if full:
                next_full = loop.time() + self.sync_frequency
                for key in self.pods.keys():
                    self.requeue(key)
            # a burst of exits (a rollout stopping its pods) shares one relist per gap
            gap = min(RELIST_MIN_GAP, self.relist_period)
            await asyncio.sleep(gap)
            try:
                await asyncio.wait_for(self._wake.wait(), self.relist_period - gap)
            except TimeoutError:
                pass

    async def relist(self) -> None:
        """Requeue pods whose containers changed state; remove what belongs to pods that are gone."""
        sandboxes = await self.runtime.list_sandboxes()
        # files only: a container exit is what a relist must notice; a full sync (sync_frequency) asks runc
        exits = await call_blocking(self.runtime.in_memory, self.runtime.container_exits)
        seen: dict[str, list[Any]] = {}
        sandbox_uid = {s.id: s.config.uid for s in sandboxes}
        for s in sandboxes:
            seen.setdefault(s.config.uid, []).append((s.id, s.state.value))
        for cid, (sandbox_id, exited) in exits.items():
            if sandbox_id not in sandbox_uid:
                try:
                    await self.runtime.sandbox_status(sandbox_id)
                    continue  # a sandbox made since we listed: the next relist sees both
                except NotFound:
                    # its sandbox was removed while a sync was still creating it: nothing owns it any more
                    await self.runtime.remove_container(cid)
                    continue
            seen[sandbox_uid[sandbox_id]].append((cid, "exited" if exited else "live"))
        # read the cache only now: a pod that arrived while we listed is known (never mistaken for an orphan)
        by_uid = {p["metadata"]["uid"]: p for p in self.pods.list()}
        for uid, items in seen.items():
            if uid not in by_uid:
                log.info("removing pod %s: it is no longer bound to this node", uid)
                await self.remove_pod(uid)
                continue
            snap = tuple(sorted(items))
            if self._snapshot.get(uid) != snap:
                self._snapshot[uid] = snap
                self.requeue(key_of(by_uid[uid]))

    async def remove_orphaned_volumes(self) -> None:
        """Volumes of pods that have neither a sandbox nor an API object (left by a crash between the two
        removals; teardown normally takes them with the sandbox): rare, so looked for only at full syncs."""
        uids = await asyncio.to_thread(self.volumes.pod_uids)
        if not uids:
            return
        sandboxes = {s.config.uid for s in await self.runtime.list_sandboxes()}
        known = {p["metadata"]["uid"] for p in self.pods.list()}
        for uid in uids:
            if uid not in sandboxes and uid not in known:
                await asyncio.to_thread(self.volumes.teardown, uid)
