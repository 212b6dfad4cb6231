"""Writes start from the watch cache's copy (one store round trip): a stale copy must never change the outcome.

The cache is frozen (its watch stopped) and the store is then changed behind it, so every write
below first decides on an outdated object; each must end as if it had read the store.
"""
from __future__ import annotations

from typing import AsyncIterator

import orjson
import pytest

from apiserver.handlers_list import list_objects
from apiserver.handlers_objects import Objects, object_key
from apiserver.handlers_sub import bind
from apiserver.status import StatusError
from apiserver.storage.memory import MemoryStorage
from apiserver.watchcache import WatchCache
from pklib.resources import Resource, lookup

PODS, NAMESPACES = lookup("pods"), lookup("namespaces")
assert PODS is not None and NAMESPACES is not None


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"v": "1"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}


@pytest.fixture
async def frozen() -> AsyncIterator[tuple[MemoryStorage, Objects]]:
    """Objects over a store whose cache holds pod `p` at its first revision but no longer follows the store."""
    store = MemoryStorage()
    cache = WatchCache(store)
    await cache.start()
    objects = Objects(store, cache)
    assert NAMESPACES is not None and PODS is not None
    await objects.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
    created = await objects.create(PODS, "ns", pod("p"))
    assert await cache.wait_for_revision(int(created["metadata"]["resourceVersion"]), 5)
    await cache.stop()
    assert cache.ready and cache.for_prefix("/registry/core/pods/").objects
    yield store, objects


async def change_behind_cache(store: MemoryStorage, res: Resource, mutate: dict) -> int:
    key = object_key(res, "ns", "p")
    entry = await store.get(key)
    assert entry is not None
    value = dict(entry.value, metadata=dict(entry.value["metadata"], labels=mutate))
    return await store.update(key, value, entry.mod_revision)


async def test_update_with_the_stores_resource_version_succeeds(frozen: tuple[MemoryStorage, Objects]) -> None:
    store, objects = frozen
    assert PODS is not None
    rev = await change_behind_cache(store, PODS, {"v": "2"})
    current = (await store.get(object_key(PODS, "ns", "p")))
    assert current is not None
    body = dict(current.value, metadata=dict(current.value["metadata"], resourceVersion=str(rev),
                                             labels={"v": "3"}))
    out = await objects.update(PODS, "ns", "p", body)
    assert out["metadata"]["labels"] == {"v": "3"}
    stored = await store.get(object_key(PODS, "ns", "p"))
    assert stored is not None and stored.value["metadata"]["labels"] == {"v": "3"}


async def test_stale_resource_version_still_conflicts(frozen: tuple[MemoryStorage, Objects]) -> None:
    store, objects = frozen
    assert PODS is not None
    cached = await objects.get(PODS, "ns", "p")  # read before the change: its resourceVersion is now stale
    await change_behind_cache(store, PODS, {"v": "2"})
    with pytest.raises(StatusError) as e:
        await objects.update(PODS, "ns", "p", dict(cached, metadata=dict(cached["metadata"], labels={"v": "3"})))
    assert e.value.code == 409


async def test_patch_that_matches_only_the_stale_copy_is_written(frozen: tuple[MemoryStorage, Objects]) -> None:
    store, objects = frozen
    assert PODS is not None
    await change_behind_cache(store, PODS, {"v": "2"})
    # Against the cached copy ({"v": "1"}) this patch is a no-op; against the store it is a change.
    await objects.patch(PODS, "ns", "p", "merge", {"metadata": {"labels": {"v": "1"}}})
    stored = await store.get(object_key(PODS, "ns", "p"))
    assert stored is not None and stored.value["metadata"]["labels"] == {"v": "1"}


