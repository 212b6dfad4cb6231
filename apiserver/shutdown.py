"""Graceful shutdown, as kube-apiserver does it on SIGTERM.

The order (apiserver/main.py run → aiohttp's AppRunner.cleanup):
1. the listening socket closes: no new connections; idle keep-alive connections close;
2. `stopping` is set (the app's on_shutdown): /readyz answers 503, every open watch ends with a proper end of
   its chunked body (the client sees a normal end of stream and re-watches elsewhere), proxied streams end
   cleanly: `logs -f` with the end of its body, exec/attach with a status frame and a WebSocket close frame,
   port-forward with a close frame;
3. in-flight unary requests get GRACE seconds to finish; whatever still runs then is cancelled.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

from aiohttp import web

T = TypeVar("T")

# Seconds in-flight requests get to finish once streams are closed (kept below the supervisor's stop grace).
GRACE = 5.0
STOPPING = web.AppKey("pkube.stopping", asyncio.Event)
MESSAGE = "the apiserver is shutting down"


def install(app: web.Application) -> asyncio.Event:
    """Give the app its `stopping` event, set when shutdown begins (before open requests are waited for)."""
    stopping = asyncio.Event()
    app[STOPPING] = stopping

    async def begin(_: web.Application) -> None:
        stopping.set()

    app.on_shutdown.insert(0, begin)
    return stopping


def stopping(request: web.Request) -> bool:
    event = request.config_dict.get(STOPPING)
    return event is not None and event.is_set()


class Interrupted(Exception):
    """The server began shutting down before the stream ended by itself."""


async def until_shutdown(request: web.Request, aw: Awaitable[T]) -> T:
    """Await `aw` (a long-running stream), cancelled when the server shuts down: then Interrupted is raised, for
    the caller to end its response cleanly."""
    event = request.config_dict.get(STOPPING)
    if event is None:
        return await aw
    task = asyncio.ensure_future(aw)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise Interrupted()
    return task.result()
