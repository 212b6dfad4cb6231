"""Fixtures for controller tests: the real controller-manager, in-process, against the real apiserver."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Callable

import pytest

from tests.conftest import ApiServer

ManagerFactory = Callable[..., Awaitable[asyncio.Task[None]]]


@pytest.fixture
async def start_manager(apiserver: ApiServer) -> AsyncIterator[ManagerFactory]:
    """start_manager("replicaset,deployment", *extra_flags) runs controllers in this event loop until the test ends."""
    from controllers.main import build_parser, run

    tasks: list[asyncio.Task[None]] = []

    async def start(controllers: str, *flags: str) -> asyncio.Task[None]:
        config = build_parser().parse_args(["--server", apiserver.url, "--token", apiserver.token,
                                            "--controllers", controllers, *flags])
        ready = asyncio.Event()
        task = asyncio.create_task(run(config, ready))
        tasks.append(task)
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if task.done():
                task.result()  # raises what went wrong
            raise AssertionError("controller-manager did not become ready in 30s")
        return task

    yield start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
