"""`wait_for`: asyncio.wait_for without Python 3.11's lost cancellation.

In Python 3.11, when the task inside `asyncio.wait_for(aw, t)` is cancelled in the same loop iteration as `aw`
completes, wait_for returns `aw`'s result and the cancellation is gone (3.12 rewrote wait_for on
asyncio.timeout for this reason). A component whose main task SIGTERM cancels then keeps running: the kubelet,
whose pod workers call runc through wait_for all the time, outlived its supervisor that way under load.
`asyncio.timeout()` (3.11) keeps the cancellation, so every component waits through this instead.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """`await aw`, raising TimeoutError after `timeout` seconds (None: no limit), as asyncio.wait_for does."""
    async with asyncio.timeout(timeout):
        return await aw
