"""At most N mutating requests served at once; the others wait their turn (`--max-mutating-requests-inflight`).

Why a small N keeps the watch cache in step with etcd: the apiserver is one event loop, and etcd's watch stream
brings the cache about one write's event per turn of that loop. Each request in flight also takes a turn for
each step it awaits, so with many writes in flight the loop turns slowly and the stream falls behind the writes
(measured: 32 clients creating pods, the cache ended 2,000 revisions behind etcd; watches then saw objects seconds
late, and informers whose watch started at a fresh list's revision failed "Too large resource version" and
re-listed). With 8 in flight the cache stays within a few dozen revisions and creates go as fast: the process is
busy either way.

As in Kubernetes' max-in-flight filter and API Priority and Fairness, reads and long-running requests (watch,
exec, attach, port-forward, proxy, logs) take no seat; unlike the max-in-flight filter, a request over the limit
waits in a queue (as Priority and Fairness queues it) instead of being answered 429. A seat is taken once the
request's body has been read (a client sending a slow body holds nothing) and given back when the handler has its
answer, before the answer is written.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from aiohttp import web

from apiserver import bodies
from apiserver.metrics import long_running

DEFAULT_LIMIT = 8

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def takes_a_seat(request: web.Request) -> bool:
    """A write that is not long-running (the metrics' in-flight count tells them apart the same way)."""
    return request.method not in ("GET", "HEAD", "OPTIONS") and not long_running(request)


class Seats:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free: asyncio.Semaphore | None = None  # made in the serving loop, on first use

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def limit_mutating(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.limit <= 0 or not takes_a_seat(request):
                return await handler(request)
            await bodies.read_raw(request)  # kept in the request for the handler
            if self._free is None:
                self._free = asyncio.Semaphore(self.limit)
            async with self._free:
                return await handler(request)
        return limit_mutating
