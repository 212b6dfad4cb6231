"""Informer behaviour against a scripted fake API (the real one is exercised in tests/controllers)."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from pklib.resources import must_lookup
from pklib.errors import ApiError, ConnectionFailed
from pklib.informer import Handler, Informer, InformerFactory, Store
from pklib.objects import key_of

PODS = must_lookup("pods")


def pod(name: str, rv: int, node: str | None = None, labels: dict[str, str] | None = None,
        owner: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": str(rv), "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "kind": "ReplicaSet", "name": "rs", "apiVersion": "apps/v1"}]
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}}


class FakeApi:
    """Scripted list results and watch streams; records the resourceVersion each watch started from."""

    def __init__(self) -> None:
        self.lists: list[dict[str, Any]] = []
        self.streams: list[list[Any]] = []  # events, or an exception to raise at that point
        self.watch_rvs: list[str | None] = []
        self.pages: list[int | None] = []  # the page size of each list
        self.exhausted = asyncio.Event()

    async def list_all(self, res: Any, namespace: str | None = None, page: int | None = 500,
                       **kw: Any) -> dict[str, Any]:
        self.pages.append(page)
        return self.lists.pop(0)

    async def watch(self, res: Any, namespace: str | None = None, **kw: Any) -> AsyncIterator[dict[str, Any]]:
        self.watch_rvs.append(kw.get("resource_version"))
        if not self.streams:
            self.exhausted.set()
            await asyncio.Event().wait()  # block like an idle watch
        for item in self.streams.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item


async def run_until_exhausted(inf: Informer, api: FakeApi) -> None:
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(api.exhausted.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_list_then_watch_events_reach_store_and_handlers() -> None:
    api = FakeApi()
    api.lists = [{"metadata": {"resourceVersion": "10"}, "items": [pod("a", 5)]}]
    api.streams = [[
        {"type": "ADDED", "object": pod("b", 11)},
        {"type": "MODIFIED", "object": pod("a", 12, node="n1")},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "13"}}},
        {"type": "DELETED", "object": pod("b", 14)},
    ]]
    seen: list[tuple[str, str]] = []
    inf = Informer(api, PODS)
    inf.add_handler(Handler(on_add=lambda o: seen.append(("add", key_of(o))),
                            on_update=lambda old, new: seen.append(("update", key_of(new))),
                            on_delete=lambda o: seen.append(("delete", key_of(o)))))
    await run_until_exhausted(inf, api)
    assert seen == [("add", "ns/a"), ("add", "ns/b"), ("update", "ns/a"), ("delete", "ns/b")]
    assert inf.has_synced
    assert [key_of(o) for o in inf.store.list()] == ["ns/a"]
    assert inf.store.get("ns/a")["kind"] == "Pod"  # list items get their kind back
    assert [key_of(o) for o in inf.store.by_index("node", "n1")] == ["ns/a"]
    assert api.watch_rvs == ["10", "14"], "the second watch resumes after the last event"


async def test_dropped_connection_resumes_without_relisting() -> None:
    api = FakeApi()
    api.lists = [{"metadata": {"resourceVersion": "10"}, "items": []}]
    api.streams = [[{"type": "ADDED", "object": pod("a", 11)}, ConnectionFailed("reset")]]
    inf = Informer(api, PODS, retry_delay=0.001)
    await run_until_exhausted(inf, api)
    assert inf.relists == 1
    assert api.watch_rvs == ["10", "11"]


async def test_gone_relists_and_replays_the_difference() -> None:
    api = FakeApi()
    api.lists = [
        {"metadata": {"resourceVersion": "10"}, "items": [pod("a", 5), pod("b", 6)]},
        # after compaction: b was deleted and c created while we were not watching
        {"metadata": {"resourceVersion": "50"}, "items": [pod("a", 5), pod("c", 40)]},
    ]
    gone = ApiError({"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"})
    api.streams = [[gone]]
    deleted: list[str] = []
    added: list[str] = []
    inf = Informer(api, PODS)
    inf.add_handler(Handler(on_add=lambda o: added.append(key_of(o)), on_delete=lambda o: deleted.append(key_of(o))))
    await run_until_exhausted(inf, api)
    assert inf.relists == 2
    assert deleted == ["ns/b"] and added == ["ns/a", "ns/b", "ns/c"]
    assert sorted(inf.store.keys()) == ["ns/a", "ns/c"]
    assert api.watch_rvs == ["10", "50"]


async def test_resync_redelivers_cached_objects() -> None:
    api = FakeApi()
    api.lists = [{"metadata": {"resourceVersion": "1"}, "items": [pod("a", 1)]}]
    updates: list[str] = []
    inf = Informer(api, PODS, resync_period=0.01)
    inf.add_handler(Handler(on_update=lambda old, new: updates.append(key_of(new))))
    task = asyncio.create_task(inf.run())
    for _ in range(200):
        if len(updates) >= 2:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert updates[:2] == ["ns/a", "ns/a"]


def test_store_indexes_follow_updates() -> None:
    s = Store()
    s.put(pod("a", 1, node="n1", labels={"app": "web"}, owner="u1"))
    s.put(pod("b", 1, node="n1", labels={"app": "db"}))
    assert {key_of(o) for o in s.by_index("node", "n1")} == {"ns/a", "ns/b"}
    s.put(pod("a", 2, node="n2", labels={"app": "db"}))
    assert [key_of(o) for o in s.by_index("node", "n1")] == ["ns/b"]
    assert {key_of(o) for o in s.by_index("label", "app=db")} == {"ns/a", "ns/b"}
    assert s.by_index("owner", "u1") == [], "the owner ref went away with the update"
    assert s.by_index("label", "app=web") == []
    s.remove("ns/b")
    assert [key_of(o) for o in s.by_index("namespace", "ns")] == ["ns/a"]


async def test_refused_connections_are_retried_within_two_seconds(monkeypatch: Any) -> None:
    """An apiserver that is restarting refuses connections for a few seconds: the informer must not back off to
    half a minute and leave its cache stale long after the server is back. Answered errors keep the long backoff."""
    import pklib.informer as informer_module
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float, *args: Any) -> None:
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(informer_module.asyncio, "sleep", recorded)
    api = FakeApi()
    api.lists = [{"metadata": {"resourceVersion": "10"}, "items": []}]
    api.streams = [[ConnectionFailed("refused")] for _ in range(8)]
    await run_until_exhausted(Informer(api, PODS), api)
    assert len(waits) == 8 and max(waits) <= 2.0 and waits[0] >= 0.5

    waits.clear()
    api = FakeApi()
    api.lists = [{"metadata": {"resourceVersion": "10"}, "items": []}]
    api.streams = [[ApiError({"code": 500, "reason": "InternalError", "message": "boom"})] for _ in range(8)]
    await run_until_exhausted(Informer(api, PODS), api)
    assert max(waits) > 2.0


async def test_factory_lists_unpaged_when_asked() -> None:
    """The scheduler's caches list in one request (served from the apiserver's watch cache); others page by 500."""
    for page in (None, 500):
        api = FakeApi()
        api.lists = [{"metadata": {"resourceVersion": "10"}, "items": [pod("a", 5)]}]
        inf = InformerFactory(api, list_page=page).informer(PODS)
        await run_until_exhausted(inf, api)
        assert api.pages == [page] and [key_of(o) for o in inf.store.list()] == ["ns/a"]


async def test_a_watch_the_server_ends_at_shutdown_resumes_within_two_seconds(monkeypatch: Any) -> None:
    """Issue 17: an apiserver that shuts down ends every watch cleanly, then refuses connections until it (or
    another one) is back: the informer resumes from its resourceVersion (no relist), never backing off longer."""
    import pklib.informer as informer_module
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float, *args: Any) -> None:
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(informer_module.asyncio, "sleep", recorded)
    api = FakeApi()
    api.lists = [{"metadata": {"resourceVersion": "10"}, "items": []}]
    api.streams = [[{"type": "ADDED", "object": pod("a", 11)}],  # ends cleanly
                   *[[ConnectionFailed("refused")] for _ in range(6)],
                   [{"type": "ADDED", "object": pod("b", 12)}]]  # back
    inf = Informer(api, PODS)
    await run_until_exhausted(inf, api)
    assert inf.relists == 1 and sorted(inf.store.keys()) == ["ns/a", "ns/b"]
    assert api.watch_rvs == ["10", *["11"] * 7, "12"]
    assert max(waits) <= 2.0, waits


def test_a_write_of_this_process_is_read_back_until_the_watch_brings_it() -> None:
    store = Store()
    store.put(pod("a", 5, labels={"app": "web"}))
    store.remember(pod("a", 7, node="n1", labels={"app": "web"}))  # our update, answered at revision 7
    assert store.get("ns/a")["metadata"]["resourceVersion"] == "7"
    assert [p["metadata"]["resourceVersion"] for p in store.by_index("label", "app=web")] == ["7"]
    assert [p["metadata"]["resourceVersion"] for p in store.list()] == ["7"]
    store.remember(pod("a", 6))  # an older answer (a slower request) does not replace it
    assert store.get("ns/a")["metadata"]["resourceVersion"] == "7"
    store.put(pod("a", 6))  # the watch is still behind: the store's copy is older than ours
    store.caught_up("6")
    assert store.get("ns/a")["metadata"]["resourceVersion"] == "7"
    store.put(pod("a", 8))  # someone changed it after us: the watch's copy is the newest
    store.caught_up("8")
    assert store.get("ns/a")["metadata"]["resourceVersion"] == "8"
    store.remember(pod("a", 8))  # an answer no newer than the store's adds nothing
    assert store._written == {}


def test_a_created_object_is_found_by_key_before_its_event_and_forgotten_once_the_watch_passes_it() -> None:
    store = Store()
    store.remember(pod("new", 9, labels={"app": "web"}))
    assert store.get("ns/new")["metadata"]["resourceVersion"] == "9"
    assert store.by_index("label", "app=web") == [], "which keys an index lists stays the watch's"
    store.caught_up("10")  # e.g. the object was deleted again before the watch delivered it
    assert store.get("ns/new") is None


async def test_an_informer_forgets_a_remembered_write_once_its_event_arrives() -> None:
    api = FakeApi()
    api.lists = [{"metadata": {"resourceVersion": "5"}, "items": [pod("a", 5)]}]
    inf = Informer(api, PODS)
    seen: list[tuple[str, str]] = []
    inf.add_handler(Handler(on_update=lambda old, new: seen.append(
        (old["metadata"]["resourceVersion"], new["metadata"]["resourceVersion"]))))
    factory = InformerFactory(api)
    factory._informers[PODS] = inf
    api.streams = [[{"type": "MODIFIED", "object": pod("a", 7, node="n1")}]]
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.synced.wait(), 5)
        factory.remember(PODS, pod("a", 7, node="n1"))
        await asyncio.wait_for(api.exhausted.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen == [("5", "7")], "handlers are told what the watch says, not what was remembered"
    assert inf.store._written == {}
    assert inf.store.get("ns/a")["spec"] == {"nodeName": "n1"}
