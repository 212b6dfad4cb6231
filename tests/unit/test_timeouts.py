"""pklib.timeouts.wait_for keeps a cancellation that arrives as the awaited thing completes (asyncio.wait_for in
Python 3.11 loses it: the component's main task then never stops on SIGTERM)."""
from __future__ import annotations

import asyncio

import pytest

from pklib.timeouts import wait_for


def test_a_cancellation_at_completion_is_kept() -> None:
    async def main() -> None:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(wait_for(fut, 10))
        await asyncio.sleep(0)  # the task now waits for fut
        fut.set_result(1)       # completes ...
        task.cancel()           # ... in the same iteration as the cancel
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(main())


def test_result_and_timeout() -> None:
    async def main() -> None:
        assert await wait_for(asyncio.sleep(0, result=7), 1) == 7
        assert await wait_for(asyncio.sleep(0, result=8), None) == 8
        with pytest.raises(TimeoutError):
            await wait_for(asyncio.sleep(5), 0.05)
        with pytest.raises(asyncio.TimeoutError):  # the same class: callers that catch either keep working
            await wait_for(asyncio.sleep(5), 0.05)
    asyncio.run(main())
