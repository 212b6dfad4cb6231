"""Watches: ordered delivery, resume from a resourceVersion, 410 after compaction, selectors, bookmarks."""
from __future__ import annotations

import asyncio
import copy
from typing import Any, AsyncIterator

import aiohttp
import orjson
import pytest

from apiserver.storage.etcd import EtcdStorage
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.samples import sample
from tests.support.controlplane import Etcd, _stop, start_apiserver
from tests.util import unique, wait_for

CM = lookup("configmaps")


async def take(events: AsyncIterator[dict[str, Any]], n: int, timeout: float = 10) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    async def run() -> None:
        async for ev in events:
            if ev["type"] == "BOOKMARK":
                continue
            out.append(ev)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_watch_delivers_create_update_delete_in_order(client: Client, namespace: str) -> None:
    start = (await client.list(CM, namespace))["metadata"]["resourceVersion"]
    stream = client.watch(CM, namespace, resource_version=start)
    collector = asyncio.create_task(take(stream, 3))
    created = await client.create(CM, sample(CM, "w", namespace))
    changed = copy.deepcopy(created)
    changed["data"] = {"key": "v2"}
    updated = await client.update(CM, changed)
    await client.delete(CM, "w", namespace)
    events = await collector
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert events[1]["object"]["data"] == {"key": "v2"}
    assert events[1]["object"]["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]
    assert int(events[2]["object"]["metadata"]["resourceVersion"]) > int(updated["metadata"]["resourceVersion"])


async def test_watch_resumes_from_resource_version(client: Client, namespace: str) -> None:
    first = await client.create(CM, sample(CM, "a", namespace))
    # Changes made while nobody watches are replayed to a watch that resumes from `first`.
    await client.create(CM, sample(CM, "b", namespace))
    await client.patch(CM, "a", {"data": {"key": "later"}}, namespace)
    events = await take(client.watch(CM, namespace, resource_version=first["metadata"]["resourceVersion"]), 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b"), ("MODIFIED", "a")]


async def test_watch_without_resource_version_starts_with_current_state(client: Client, namespace: str) -> None:
    await client.create(CM, sample(CM, "x", namespace))
    await client.create(CM, sample(CM, "y", namespace))
    events = await take(client.watch(CM, namespace), 2)
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in events) == [("ADDED", "x"), ("ADDED", "y")]


async def test_watch_with_label_selector_sees_objects_enter_and_leave(client: Client, namespace: str) -> None:
    start = (await client.list(CM, namespace))["metadata"]["resourceVersion"]
    stream = client.watch(CM, namespace, resource_version=start, label_selector="team=blue")
    collector = asyncio.create_task(take(stream, 3))
    await client.create(CM, sample(CM, "other", namespace, {"team": "red"}))
    await client.create(CM, sample(CM, "blue", namespace, {"team": "blue"}))
    await client.patch(CM, "other", {"metadata": {"labels": {"team": "blue"}}}, namespace)
    await client.patch(CM, "blue", {"metadata": {"labels": {"team": "red"}}}, namespace)
    events = await collector
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "blue"), ("ADDED", "other"), ("DELETED", "blue")]


async def test_watch_all_namespaces_and_field_selector(client: Client, namespace: str) -> None:
    pods = lookup("pods")
    start = (await client.list(pods))["metadata"]["resourceVersion"]
    stream = client.watch(pods, None, resource_version=start, field_selector=f"metadata.namespace={namespace}")
    collector = asyncio.create_task(take(stream, 1))
    await client.create(pods, sample(pods, "p", namespace))
    [event] = await collector
    assert event["type"] == "ADDED" and event["object"]["metadata"]["namespace"] == namespace


async def test_watch_timeout_seconds_ends_the_stream(client: Client, namespace: str) -> None:
    seen = []

    async def drain() -> None:
        async for ev in client.watch(CM, namespace, timeout_seconds=1):
            seen.append(ev)

    await asyncio.wait_for(drain(), 10)  # returns because the server closed the stream
    assert all(ev["type"] in ("ADDED", "BOOKMARK") for ev in seen)


