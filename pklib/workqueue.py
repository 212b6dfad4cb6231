"""The controllers' work queue (client-go's workqueue, asyncio edition).

Guarantees the level-triggered loop relies on:
- a key waiting in the queue is there once, however often it was added (dedup);
- a key being processed is never handed to a second worker; if it is added
  meanwhile it is queued again once the first worker calls `done`;
- failures are retried with per-key exponential backoff (5 ms doubling up to
  5 min) combined with an overall token bucket, so that one broken object
  cannot hot-loop and a storm of failures cannot flood the API server;
- `add_after` re-adds a key later, for time-based conditions (minReadySeconds,
  progress deadlines, ...).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Awaitable, Callable, Hashable

log = logging.getLogger(__name__)


class ShutDown(Exception):
    """Raised by `get` once the queue is shut down and drained of waiters."""


class ItemExponentialBackoff:
    """Per-key delay: base * 2^failures, capped."""

    def __init__(self, base: float = 0.005, cap: float = 300.0):
        self.base, self.cap = base, cap
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        # 2**n overflows float for large n; the cap is reached long before n=64.
        return float(min(self.cap, self.base * (2 ** min(n, 64))))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def retries(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class TokenBucket:
    """Overall limit on retries: `qps` tokens per second, `burst` at most; returns how long to wait."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Callable[[], float] = time.monotonic):
        self.qps, self.burst, self._clock = qps, burst, clock
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self) -> float:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        # A negative balance is the debt to wait for; later reservations queue up behind it.
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


class RateLimiter:
    """The max of the per-key backoff and the overall bucket (client-go's default controller limiter)."""

    def __init__(self, base: float = 0.005, cap: float = 300.0, qps: float = 10.0, burst: int = 100):
        self.backoff = ItemExponentialBackoff(base, cap)
        self.bucket = TokenBucket(qps, burst)

    def when(self, key: Hashable) -> float:
        return max(self.backoff.when(key), self.bucket.reserve())

    def forget(self, key: Hashable) -> None:
        self.backoff.forget(key)

    def retries(self, key: Hashable) -> int:
        return self.backoff.retries(key)


class WorkQueue:
    def __init__(self, name: str = "", rate_limiter: RateLimiter | None = None):
        self.name = name
        self.rate_limiter = rate_limiter or RateLimiter()
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        # key -> (when it is due, on the loop's clock; its timer). The due time is kept here: uvloop returns a plain
        # Handle, without when(), for a delay it rounds to 0 ms
        self._waiting: dict[Hashable, tuple[float, asyncio.Handle]] = {}
        # Workers blocked in get(); add() wakes one synchronously (handlers are sync code).
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        # Counters for /metrics (Prometheus workqueue_* style).
        self.adds_total = 0
        self.retries_total = 0
        self.work_seconds_total = 0.0
        self.work_count = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self.adds_total += 1
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add `key` after `delay` seconds; an earlier pending re-add of the same key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._waiting[key] = (due, loop.call_at(due, self._fire, key))

    def add_rate_limited(self, key: Hashable) -> None:
        self.retries_total += 1
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: Hashable) -> None:
        """Stop tracking failures of `key` (call after a successful sync)."""
        self.rate_limiter.forget(key)

    def retries(self, key: Hashable) -> int:
        return self.rate_limiter.retries(key)

    async def get(self) -> Hashable:
        while not self._queue:
            if self._shutting_down:
                raise ShutDown()
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # We may have been the one woken for a key: pass the wake-up on.
                if waiter.done() and self._queue:
                    self._notify()
                raise
            finally:
                if waiter in self._getters:
                    self._getters.remove(waiter)
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._notify()

    def shutdown(self) -> None:
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._queue.clear()
        self._dirty.clear()
        self._notify()

    def _fire(self, key: Hashable) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def _notify(self) -> None:
        if self._shutting_down:
            waiters, self._getters = self._getters, deque()
        else:
            waiters = deque([self._getters.popleft()]) if self._getters else deque()
        for w in waiters:
            if not w.done():
                w.set_result(None)


async def run_workers(queue: WorkQueue, handler: Callable[[Hashable], Awaitable[None]], workers: int,
                      name: str = "") -> None:
    """Run `workers` loops pulling keys from `queue`: success forgets the key's failures, an
    exception requeues it rate-limited. Returns when the queue shuts down."""

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            started = time.monotonic()
            try:
                await handler(key)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except Exception as e:  # noqa: BLE001 - any sync failure is retried with backoff
                retries = queue.retries(key)
                log.log(logging.WARNING if retries >= 3 else logging.INFO,
                        "%s: sync %s failed (retry %d): %s", name or queue.name, key, retries, e,
                        exc_info=not _expected(e))
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            queue.work_seconds_total += time.monotonic() - started
            queue.work_count += 1
            queue.done(key)

    async with asyncio.TaskGroup() as tg:
        for _ in range(max(1, workers)):
            tg.create_task(worker())


def _expected(e: Exception) -> bool:
    """API errors and lost connections are part of life; anything else deserves a traceback."""
    from .errors import ApiError, ConnectionFailed
    return isinstance(e, (ApiError, ConnectionFailed))
