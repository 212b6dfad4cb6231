"""The storage contract, run against the in-memory fake and the real etcd backend alike.

If both pass the same tests, unit tests that use MemoryStorage exercise the semantics
the API server gets from etcd.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator

import grpc
import pytest
from aetcd import rpc

from apiserver.storage.etcd import EtcdStorage
from apiserver.storage.interface import (CompactedError, KeyExistsError, KeyNotFoundError, RevisionConflictError,
                                         Storage, StorageError, WatchEvent)
from apiserver.storage.memory import MemoryStorage
from tests.util import free_port, unique, wait_for


@pytest.fixture(params=["memory", "etcd"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    if request.param == "memory":
        s: Storage = MemoryStorage()
    else:
        etcd = request.getfixturevalue("etcd")
        s = EtcdStorage([etcd.url], "/" + unique("st"))
    yield s
    await s.close()


async def test_create_get_and_duplicate(store: Storage) -> None:
    rev = await store.create("/registry/core/pods/ns/a", {"n": 1})
    got = await store.get("/registry/core/pods/ns/a")
    assert got is not None and got.value == {"n": 1} and got.mod_revision == rev == got.create_revision
    with pytest.raises(KeyExistsError):
        await store.create("/registry/core/pods/ns/a", {"n": 2})
    assert (await store.get("/registry/core/pods/ns/a")).value == {"n": 1}  # type: ignore[union-attr]
    assert await store.get("/registry/core/pods/ns/missing") is None


async def test_update_compares_revision(store: Storage) -> None:
    rev1 = await store.create("/registry/k", {"v": 1})
    rev2 = await store.update("/registry/k", {"v": 2}, rev1)
    assert rev2 > rev1
    with pytest.raises(RevisionConflictError):
        await store.update("/registry/k", {"v": 3}, rev1)
    assert (await store.get("/registry/k")).value == {"v": 2}  # type: ignore[union-attr]
    with pytest.raises(KeyNotFoundError):
        await store.update("/registry/nope", {"v": 1}, rev1)


async def test_racing_updates_exactly_one_wins(store: Storage) -> None:
    rev = await store.create("/registry/race", {"v": 0})
    results = await asyncio.gather(*(store.update("/registry/race", {"v": i}, rev) for i in range(1, 6)),
                                   return_exceptions=True)
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 1
    assert all(isinstance(r, RevisionConflictError) for r in results if not isinstance(r, int))


async def test_delete_returns_last_value_and_checks_revision(store: Storage) -> None:
    rev = await store.create("/registry/d", {"v": 1})
    with pytest.raises(RevisionConflictError):
        await store.delete("/registry/d", rev + 100)
    deleted = await store.delete("/registry/d", rev)
    assert deleted.value == {"v": 1} and deleted.mod_revision > rev
    assert await store.get("/registry/d") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/registry/d")


async def test_list_prefix_order_limit_and_revision(store: Storage) -> None:
    for name in ("c", "a", "b"):
        await store.create(f"/registry/core/cm/ns/{name}", {"name": name})
    await store.create("/registry/core/cm/other/z", {"name": "z"})
    first = await store.list("/registry/core/cm/ns/")
    assert [e.value["name"] for e in first.entries] == ["a", "b", "c"] and not first.more
    page = await store.list("/registry/core/cm/ns/", limit=2)
    assert [e.value["name"] for e in page.entries] == ["a", "b"] and page.more
    # A later write is invisible when listing at the earlier revision.
    await store.create("/registry/core/cm/ns/aa", {"name": "aa"})
    rest = await store.list("/registry/core/cm/ns/", start_key="/registry/core/cm/ns/b", revision=page.revision)
    assert [e.value["name"] for e in rest.entries] == ["b", "c"]
    now = await store.list("/registry/core/cm/ns/")
    assert [e.value["name"] for e in now.entries] == ["a", "aa", "b", "c"]


async def _collect(it: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    async for ev in it:
        out.append(ev)
        if len(out) == n:
            break
    return out


async def test_watch_from_revision_replays_in_order(store: Storage) -> None:
    start = await store.current_revision()
    r1 = await store.create("/registry/w/x", {"v": 1})
    await store.update("/registry/w/x", {"v": 2}, r1)
    await store.create("/registry/other/y", {"v": 9})  # outside the watched prefix
    await store.delete("/registry/w/x")
    events = await asyncio.wait_for(_collect(store.watch("/registry/w/", start + 1), 3), 10)
    assert [(e.type, e.value) for e in events] == [("PUT", {"v": 1}), ("PUT", {"v": 2}), ("DELETE", {"v": 2})]
    assert events[0].is_create and not events[1].is_create
    assert events[0].mod_revision < events[1].mod_revision < events[2].mod_revision


async def test_watch_sees_live_writes(store: Storage) -> None:
    start = await store.current_revision()
    collector = asyncio.create_task(_collect(store.watch("/registry/live/", start + 1), 2))
    await store.create("/registry/live/a", {"v": 1})
    await store.create("/registry/live/b", {"v": 2})
    events = await asyncio.wait_for(collector, 10)
    assert [e.key for e in events] == ["/registry/live/a", "/registry/live/b"]


async def test_compaction(store: Storage) -> None:
    r1 = await store.create("/registry/c/x", {"v": 1})
    r2 = await store.update("/registry/c/x", {"v": 2}, r1)
    r3 = await store.update("/registry/c/x", {"v": 3}, r2)
    await store.compact(r3)
    with pytest.raises(CompactedError):
        await _collect(store.watch("/registry/c/", r1), 1)
    with pytest.raises(CompactedError):
        await store.list("/registry/c/", revision=r1)
    # The latest value survives compaction.
    assert (await store.get("/registry/c/x")).value == {"v": 3}  # type: ignore[union-attr]
    assert await store.healthy()


async def test_list_in_the_past_reports_that_revision(store: Storage) -> None:
    await store.create("/registry/past/a", {"v": 1})
    then = (await store.list("/registry/past/")).revision
    await store.create("/registry/past/b", {"v": 2})
    old = await store.list("/registry/past/", revision=then)
    assert old.revision == then and [e.key for e in old.entries] == ["/registry/past/a"]


async def test_large_lists_beyond_grpc_default_message_size(store: Storage) -> None:
    blob = "x" * 10_000
    await asyncio.gather(*(store.create(f"/registry/big/{i:04d}", {"blob": blob}) for i in range(600)))
    listed = await store.list("/registry/big/")  # ~6 MB in one response
    assert len(listed.entries) == 600 and not listed.more


async def test_a_read_in_flight_survives_another_caller_moving_to_the_next_endpoint(etcd: Any) -> None:
    """With several etcd endpoints, a caller that finds one unavailable closes its connection and moves on; gRPC
    cancels the calls still on that connection. Those calls must be retried on the next endpoint, not end their
    task with a CancelledError (the apiserver's watch cache loop died of it and the apiserver stayed unready)."""
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def never_answers(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # a member that accepted the connection and hangs
        accepted.set()

    server = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    prefix = "/" + unique("st")
    writer = EtcdStorage([etcd.url], prefix)
    store = EtcdStorage([f"http://127.0.0.1:{port}", etcd.url], prefix)
    try:
        await writer.create("/registry/a/kept", {"v": 1})
        read = asyncio.create_task(store.get("/registry/a/kept"))
        await asyncio.wait_for(accepted.wait(), 10)
        assert not read.done()
        await store._reconnect(store._client)  # what a caller that got UNAVAILABLE does
        entry = await asyncio.wait_for(read, 10)
        assert entry is not None and entry.value == {"v": 1}
    finally:
        for w in held:
            w.close()
        server.close()
        await store.close()
        await writer.close()


class LostAnswers:
    """The real etcd's Txn, whose next `lose` answers are lost after etcd carried the write out (`done`) or
    before it got there: what a client sees of a proposal when the etcd leader dies (etcd answered "request timed
    out" after 7 s)."""

    def __init__(self, store: EtcdStorage, client: Any) -> None:
        self.real, self.lose, self.done, self.calls = client.kvstub.Txn, 0, True, 0
        client.kvstub.Txn = self

    async def __call__(self, request: Any, timeout: float | None = None, **kw: Any) -> Any:
        self.calls += 1
        if self.lose and not self.done:
            self.lose -= 1
            raise rpc.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                  "Deadline Exceeded")
        resp = await self.real(request, timeout=timeout, **kw)
        if self.lose:
            self.lose -= 1
            raise rpc.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                  "Deadline Exceeded")
        return resp


