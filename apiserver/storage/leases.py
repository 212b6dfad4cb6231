"""Leases for keys that expire by themselves (Events, `--event-ttl`), shared as kube-apiserver shares them.

Granting an etcd lease per Event would make etcd track one lease per object. Kubernetes' storage
(`etcd3/lease_manager.go`) instead reuses the last lease for every object written within a short
window: a lease is granted with a little extra time-to-live (5% of the TTL, at most 60 s), and
later writes reuse it while it still outlives their own TTL — so each object lives between TTL
and TTL + that window — up to 1000 objects per lease.
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

REUSE_PERCENT = 0.05
REUSE_MAX_SECONDS = 60
MAX_ATTACHED = 1000


class LeaseManager:
    def __init__(self, grant: Callable[[int], Awaitable[int]], clock: Callable[[], float] = time.monotonic,
                 reuse_percent: float = REUSE_PERCENT, reuse_max_seconds: int = REUSE_MAX_SECONDS,
                 max_attached: int = MAX_ATTACHED):
        self._grant = grant  # ttl seconds -> a new lease id
        self._clock = clock
        self._reuse_percent = reuse_percent
        self._reuse_max = reuse_max_seconds
        self._max_attached = max_attached
        self._lock = asyncio.Lock()
        self._lease = 0
        self._expires = 0.0
        self._attached = 0

    def reuse_seconds(self, ttl: int) -> int:
        return min(int(self._reuse_percent * ttl), self._reuse_max)

    async def lease_for(self, ttl: int) -> int:
        """A lease that keeps a key written now alive for at least `ttl` seconds (and at most ttl + reuse)."""
        async with self._lock:
            now = self._clock()
            reuse = self.reuse_seconds(ttl)
            outlives = now + ttl < self._expires
            not_too_long = now + ttl + reuse > self._expires
            self._attached += 1
            if self._lease and outlives and not_too_long and self._attached <= self._max_attached:
                return self._lease
            granted_ttl = ttl + reuse
            self._lease = await self._grant(granted_ttl)
            self._expires = now + granted_ttl
            self._attached = 1
            return self._lease

    def forget(self) -> None:
        """The lease is gone (etcd said so, or we moved to another cluster member): grant a new one next time."""
        self._lease, self._expires, self._attached = 0, 0.0, 0
