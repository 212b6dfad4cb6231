"""The watch cache over the in-memory store: history for resuming, filtering, and dropping slow watchers."""
from __future__ import annotations

import asyncio
import tracemalloc
from typing import AsyncIterator

import orjson
import pytest

from apiserver import watchcache
from apiserver.storage.memory import MemoryStorage
from apiserver.watchcache import TooOld, WatchCache, Watcher

PREFIX = "/registry/core/configmaps/"


@pytest.fixture
async def setup() -> AsyncIterator[tuple[MemoryStorage, WatchCache]]:
    store = MemoryStorage()
    await store.create(PREFIX + "ns/before", {"metadata": {"name": "before", "namespace": "ns"}})
    cache = WatchCache(store)
    await cache.start()
    yield store, cache
    await cache.stop()


def cm(name: str, ns: str = "ns", **labels: str) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}}


async def test_cache_loads_and_follows_the_store(setup: tuple[MemoryStorage, WatchCache]) -> None:
    store, cache = setup
    rc = cache.for_prefix(PREFIX)
    assert [c.obj["metadata"]["name"] for c in rc.items(PREFIX, None)] == ["before"]
    rev = await store.create(PREFIX + "ns/a", cm("a"))
    assert await cache.wait_for_revision(rev, 5)
    items = rc.items(PREFIX + "ns/", None)
    assert [c.obj["metadata"]["name"] for c in items] == ["a", "before"]
    # The cached JSON carries the resourceVersion: lists splice it without re-encoding.
    assert orjson.loads(items[0].raw)["metadata"]["resourceVersion"] == str(rev)


async def test_pages_in_key_order_say_where_the_next_one_starts(setup: tuple[MemoryStorage, WatchCache]) -> None:
    store, cache = setup
    rev = 0
    for i in range(5):
        rev = await store.create(PREFIX + f"ns/c{i}", cm(f"c{i}", odd=str(i % 2 == 1).lower()))
    assert await cache.wait_for_revision(rev, 5)
    rc = cache.for_prefix(PREFIX)

    def names(items: list[watchcache.Cached]) -> list[str]:
        return [c.obj["metadata"]["name"] for c in items]
    first, last = rc.page(PREFIX + "ns/", None, 2, None)
    assert names(first) == ["before", "c0"] and last == PREFIX + "ns/c0"
    second, last = rc.page(PREFIX + "ns/", last + "\x00", 2, None)
    assert names(second) == ["c1", "c2"] and last == PREFIX + "ns/c2"
    third, last = rc.page(PREFIX + "ns/", last + "\x00", 2, None)
    assert names(third) == ["c3", "c4"] and last is None  # nothing after it: no next page
    # A filter fills the page from further on; the next page starts after the last match, not the last key read.
    odd = lambda o: (o["metadata"].get("labels") or {}).get("odd") == "true"  # noqa: E731
    page, last = rc.page(PREFIX + "ns/", None, 1, odd)
    assert names(page) == ["c1"] and last == PREFIX + "ns/c1"
    page, last = rc.page(PREFIX + "ns/", last + "\x00", 5, odd)
    assert names(page) == ["c3"] and last is None


async def test_history_replays_after_a_revision_and_refuses_older(setup: tuple[MemoryStorage, WatchCache]) -> None:
    store, cache = setup
    start = cache.revision
    r1 = await store.create(PREFIX + "ns/a", cm("a"))
    r2 = await store.update(PREFIX + "ns/a", cm("a", v="2"), r1)
    await store.delete(PREFIX + "ns/a")
    assert await cache.wait_for_revision(r2 + 1, 5)
    rc = cache.for_prefix(PREFIX)
    assert [ev.type for ev in rc.since(start)] == ["ADDED", "MODIFIED", "DELETED"]
    assert [ev.type for ev in rc.since(r1)] == ["MODIFIED", "DELETED"]
    with pytest.raises(TooOld):
        rc.since(start - 1)  # before the cache was loaded: unknown history


async def test_bounded_history_forgets_old_events() -> None:
    store = MemoryStorage()
    cache = WatchCache(store)
    await cache.start()
    try:
        rc = cache.for_prefix(PREFIX)
        rc.history = type(rc.history)(maxlen=3)
        first = await store.create(PREFIX + "ns/a", cm("a"))
        rev = first
        for i in range(5):
            rev = await store.update(PREFIX + "ns/a", cm("a", v=str(i)), rev)
        assert await cache.wait_for_revision(rev, 5)
        with pytest.raises(TooOld):
            rc.since(first)
        assert len(rc.since(rev - 2)) == 2
    finally:
        await cache.stop()