async def test_binding_refused_when_the_store_says_bound(frozen: tuple[MemoryStorage, Objects]) -> None:
    store, objects = frozen
    assert PODS is not None
    key = object_key(PODS, "ns", "p")
    entry = await store.get(key)
    assert entry is not None
    await store.update(key, dict(entry.value, spec=dict(entry.value["spec"], nodeName="n1")), entry.mod_revision)
    with pytest.raises(StatusError) as e:
        await bind(objects, PODS, "ns", "p", {"target": {"kind": "Node", "name": "n2"}})
    assert e.value.code == 409 and 'already assigned to node "n1"' in e.value.message
    stored = await store.get(key)
    assert stored is not None and stored.value["spec"]["nodeName"] == "n1"


async def test_write_to_an_object_deleted_behind_the_cache_is_not_found(
        frozen: tuple[MemoryStorage, Objects]) -> None:
    store, objects = frozen
    assert PODS is not None
    await store.delete(object_key(PODS, "ns", "p"))
    with pytest.raises(StatusError) as e:
        await objects.patch(PODS, "ns", "p", "merge", {"metadata": {"labels": {"v": "9"}}})
    assert e.value.code == 404
    assert await store.get(object_key(PODS, "ns", "p")) is None


async def test_binding_still_checks_the_node_name(frozen: tuple[MemoryStorage, Objects]) -> None:
    """A binding skips re-checking the unchanged spec, never the nodeName it adds."""
    store, objects = frozen
    assert PODS is not None
    with pytest.raises(StatusError) as e:
        await bind(objects, PODS, "ns", "p", {"target": {"kind": "Node", "name": "Bad_Node"}})
    assert e.value.code == 422
    assert [c["field"] for c in (e.value.details or {})["causes"]] == ["spec.nodeName"]
    stored = await store.get(object_key(PODS, "ns", "p"))
    assert stored is not None and "nodeName" not in stored.value["spec"]


async def test_binding_changes_only_the_node_and_the_scheduled_condition(
        frozen: tuple[MemoryStorage, Objects]) -> None:
    store, objects = frozen
    assert PODS is not None
    key = object_key(PODS, "ns", "p")
    before = await store.get(key)
    assert before is not None
    await bind(objects, PODS, "ns", "p", {"target": {"kind": "Node", "name": "n1"}})
    after = await store.get(key)
    assert after is not None
    assert after.value["spec"] == dict(before.value["spec"], nodeName="n1")
    drop = ("generation",)  # spec.nodeName is new: the generation counts it, as before this binding path
    assert {k: v for k, v in after.value["metadata"].items() if k not in drop} == {
        k: v for k, v in before.value["metadata"].items() if k not in drop}
    status = dict(after.value["status"])
    conditions = status.pop("conditions")
    assert [(c["type"], c["status"]) for c in conditions] == [("PodScheduled", "True")]
    assert status == {k: v for k, v in before.value["status"].items() if k != "conditions"}


async def test_a_list_at_resource_version_0_is_served_from_a_lagging_cache_without_waiting(
        frozen: tuple[MemoryStorage, Objects]) -> None:
    """Kubernetes' "any" revision: what the cache holds now. (The cache here never catches up: waiting for it, as a
    list at a newer revision must, would end in a 504 after RV_WAIT.)"""
    store, objects = frozen
    assert PODS is not None
    cached_rv = objects.cache.revision
    rev = await change_behind_cache(store, PODS, {"v": "2"})
    listed = orjson.loads(await list_objects(store, objects.cache, PODS, "ns", {"resourceVersion": "0"}))
    assert listed["metadata"]["resourceVersion"] == str(cached_rv)
    assert [p["metadata"]["labels"] for p in listed["items"]] == [{"v": "1"}]
    # a list of the current state (no resourceVersion) reads the store instead
    current = orjson.loads(await list_objects(store, objects.cache, PODS, "ns", {}))
    assert int(current["metadata"]["resourceVersion"]) >= rev
    assert [p["metadata"]["labels"] for p in current["items"]] == [{"v": "2"}]
    with pytest.raises(StatusError) as e:
        await list_objects(store, objects.cache, PODS, "ns", {"resourceVersion": "0", "resourceVersionMatch": "Exact"})
    assert e.value.code == 400
