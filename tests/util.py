"""Small helpers shared by tests."""
from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any, Awaitable, Callable


def unique(prefix: str = "pkt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_sync(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
                  message: str = "condition") -> Any:
    """Poll predicate until it returns a truthy value; fail with `message` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


async def wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05,
                   message: str = "condition") -> Any:
    """Async version: predicate is a coroutine function."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
