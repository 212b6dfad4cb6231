"""The real controller-manager, run in-process in the test's event loop against a test apiserver."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from tests.support.controlplane import ApiServer

ManagerFactory = Callable[..., Awaitable[asyncio.Task[None]]]


@asynccontextmanager
async def controller_manager(apiserver: ApiServer) -> AsyncIterator[ManagerFactory]:
    """Yields start("replicaset,deployment", *extra_flags), which runs controllers in this event loop; they are
    cancelled when the block ends."""
    from controllers.main import build_parser, run

    tasks: list[asyncio.Task[None]] = []

    async def start(controllers: str, *flags: str) -> asyncio.Task[None]:
        # Over TLS the kubeconfig carries the test CA the controllers must trust.
        connection = ["--kubeconfig", apiserver.kubeconfig] if apiserver.url.startswith("https:") else [
            "--server", apiserver.url, "--token", apiserver.token]
        config = build_parser().parse_args([*connection, "--controllers", controllers, *flags])
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

    try:
        yield start
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