async def test_watch_from_compacted_revision_is_410(client: Client, namespace: str, etcd: Etcd, apiserver) -> None:
    old = await client.create(CM, sample(CM, "old", namespace))
    for i in range(3):
        latest = await client.patch(CM, "old", {"data": {"key": str(i)}}, namespace)
    # Compact no further than this test's own writes: other tests sharing etcd keep their history.
    store = EtcdStorage([etcd.url], "/" + unique("compact"))
    try:
        await store.compact(int(latest["metadata"]["resourceVersion"]))
    finally:
        await store.close()
    with pytest.raises(ApiError) as e:
        await take(client.watch(CM, namespace, resource_version=old["metadata"]["resourceVersion"]), 1)
    assert e.value.code == 410 and e.value.reason == "Expired"
    assert "too old resource version" in e.value.message
    # A fresh list + watch works as usual afterwards.
    rv = (await client.list(CM, namespace))["metadata"]["resourceVersion"]
    collector = asyncio.create_task(take(client.watch(CM, namespace, resource_version=rv), 1))
    await client.delete(CM, "old", namespace)
    assert (await collector)[0]["type"] == "DELETED"


async def test_watch_param_is_case_insensitive_and_ndjson(apiserver, client: Client, namespace: str) -> None:
    await client.create(CM, sample(CM, "nd", namespace))
    headers = {"Authorization": f"Bearer {apiserver.token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.get(apiserver.url + CM.path(namespace), params={"watch": "TRUE", "timeoutSeconds": "1"}) as r:
            assert r.status == 200
            lines = [orjson.loads(line) for line in (await r.read()).splitlines() if line.strip()]
    assert [(ev["type"], ev["object"]["metadata"]["name"]) for ev in lines] == [("ADDED", "nd")]


async def test_bookmarks_when_allowed(session_tmp: str, etcd: Etcd) -> None:
    server = start_apiserver(session_tmp, etcd.url, ["--watch-bookmark-interval", "0.2"])
    try:
        async with Client(server.url, server.token) as c:
            kinds_seen = []

            async def drain() -> None:
                async for ev in c.watch(CM, "default", timeout_seconds=5, allow_bookmarks=True):
                    kinds_seen.append(ev["type"])
                    if ev["type"] == "BOOKMARK":
                        assert int(ev["object"]["metadata"]["resourceVersion"]) > 0
                        return

            await asyncio.wait_for(drain(), 10)
            assert kinds_seen[-1] == "BOOKMARK"
    finally:
        _stop(server.proc)


async def test_a_bookmark_just_before_the_watch_times_out(client: Client, namespace: str) -> None:
    # The interval is a minute (Kubernetes' default); a watch ending sooner still gets one bookmark 2 s before
    # its end, carrying the newest revision, so the client resumes from there and not from an old one.
    before = (await client.list(CM, namespace))["metadata"]["resourceVersion"]
    seen: list[dict[str, Any]] = []

    async def drain() -> None:
        async for ev in client.watch(CM, namespace, resource_version=before, timeout_seconds=4, allow_bookmarks=True):
            seen.append(ev)

    watching = asyncio.create_task(drain())
    created = await client.create(CM, sample(CM, unique("bm"), namespace))
    await asyncio.wait_for(watching, 10)
    assert [ev["type"] for ev in seen] == ["ADDED", "BOOKMARK"]
    assert int(seen[1]["object"]["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])


async def test_no_bookmark_unless_asked(client: Client, namespace: str) -> None:
    await client.create(CM, sample(CM, unique("nb"), namespace))
    events = [ev async for ev in client.watch(CM, namespace, timeout_seconds=3, allow_bookmarks=False)]
    assert [ev["type"] for ev in events] == ["ADDED"]


async def test_watch_from_a_revision_bumped_by_another_etcd_user(client: Client, namespace: str, etcd: Etcd) -> None:
    # Writes by someone else sharing etcd move its revision without any event for this API server.
    other = EtcdStorage([etcd.url], "/" + unique("foreign"))
    try:
        for i in range(3):
            await other.create(f"/registry/core/configmaps/x/{i}", {"metadata": {"name": str(i)}})
    finally:
        await other.close()
    rv = (await client.list(CM, namespace, limit=1))["metadata"]["resourceVersion"]  # read from etcd
    # The cache must prove it has caught up with that revision, although none of its events carries it.
    assert (await client.list(CM, namespace, resource_version=rv))["items"] == []
    collector = asyncio.create_task(take(client.watch(CM, namespace, resource_version=rv), 1, timeout=5))
    await client.create(CM, sample(CM, "after", namespace))
    [event] = await collector
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "after"


async def test_watchers_are_counted_and_released_when_clients_leave(apiserver, namespace: str) -> None:
    headers = {"Authorization": f"Bearer {apiserver.token}"}
    metric = 'apiserver_registered_watchers{resource="secrets"}'

    async def watchers(s: aiohttp.ClientSession) -> float:
        async with s.get(apiserver.url + "/metrics") as r:
            for line in (await r.text()).splitlines():
                if line.startswith(metric):
                    return float(line.split()[-1])
        return 0.0

    secrets = lookup("secrets")
    async with aiohttp.ClientSession(headers=headers) as s:
        before = await watchers(s)

        async def registered() -> bool:
            return await watchers(s) >= before + 1

        async def released() -> bool:
            return await watchers(s) <= before

        async with aiohttp.ClientSession(headers=headers) as w:
            resp = await w.get(apiserver.url + secrets.path(namespace), params={"watch": "1"})
            await wait_for(registered, message="the watch to be registered")
            resp.close()
        # Nothing is written to an idle watch, yet the server notices the client left.
        await wait_for(released, timeout=10, message="the watch to be released")


async def test_watch_cluster_scoped_kind(client: Client) -> None:
    nodes = lookup("nodes")
    name = unique("node")
    start = (await client.list(nodes))["metadata"]["resourceVersion"]
    stream = client.watch(nodes, resource_version=start, field_selector=f"metadata.name={name}")
    collector = asyncio.create_task(take(stream, 3))
    await client.create(nodes, sample(nodes, name))
    await client.patch(nodes, name, {"status": {"capacity": {"cpu": "2"}}}, subresource="status")
    await client.delete(nodes, name)
    events = await collector
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["status"]["capacity"] == {"cpu": "2"}


async def test_watch_cache_history_bounded_in_bytes_answers_410_for_what_it_forgot(session_tmp: str,
                                                                                  etcd: Etcd) -> None:
    # etcd still has every revision (nothing compacted): the 410 comes from the cache's byte budget alone
    server = start_apiserver(session_tmp, etcd.url, ["--watch-cache-max-bytes", "1Mi"])
    try:
        async with Client(server.url, server.token) as c:
            big = "x" * 200_000
            old = await c.create(CM, {**sample(CM, "big", "default"), "data": {"v": big}})
            latest = old
            for i in range(8):   # 1.6 MB of versions: the first ones no longer fit
                latest = await c.patch(CM, "big", {"data": {"v": big, "i": str(i)}}, "default")
            with pytest.raises(ApiError) as e:
                await take(c.watch(CM, "default", resource_version=old["metadata"]["resourceVersion"]), 1)
            assert e.value.code == 410 and e.value.reason == "Expired"
            recent = c.watch(CM, "default", resource_version=latest["metadata"]["resourceVersion"])
            collector = asyncio.create_task(take(recent, 1))
            await c.patch(CM, "big", {"data": {"i": "last"}}, "default")
            [event] = await collector
            assert event["type"] == "MODIFIED" and event["object"]["data"]["i"] == "last"
            await c.delete(CM, "big", "default")
    finally:
        _stop(server.proc)
