"""kubelet.shared.SharedRead: callers waiting together share one read, and nobody gets a read older than its
request; SharedReads: the same per key (the kubelet's reads of the ConfigMaps and Secrets its pods use)."""
from __future__ import annotations

import asyncio

import pytest

from kubelet.shared import Interrupted, SharedRead, SharedReads


class Source:
    """A value that changes at every write; a read takes until `release` is set, to let callers pile up."""

    def __init__(self) -> None:
        self.version = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail: Exception | None = None

    async def read(self) -> int:
        seen = self.version  # the state as of the start of the read
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return seen


async def settle() -> None:
    """Let every runnable task run up to its next real wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_callers_asking_together_share_one_read() -> None:
    src = Source()
    shared = SharedRead(src.read)
    results = await asyncio.gather(*(shared.get() for _ in range(10)))  # ten pods queued at once
    assert results == [0] * 10
    assert shared.reads == 1


async def test_a_caller_arriving_during_a_read_waits_for_a_newer_one() -> None:
    src = Source()
    src.release.clear()
    shared = SharedRead(src.read)
    first = asyncio.create_task(shared.get())
    await settle()  # the first read has started and sees version 0
    src.version = 1  # a change after that read started ...
    later = [asyncio.create_task(shared.get()) for _ in range(5)]  # ... is what these callers must see
    await settle()
    src.release.set()
    assert await first == 0
    assert await asyncio.gather(*later) == [1] * 5
    assert shared.reads == 2  # the five late callers shared the second read


async def test_a_failed_read_fails_every_waiter_and_the_next_call_reads_again() -> None:
    src = Source()
    src.release.clear()
    src.fail = OSError("runc: boom")
    shared = SharedRead(src.read)
    waiters = [asyncio.create_task(shared.get()) for _ in range(3)]
    await settle()
    src.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, OSError) and str(r) == "runc: boom" for r in results)
    src.fail = None
    src.version = 7
    assert await shared.get() == 7


async def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    src = Source()
    src.release.clear()
    shared = SharedRead(src.read)
    first = asyncio.create_task(shared.get())
    await settle()  # first read in progress
    second_leader = asyncio.create_task(shared.get())
    second_waiter = asyncio.create_task(shared.get())
    await settle()
    second_waiter.cancel()
    src.version = 3
    src.release.set()
    assert await first == 0
    assert await second_leader == 3
    with pytest.raises(asyncio.CancelledError):
        await second_waiter


async def test_cancelling_the_caller_doing_the_read_tells_its_waiters_to_retry() -> None:
    src = Source()
    src.release.clear()
    shared = SharedRead(src.read)
    blocker = asyncio.create_task(shared.get())  # holds the read in progress
    await settle()
    leader = asyncio.create_task(shared.get())   # will do the next read, waits for the first to end
    follower = asyncio.create_task(shared.get())
    await settle()
    leader.cancel()
    with pytest.raises(Interrupted):
        await follower
    src.release.set()
    assert await blocker == 0
    src.version = 4
    assert await shared.get() == 4  # nothing stuck: a fresh read


async def test_keyed_reads_share_per_key_and_keep_nothing_afterwards() -> None:
    asked: list[str] = []
    release = asyncio.Event()

    async def read(key: str) -> str:
        asked.append(key)
        await release.wait()
        return f"{key}@{len(asked)}"
    reads: SharedReads[str, str] = SharedReads(read)
    # seven pods refreshing their volumes at once: six read the same ConfigMap, one another
    calls = [asyncio.create_task(reads.get("kube-root-ca.crt")) for _ in range(6)]
    calls.append(asyncio.create_task(reads.get("app-config")))
    await settle()
    release.set()
    results = await asyncio.gather(*calls)
    assert sorted(asked) == ["app-config", "kube-root-ca.crt"]
    assert len(set(results[:6])) == 1 and results[6].startswith("app-config@")
    assert len(reads) == 0  # nothing is cached: the next refresh reads again
    assert await reads.get("kube-root-ca.crt") == "kube-root-ca.crt@3"
