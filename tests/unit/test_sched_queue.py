"""The scheduling queue: ordering, backoff, and moving unschedulable pods back on cluster changes."""
from __future__ import annotations

import asyncio

from scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def pop_now(q: SchedulingQueue) -> str:
    return await asyncio.wait_for(q.pop(), 1)


async def test_priority_first_then_age() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("ns/old-low", 0)
    clock.now += 1
    q.add("ns/new-high", 10)
    clock.now += 1
    q.add("ns/new-low", 0)
    assert [await pop_now(q) for _ in range(3)] == ["ns/new-high", "ns/old-low", "ns/new-low"]


async def test_unschedulable_pod_waits_for_a_cluster_change_and_its_backoff() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("ns/p")
    assert await pop_now(q) == "ns/p"
    q.unschedulable("ns/p")
    assert q.pending() == {"active": 0, "backoff": 0, "unschedulable": 1}
    clock.now += 30
    q.flush()
    assert q.pending()["unschedulable"] == 1  # nothing changed: it stays parked
    q.move_all_to_active()
    assert q.pending()["active"] == 1  # its 1 s backoff long passed
    assert await pop_now(q) == "ns/p"


async def test_backoff_doubles_up_to_the_maximum() -> None:
    clock = Clock()
    q = SchedulingQueue(initial_backoff=1, max_backoff=10, clock=clock)
    q.add("ns/p")
    waited = []
    for _ in range(6):
        await pop_now(q)
        q.unschedulable("ns/p")
        q.move_all_to_active()  # a change arrived at once: the pod must still sit out its backoff
        assert q.pending()["backoff"] == 1
        start = clock.now
        while q.pending()["active"] == 0:
            clock.now += 0.5
            q.flush()
        waited.append(clock.now - start)
    assert waited == [1, 2, 4, 8, 10, 10]


async def test_failure_during_a_move_request_goes_to_backoff_not_unschedulable() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("ns/p")
    await pop_now(q)
    q.move_all_to_active()  # e.g. a node was added while "ns/p" was being scheduled
    q.unschedulable("ns/p")
    assert q.pending() == {"active": 0, "backoff": 1, "unschedulable": 0}
    clock.now += 1
    q.flush()
    assert await pop_now(q) == "ns/p"


async def test_long_waiting_unschedulable_pods_are_retried_anyway() -> None:
    clock = Clock()
    q = SchedulingQueue(max_unschedulable=60, clock=clock)
    q.add("ns/p")
    await pop_now(q)
    q.unschedulable("ns/p")
    clock.now += 61
    q.flush()
    assert await pop_now(q) == "ns/p"


async def test_deleted_pods_are_never_popped_and_updates_retry() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("ns/a")
    q.add("ns/b")
    q.delete("ns/a")
    assert await pop_now(q) == "ns/b"
    q.unschedulable("ns/b")
    clock.now += 2
    q.update("ns/b")  # the pod's spec changed: it may fit now
    assert await pop_now(q) == "ns/b"
    q.done("ns/b")
    assert "ns/b" not in q


async def test_pop_waits_for_an_add() -> None:
    q = SchedulingQueue()
    waiter = asyncio.create_task(q.pop())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.add("ns/late")
    assert await asyncio.wait_for(waiter, 1) == "ns/late"


async def test_adding_a_pod_being_scheduled_does_not_queue_it_twice() -> None:
    q = SchedulingQueue()
    q.add("ns/p")
    await pop_now(q)
    q.add("ns/p")
    assert q.pending()["active"] == 0
