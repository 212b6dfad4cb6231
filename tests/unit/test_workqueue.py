"""Work queue semantics the controllers rely on: dedup, one worker per key, backoff, delayed adds."""
from __future__ import annotations

import asyncio

import pytest

from pklib.workqueue import ItemExponentialBackoff, RateLimiter, ShutDown, TokenBucket, WorkQueue, run_workers


async def test_duplicate_adds_are_queued_once() -> None:
    q = WorkQueue()
    for _ in range(5):
        q.add("ns/a")
    q.add("ns/b")
    assert len(q) == 2
    assert await q.get() == "ns/a"
    assert await q.get() == "ns/b"


async def test_key_added_while_processing_waits_for_done() -> None:
    q = WorkQueue()
    q.add("k")
    key = await q.get()
    q.add("k")  # changed again while a worker holds it
    assert len(q) == 0, "a key in processing must not be handed to a second worker"
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not second.done()
    q.done(key)
    assert await asyncio.wait_for(second, 1) == "k"


async def test_workers_never_run_one_key_concurrently() -> None:
    q = WorkQueue()
    running: set[str] = set()
    overlaps: list[str] = []
    processed: list[str] = []

    async def handler(key: object) -> None:
        k = str(key)
        if k in running:
            overlaps.append(k)
        running.add(k)
        await asyncio.sleep(0.001)
        processed.append(k)
        running.discard(k)

    workers = asyncio.create_task(run_workers(q, handler, workers=4))
    for i in range(50):
        q.add(f"k{i % 3}")
        await asyncio.sleep(0)
    for _ in range(200):
        if not len(q) and not running:
            break
        await asyncio.sleep(0.005)
    q.shutdown()
    await asyncio.wait_for(workers, 2)
    assert overlaps == []
    assert {"k0", "k1", "k2"} <= set(processed)


def test_item_backoff_doubles_and_caps() -> None:
    b = ItemExponentialBackoff(base=0.005, cap=300)
    delays = [b.when("x") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 300
    assert b.when("other") == 0.005, "backoff is per key"
    b.forget("x")
    assert b.when("x") == 0.005


def test_token_bucket_limits_overall_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(qps=10, burst=2, clock=lambda: now[0])
    assert bucket.reserve() == 0 and bucket.reserve() == 0
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    now[0] += 10  # refilled, but never above the burst
    assert bucket.reserve() == 0 and bucket.reserve() == 0
    assert bucket.reserve() > 0


async def test_failing_key_is_retried_with_growing_delay() -> None:
    q = WorkQueue(rate_limiter=RateLimiter(base=0.01, cap=1))
    loop = asyncio.get_running_loop()
    attempts: list[float] = []

    async def handler(key: object) -> None:
        attempts.append(loop.time())
        if len(attempts) < 4:
            raise RuntimeError("transient")

    workers = asyncio.create_task(run_workers(q, handler, workers=2))
    q.add("k")
    for _ in range(400):
        if len(attempts) >= 4:
            break
        await asyncio.sleep(0.005)
    q.shutdown()
    await asyncio.wait_for(workers, 2)
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert len(attempts) == 4
    assert gaps[0] >= 0.009 and gaps[1] >= 0.019 and gaps[2] >= 0.039
    assert q.retries("k") == 0, "success forgets the failures"


async def test_add_after_delays_and_earliest_wins() -> None:
    q = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("k", 5)
    q.add_after("k", 0.05)  # the earlier one replaces the later
    q.add_after("k", 1)     # a later one does not postpone it
    key = await asyncio.wait_for(q.get(), 2)
    elapsed = loop.time() - start
    assert key == "k" and 0.04 <= elapsed < 1
    q.done(key)
    assert len(q) == 0


async def test_shutdown_releases_waiting_workers() -> None:
    q = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(getter, 1)
    q.add("ignored")
    assert len(q) == 0


def test_a_delay_uvloop_rounds_to_nothing_then_a_longer_one_on_the_loop_components_run() -> None:
    """uvloop (the components' loop) schedules a delay under half a millisecond as call_soon, whose Handle has no
    when(): the next add_after of that key crashed the controller-manager with AttributeError."""
    import uvloop

    async def main() -> list[str]:
        q = WorkQueue("t")
        q.add_after("k", 0.0001)
        q.add_after("k", 5.0)  # the earlier pending add wins
        got = [str(await asyncio.wait_for(q.get(), 2))]
        q.done("k")
        q.add_after("k", 0.0002)
        q.add_after("k", 0.0001)
        got.append(str(await asyncio.wait_for(q.get(), 2)))
        q.shutdown()
        return got

    assert uvloop.run(main()) == ["k", "k"]
