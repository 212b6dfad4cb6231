"""Events expire by themselves (kube-apiserver's --event-ttl): written with a shared etcd lease."""
from __future__ import annotations

from typing import AsyncIterator, Iterator

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import CONFIGMAPS, EVENTS
from tests.support.controlplane import ApiServer, Etcd, _stop, etcd_call, etcd_key, etcd_prefix, start_apiserver
from tests.support.samples import sample
from tests.util import unique


@pytest.fixture
def short_ttl(session_tmp: str, etcd: Etcd) -> Iterator[ApiServer]:
    server = start_apiserver(session_tmp, etcd.url, ["--event-ttl", "3s"])
    yield server
    _stop(server.proc)


def _lease(etcd: Etcd, server: ApiServer, key: str) -> int:
    found = etcd_call(etcd.url, "/v3/kv/range", {"key": etcd_key(etcd_prefix(server), key)})
    return int(found["kvs"][0].get("lease", 0))


async def _gone(c: Client, name: str) -> bool:
    try:
        await c.get(EVENTS, name, "default")
        return False
    except ApiError as e:
        assert e.code == 404, e
        return True


async def test_events_expire_after_the_event_ttl(short_ttl: ApiServer, etcd: Etcd) -> None:
    async with Client(short_ttl.url, short_ttl.token) as c:
        name, cm = unique("ev"), unique("cm")
        await c.create(EVENTS, sample(EVENTS, name, "default"), "default")
        await c.create(CONFIGMAPS, sample(CONFIGMAPS, cm, "default"), "default")
        # The Event is stored on an etcd lease; other objects are not.
        assert _lease(etcd, short_ttl, f"/registry/core/events/default/{name}") != 0
        assert _lease(etcd, short_ttl, f"/registry/core/configmaps/default/{cm}") == 0
        events = [e async for e in _watch_until_deleted(c, name)]
        assert events[-1] == ("DELETED", name)
        assert await _gone(c, name)
        assert (await c.get(CONFIGMAPS, cm, "default"))["metadata"]["name"] == cm


async def _watch_until_deleted(c: Client, name: str) -> AsyncIterator[tuple[str, str]]:
    """A watcher sees the expired Event go (etcd deletes the key; the watch cache passes the DELETE on); the
    watch ends after 15 s at the latest."""
    async for ev in c.watch(EVENTS, "default", timeout_seconds=15):
        if ev["type"] == "BOOKMARK" or ev["object"]["metadata"]["name"] != name:
            continue
        yield ev["type"], name
        if ev["type"] == "DELETED":
            return