async def test_a_write_whose_answer_was_lost_is_sent_again_and_counts_once(etcd: Any) -> None:
    """etcd left a write unanswered: the apiserver sends it again (after WRITE_TIMEOUT, not etcd's 7 s), and when
    the first try had been carried out, finds its own value under the key and reports that write a success, not
    a conflict with itself."""
    store = EtcdStorage([etcd.url], "/" + unique("st"))
    try:
        txn = LostAnswers(store, await store._connect())
        txn.lose = 1
        rev = await store.create("/registry/a/k", {"v": 1})
        got = await store.get("/registry/a/k")
        assert got is not None and got.value == {"v": 1} and got.mod_revision == rev and txn.calls == 2
        txn.lose = 2
        rev2 = await store.update("/registry/a/k", {"v": 2}, rev)
        got = await store.get("/registry/a/k")
        assert got is not None and got.value == {"v": 2} and got.mod_revision == rev2 > rev
        # lost before etcd had it: the second try makes it
        txn.lose, txn.done = 1, False
        rev3 = await store.update("/registry/a/k", {"v": 3}, rev2)
        assert (await store.get("/registry/a/k")).mod_revision == rev3  # type: ignore[union-attr]
        # someone else's write in between is still a conflict, and an existing key still exists
        txn.lose = 0
        with pytest.raises(RevisionConflictError):
            await store.update("/registry/a/k", {"v": 4}, rev2)
        with pytest.raises(KeyExistsError):
            await store.create("/registry/a/k", {"v": 1})
    finally:
        await store.close()