async def test_selector_watchers_see_objects_enter_and_leave(setup: tuple[MemoryStorage, WatchCache]) -> None:
    store, cache = setup
    rc = cache.for_prefix(PREFIX)
    w = Watcher(PREFIX + "ns/", lambda o: (o["metadata"].get("labels") or {}).get("team") == "blue")
    rc.watchers.add(w)
    r = await store.create(PREFIX + "ns/x", cm("x", team="red"))
    r = await store.update(PREFIX + "ns/x", cm("x", team="blue"), r)
    await store.create(PREFIX + "other/y", cm("y", "other", team="blue"))  # another namespace
    r = await store.update(PREFIX + "ns/x", cm("x", team="red"), r)
    assert await cache.wait_for_revision(r, 5)
    lines = []
    while not w.queue.empty():
        lines.append(orjson.loads(w.queue.get_nowait() or b"null"))
    assert [(ev["type"], ev["object"]["metadata"]["labels"]["team"]) for ev in lines] == [
        ("ADDED", "blue"), ("DELETED", "red")]


async def test_event_lines_are_shared_by_watchers_but_not_kept_in_history(
        setup: tuple[MemoryStorage, WatchCache]) -> None:
    store, cache = setup
    rc = cache.for_prefix(PREFIX)
    a, b = Watcher(PREFIX, lambda o: True), Watcher(PREFIX, lambda o: True)
    rc.watchers.update({a, b})
    rev = await store.create(PREFIX + "ns/x", cm("x"))
    assert await cache.wait_for_revision(rev, 5)
    line = a.queue.get_nowait()
    assert line is not None and line is b.queue.get_nowait()  # encoded once for both
    # The history holds the object, not also its encoded line (which would double its bytes under load).
    assert [ev.lines for _, ev in rc.history] == [{}]
    assert rc.replay(rev - 1, PREFIX, lambda o: True) == [line]  # a resumed watch: encoded again, not kept
    assert [ev.lines for _, ev in rc.history] == [{}]


async def test_history_keeps_superseded_versions_as_right_sized_json(setup: tuple[MemoryStorage, WatchCache]) -> None:
    store, cache = setup
    rc = cache.for_prefix(PREFIX)
    r1 = await store.create(PREFIX + "ns/a", cm("a", v="1"))
    r2 = await store.update(PREFIX + "ns/a", cm("a", v="2"), r1)
    r3 = (await store.delete(PREFIX + "ns/a")).mod_revision
    assert await cache.wait_for_revision(r3, 5)
    created, updated, deleted = (ev.obj for _, ev in rc.history)
    # Only the JSON is held for versions no longer current; `obj` decodes it when a resumed watch filters.
    assert created._obj is updated._obj is deleted._obj is None
    assert [(c.obj["metadata"]["labels"]["v"], c.obj["metadata"]["resourceVersion"]) for c in
            (created, updated, deleted)] == [("1", str(r1)), ("2", str(r2)), ("2", str(r3))]
    v2 = rc.replay(r1 - 1, PREFIX, lambda o: o["metadata"]["labels"]["v"] == "2")
    assert [orjson.loads(line)["type"] for line in v2] == ["ADDED", "DELETED"]
    everything = rc.replay(r1 - 1, PREFIX, None)  # no filter: nothing to decode
    assert [orjson.loads(line)["type"] for line in everything] == ["ADDED", "MODIFIED", "DELETED"]


def test_cached_json_is_right_sized() -> None:
    """orjson's bytes keep the buffer it grew (8 KiB for 1 KiB of JSON); the cache keeps a right-sized copy."""
    obj = cm("big", payload="x" * 1000)
    tracemalloc.start()
    try:
        raw = watchcache.encode(obj)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert raw == orjson.dumps(obj)
    assert held < 1.5 * len(raw), (held, len(raw))


async def test_slow_watcher_is_dropped_without_blocking_others(setup: tuple[MemoryStorage, WatchCache]) -> None:
    store, cache = setup
    rc = cache.for_prefix(PREFIX)
    slow = Watcher(PREFIX, lambda o: True, asyncio.Queue(3))
    fast = Watcher(PREFIX, lambda o: True, asyncio.Queue(100))
    rc.watchers.update({slow, fast})
    rev = 0
    for i in range(10):
        rev = await store.create(PREFIX + f"ns/o{i}", cm(f"o{i}"))
    assert await cache.wait_for_revision(rev, 5)
    assert slow.dropped and slow.queue.get_nowait() is None  # told to go away, nothing else queued
    assert not fast.dropped and fast.queue.qsize() == 10


async def test_catch_up_when_only_others_wrote(setup: tuple[MemoryStorage, WatchCache]) -> None:
    store, cache = setup
    # A write outside the cache's key space moves the store revision without an event for the cache...
    foreign = await store.create("/elsewhere/x", {"v": 1})
    assert cache.revision < foreign
    # ...so catching up writes a throw-away marker under /registry/ and waits for its event.
    assert await cache.catch_up(5)
    assert cache.revision >= foreign
    assert (await store.list("/registry/progress/")).entries == []  # the marker is gone again


