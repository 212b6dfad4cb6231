"""The scheduling queue (Kubernetes' PriorityQueue, reduced to what we need).

Three places a pending pod can wait:
- active: ready to be tried, ordered by priority (high first) then by age (old first);
- backoff: failed recently; becomes active when its backoff (1 s doubling to 10 s per
  failed attempt) has passed;
- unschedulable: no node fits and nothing has changed since; a cluster event (node added
  or changed, pod deleted, ...) moves these back (to backoff if still backing off), and
  a pod waits there at most `max_unschedulable` seconds anyway.

The queue holds keys plus what ordering needs; the scheduler reads the pod itself from
its cache when it pops a key, so a pod updated while queued is scheduled as it is now.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class QueuedPod:
    key: str
    priority: int
    timestamp: float  # when the pod first entered the queue (its age, for ordering)
    attempts: int = 0
    failed_at: float = 0.0
    failed_cycle: int = 0


class SchedulingQueue:
    def __init__(self, initial_backoff: float = 1.0, max_backoff: float = 10.0,
                 max_unschedulable: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self._clock = clock
        self._pods: dict[str, QueuedPod] = {}
        self._active: list[tuple[int, float, int, str]] = []
        self._in_active: set[str] = set()
        self._backoff: set[str] = set()
        self._unschedulable: set[str] = set()
        self._in_flight: set[str] = set()
        self._seq = itertools.count()
        self._not_empty = asyncio.Event()
        # Incremented per pop; a pod that failed in a cycle during which a move request came
        # in goes to backoff rather than unschedulable (the change may have made it fit).
        self.scheduling_cycle = 0
        self._move_request_cycle = -1

    # -- state for tests and metrics ----------------------------------------------------------

    def pending(self) -> dict[str, int]:
        return {"active": len(self._in_active), "backoff": len(self._backoff),
                "unschedulable": len(self._unschedulable)}

    def __contains__(self, key: str) -> bool:
        return key in self._pods

    # -- producers ----------------------------------------------------------------------------

    def add(self, key: str, priority: int = 0) -> None:
        """A new pending pod (or one seen again): make it active unless it is being scheduled."""
        qp = self._pods.get(key)
        if qp is None:
            qp = self._pods[key] = QueuedPod(key, priority, self._clock())
        qp.priority = priority
        if key in self._in_flight or key in self._in_active:
            return
        self._backoff.discard(key)
        self._unschedulable.discard(key)
        self._push_active(qp)

    def update(self, key: str, priority: int = 0) -> None:
        """The pending pod changed: it may fit now, retry it (respecting its backoff)."""
        qp = self._pods.get(key)
        if qp is None:
            self.add(key, priority)
            return
        qp.priority = priority
        if key in self._unschedulable:
            self._unschedulable.discard(key)
            self._requeue(qp)

    def delete(self, key: str) -> None:
        self._pods.pop(key, None)
        self._backoff.discard(key)
        self._unschedulable.discard(key)
        self._in_active.discard(key)  # its heap entry is skipped lazily

    def move_all_to_active(self) -> None:
        """Something in the cluster changed (nodes, pods): unschedulable pods get another try."""
        self._move_request_cycle = self.scheduling_cycle
        moving, self._unschedulable = self._unschedulable, set()
        for key in moving:
            self._requeue(self._pods[key])

    # -- the scheduler's side -----------------------------------------------------------------

    async def pop(self) -> str:
        while True:
            while self._active:
                _, _, _, key = heapq.heappop(self._active)
                if key in self._in_active:
                    self._in_active.discard(key)
                    self._in_flight.add(key)
                    self.scheduling_cycle += 1
                    self._pods[key].failed_cycle = self.scheduling_cycle
                    return key
            self._not_empty.clear()
            await self._not_empty.wait()

    def done(self, key: str) -> None:
        """Scheduling of `key` finished successfully (bound): forget it."""
        self._in_flight.discard(key)
        self._pods.pop(key, None)

    def unschedulable(self, key: str) -> None:
        """No node fits (or binding failed): back off, and wait for a change if nothing moved meanwhile."""
        self._in_flight.discard(key)
        qp = self._pods.get(key)
        if qp is None:  # deleted while we were scheduling it
            return
        qp.attempts += 1
        qp.failed_at = self._clock()
        if self._move_request_cycle >= qp.failed_cycle:
            self._backoff.add(key)
        else:
            self._unschedulable.add(key)

    def backoff_duration(self, qp: QueuedPod) -> float:
        if qp.attempts <= 0:
            return 0.0
        return float(min(self.max_backoff, self.initial_backoff * 2.0 ** (qp.attempts - 1)))

    def flush(self) -> float:
        """Move pods whose backoff ended to active, and long-waiting unschedulable pods back to the
        queue; returns the seconds until the next backoff ends (for the flusher's sleep)."""
        now = self._clock()
        next_due = self.max_backoff
        for key in list(self._backoff):
            qp = self._pods[key]
            due = qp.failed_at + self.backoff_duration(qp)
            if due <= now:
                self._backoff.discard(key)
                self._push_active(qp)
            else:
                next_due = min(next_due, due - now)
        for key in list(self._unschedulable):
            qp = self._pods[key]
            if now - qp.failed_at >= self.max_unschedulable:
                self._unschedulable.discard(key)
                self._requeue(qp)
        return next_due

    async def run_flusher(self, max_interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(max_interval, self.flush())))

    # -- internals ----------------------------------------------------------------------------

    def _requeue(self, qp: QueuedPod) -> None:
        if self._clock() < qp.failed_at + self.backoff_duration(qp):
            self._backoff.add(qp.key)
        else:
            self._backoff.discard(qp.key)
            self._push_active(qp)

    def _push_active(self, qp: QueuedPod) -> None:
        self._in_active.add(qp.key)
        heapq.heappush(self._active, (-qp.priority, qp.timestamp, next(self._seq), qp.key))
        self._not_empty.set()