def _watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("etcd-watch") and t.is_alive()]


async def test_an_etcd_watch_delivers_a_burst_in_order_and_closing_it_ends_its_thread(etcd: Any) -> None:
    """The watch is read by a thread of its own (apiserver/storage/etcdwatch.py): what it hands over comes in
    revision order, whatever the batching, and closing the watch stops that thread."""
    store = EtcdStorage([etcd.url], "/" + unique("st"))
    before = set(_watch_threads())
    try:
        start = await store.current_revision()
        watch = store.watch("/registry/burst/", start + 1)
        first = asyncio.ensure_future(watch.__anext__())
        await asyncio.gather(*(store.create(f"/registry/burst/{i:03d}", {"i": i}) for i in range(300)))
        events = [await asyncio.wait_for(first, 10)]
        while len(events) < 300:
            events.append(await asyncio.wait_for(watch.__anext__(), 10))
        revisions = [ev.mod_revision for ev in events]
        assert revisions == sorted(revisions) and len(set(revisions)) == 300
        assert {ev.key for ev in events} == {f"/registry/burst/{i:03d}" for i in range(300)}
        assert all(ev.type == "PUT" and ev.is_create for ev in events)
        assert set(_watch_threads()) - before
        await watch.aclose()

        async def thread_ended() -> bool:
            return not set(_watch_threads()) - before
        await wait_for(thread_ended, timeout=10, message="the watch's thread to end")
    finally:
        await store.close()


async def test_an_etcd_watch_on_a_member_that_is_down_moves_to_the_next_endpoint(etcd: Any) -> None:
    """The first endpoint refuses connections: the watch fails (the watch cache resumes it after a moment) and
    the next try watches on the next endpoint, from the same revision."""
    prefix = "/" + unique("st")
    store = EtcdStorage([f"http://127.0.0.1:{free_port()}", etcd.url], prefix)
    try:
        writer = EtcdStorage([etcd.url], prefix)
        rev = await writer.create("/registry/m/a", {"v": 1})
        await writer.close()
        with pytest.raises(StorageError):
            await asyncio.wait_for(_collect(store.watch("/registry/m/", rev), 1), 10)
        events = await asyncio.wait_for(_collect(store.watch("/registry/m/", rev), 1), 10)
        assert [(ev.key, ev.value) for ev in events] == [("/registry/m/a", {"v": 1})]
    finally:
        await store.close()