async def test_load_reads_in_pages_at_one_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchcache, "LOAD_PAGE", 2)
    store = MemoryStorage()
    for i in range(5):
        await store.create(PREFIX + f"ns/o{i}", cm(f"o{i}"))
    cache = WatchCache(store)
    await cache.start()
    try:
        names = [c.obj["metadata"]["name"] for c in cache.for_prefix(PREFIX).items(PREFIX, None)]
        assert names == ["o0", "o1", "o2", "o3", "o4"]
    finally:
        await cache.stop()


async def test_history_is_bounded_in_bytes_and_a_watch_from_before_it_is_expired() -> None:
    """Many large events: the history keeps the newest that fit in the byte budget (far fewer than HISTORY
    events), the current objects all stay, and resuming from a forgotten revision is TooOld (410 Expired)."""
    store = MemoryStorage()
    budget = 1024 * 1024
    cache = WatchCache(store, max_bytes=budget)
    await cache.start()
    try:
        rc = cache.for_prefix(PREFIX)
        payload = "x" * 100_000
        first = rev = await store.create(PREFIX + "ns/big", cm("big", payload=payload))
        revisions = [first]
        for i in range(60):
            rev = await store.update(PREFIX + "ns/big", cm("big", payload=payload, v=str(i)), rev)
            revisions.append(rev)
        for i in range(40):
            revisions.append(await store.create(PREFIX + f"ns/o{i}", cm(f"o{i}", payload=payload)))
        assert await cache.wait_for_revision(revisions[-1], 5)
        held = sum(len(ev.obj.raw) for _, ev in rc.history)
        assert held == rc.history_bytes <= budget
        assert budget - 110_000 < held, "the budget is used, not emptied"
        assert 5 <= len(rc.history) <= 10
        assert len(rc.items(PREFIX, None)) == 41   # every current object stays
        with pytest.raises(TooOld):
            rc.replay(first, PREFIX, None)   # what serve_watch answers with 410 Expired
        with pytest.raises(TooOld):
            rc.since(revisions[-len(rc.history) - 2])
        kept = rc.replay(revisions[-len(rc.history) - 1], PREFIX, None)
        assert len(kept) == len(rc.history)
        assert all(orjson.loads(line)["type"] == "ADDED" for line in kept)
    finally:
        await cache.stop()


async def test_cache_size_is_exported_at_metrics(setup: tuple[MemoryStorage, WatchCache]) -> None:
    """apiserver_storage_objects and the history's events/bytes per resource, read at each scrape."""
    from apiserver.metrics import Metrics
    store, cache = setup
    metrics = Metrics()
    metrics.watch_cache(cache.stats)
    rev = await store.create(PREFIX + "ns/a", cm("a"))
    rev = await store.create("/registry/apps/deployments/ns/d", cm("d"))
    assert await cache.wait_for_revision(rev, 5)
    rc = cache.for_prefix(PREFIX)
    text = metrics.render().body.decode()  # type: ignore[union-attr]
    assert 'apiserver_storage_objects{resource="configmaps"} 2.0' in text
    assert 'apiserver_storage_objects{resource="deployments.apps"} 1.0' in text
    assert 'pkube_watch_cache_events{resource="configmaps"} 1.0' in text
    assert f'pkube_watch_cache_bytes{{resource="configmaps"}} {float(rc.history_bytes)}' in text
    await store.delete(PREFIX + "ns/a")
    assert await cache.wait_for_revision(rev + 1, 5)
    text = metrics.render().body.decode()  # type: ignore[union-attr]
    assert 'apiserver_storage_objects{resource="configmaps"} 1.0' in text
    assert 'pkube_watch_cache_events{resource="configmaps"} 2.0' in text


async def test_history_older_than_its_age_goes_beyond_the_newest_hundred(
        setup: tuple[MemoryStorage, WatchCache]) -> None:
    """A resource that changes steadily keeps only HISTORY_AGE of events (but at least HISTORY_MIN): a watch resumed
    from further back is TooOld (410 Expired), one from within it replays."""
    store, cache = setup
    rc = cache.for_prefix(PREFIX)
    rev = first = await store.create(PREFIX + "ns/busy", cm("busy"))
    revisions = [first]
    for i in range(150):
        rev = await store.update(PREFIX + "ns/busy", cm("busy", v=str(i)), rev)
        revisions.append(rev)
    assert await cache.wait_for_revision(rev, 5)
    assert len(rc.history) >= 151  # young: all kept
    for _, ev in list(rc.history)[:120]:
        ev.at -= watchcache.HISTORY_AGE + 1  # these are older than the age now
    rev = await store.update(PREFIX + "ns/busy", cm("busy", v="last"), rev)
    assert await cache.wait_for_revision(rev, 5)
    assert len(rc.history) == watchcache.HISTORY_MIN  # the old ones went, down to the newest hundred
    with pytest.raises(TooOld):
        rc.since(first)
    assert len(rc.since(rev - watchcache.HISTORY_MIN + 1)) == watchcache.HISTORY_MIN - 1
