"""Informers: list + watch one resource into a local, indexed cache.

The cache is what controllers read; the API server is only written to. An
informer lists once, then watches from the list's resourceVersion. A dropped
stream resumes from the last resourceVersion seen (no relist); a 410 Gone (the
server compacted past us) relists and replays the difference as events. Handlers
run synchronously in the informer task and must only enqueue keys: the cache
already holds the new state when they run.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable, Protocol

import aiohttp
import orjson

from .errors import ApiError, ConnectionFailed, is_gone
from .objects import key_of
from .resources import Resource
from .timeouts import wait_for

log = logging.getLogger(__name__)
# An apiserver that refuses connections is usually restarting (a few seconds): try again soon, so that caches
# (the proxy's endpoints, the controllers' pods) are not minutes behind once it is back. Refused connections are
# cheap; errors the server answers with keep the long backoff.
_UNREACHABLE_RETRY_CAP = 2.0

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]
# Store has a method named `list`; annotations inside it use these aliases.
ObjList = list[Obj]
KeyList = list[str]


# -- standard indexes ---------------------------------------------------------------------------

def index_namespace(obj: Obj) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def index_owner_uid(obj: Obj) -> list[str]:
    return [r["uid"] for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if r.get("uid")]


def index_node_name(obj: Obj) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


def index_label(obj: Obj) -> list[str]:
    return [f"{k}={v}" for k, v in ((obj.get("metadata") or {}).get("labels") or {}).items()]


DEFAULT_INDEXES: dict[str, IndexFunc] = {
    "namespace": index_namespace,
    "owner": index_owner_uid,
    "node": index_node_name,
    "label": index_label,
}


def revision(obj: Obj) -> int | None:
    """An object's resourceVersion as a number (pkube's are etcd revisions), None when it has none."""
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(rv) if rv else None
    except ValueError:
        return None


class Store:
    """Objects by key, plus inverted indexes name -> value -> keys.

    What a reader gets is the watch's copy of each object, unless this process wrote a newer version itself
    (`remember`, the server's answer to the write) that the watch has not brought yet: then it gets that one.
    A controller that syncs again before its own write's event arrives (a burst of pod changes) thus builds on
    what it wrote, and its next update does not conflict with its own last one (Kubernetes' MutationCache). Which
    keys an index lists, and what the informer's handlers are told, stay the watch's alone."""

    def __init__(self, indexes: dict[str, IndexFunc] | None = None):
        self._items: dict[str, Obj] = {}
        self._index_funcs = dict(DEFAULT_INDEXES if indexes is None else indexes)
        self._indices: dict[str, dict[str, set[str]]] = {n: {} for n in self._index_funcs}
        self._written: dict[str, tuple[int, Obj]] = {}  # key -> (revision, object) this process wrote

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Obj | None:
        obj = self._items.get(key)
        return self._newest(key, obj) if self._written else obj

    def list(self) -> ObjList:
        if self._written:
            return [self._newest(k, o) or o for k, o in self._items.items()]
        return list(self._items.values())

    def keys(self) -> KeyList:
        return list(self._items)

    def by_index(self, index: str, value: str) -> ObjList:
        keys = self._indices[index].get(value, ())
        if self._written:
            return [self._newest(k, self._items[k]) or self._items[k] for k in keys]
        return [self._items[k] for k in keys]

    def remember(self, obj: Obj) -> None:
        """Note an object as the server answered a write of this process: newer than the watch's copy, it is
        what readers get until the watch catches up (`caught_up`)."""
        rv = revision(obj)
        if rv is None:
            return
        key = key_of(obj)
        cached = self._items.get(key)
        if cached is not None and (revision(cached) or 0) >= rv:
            return
        if key not in self._written or self._written[key][0] < rv:
            # A copy: the writer still holds its answer and may change it; the cache keeps the server's.
            self._written[key] = (rv, orjson.loads(orjson.dumps(obj)))

    def caught_up(self, rv: str | None) -> None:
        """The watch (or a list) has delivered everything up to resourceVersion `rv`: what this process wrote
        up to there is in the store, or was changed or deleted since; forget it."""
        if not self._written or not rv:
            return
        try:
            upto = int(rv)
        except ValueError:
            return
        for key in [k for k, (written, _) in self._written.items() if written <= upto]:
            del self._written[key]

    def _newest(self, key: str, obj: Obj | None) -> Obj | None:
        written = self._written.get(key)
        if written is None or (obj is not None and (revision(obj) or 0) >= written[0]):
            return obj
        return written[1]

    def add_index(self, name: str, func: IndexFunc) -> None:
        self._index_funcs[name] = func
        idx: dict[str, set[str]] = {}
        for key, obj in self._items.items():
            for v in func(obj):
                idx.setdefault(v, set()).add(key)
        self._indices[name] = idx

    def put(self, obj: Obj) -> Obj | None:
        key = key_of(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, func in self._index_funcs.items():
            for v in func(obj):
                self._indices[name].setdefault(v, set()).add(key)
        return old

    def remove(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, func in self._index_funcs.items():
            idx = self._indices[name]
            for v in func(obj):
                keys = idx.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del idx[v]


@dataclass
class Handler:
    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None


class ListWatchClient(Protocol):
    """The part of pklib.client.Client an informer uses (a fake implements it in unit tests)."""

    async def list_all(self, res: Resource, namespace: str | None = None, page: int | None = 500,
                       **kw: Any) -> dict[str, Any]: ...

    def watch(self, res: Resource, namespace: str | None = None, *, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              timeout_seconds: int | None = None, allow_bookmarks: bool = True
              ) -> AsyncIterator[dict[str, Any]]: ...


class Informer:
    def __init__(self, client: ListWatchClient, resource: Resource, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 resync_period: float | None = None, indexes: dict[str, IndexFunc] | None = None,
                 retry_delay: float = 1.0, list_page: int | None = 500):
        self.client = client
        # Items per LIST request; None lists in one request, which the apiserver serves from its watch cache
        # (paged lists are read from etcd page by page): quicker to sync a big cache.
        self.list_page = list_page
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.store = Store(indexes)
        self.synced = asyncio.Event()
        self.resource_version: str | None = None
        self._handlers: list[Handler] = []
        self._retry_delay = retry_delay
        self.relists = 0  # observable for tests/metrics: how often we had to list again

    @property
    def has_synced(self) -> bool:
        return self.synced.is_set()

    def add_handler(self, handler: Handler) -> None:
        """Register handlers; if the cache is already filled, the new handler sees every object as added."""
        self._handlers.append(handler)
        if handler.on_add and self.has_synced:
            for obj in self.store.list():
                handler.on_add(obj)

    async def wait_synced(self, timeout: float | None = None) -> None:
        await wait_for(self.synced.wait(), timeout)

    async def run(self) -> None:
        """List, then watch forever (until cancelled)."""
        resync = asyncio.create_task(self._resync_loop()) if self.resync_period else None
        try:
            need_list = True
            failures = 0
            cap = 30.0  # the longest wait before the next try
            loop = asyncio.get_running_loop()
            while True:
                started = loop.time()
                try:
                    if need_list:
                        await self._list()
                        need_list = False
                    await self._watch()
                    # A clean end: the server answered, so an outage before it is over (an apiserver that shut
                    # down ends its watches, then its successor may end a first short one too): no long backoff.
                    # Still, a server that ends every watch at once must not make us spin: a moment's wait.
                    failures = 1 if loop.time() - started < 1 else 0
                except ApiError as e:
                    if is_gone(e):
                        log.info("%s: watch expired (%s); relisting", self.resource.plural, e.message)
                        need_list = True
                        continue
                    failures += 1
                    self._log_failure(failures, e.message)
                except (ConnectionFailed, aiohttp.ClientPayloadError) as e:
                    # A dropped stream (the client raises a payload error when the connection dies
                    # mid-chunk): resume from our resourceVersion, no relist needed.
                    failures += 1
                    cap = _UNREACHABLE_RETRY_CAP
                    self._log_failure(failures, str(e))
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:  # noqa: BLE001 - e.g. a truncated stream; a relist is always safe
                    failures += 1
                    need_list = True
                    log.exception("%s: watch broke; relisting", self.resource.plural)
                if failures:
                    # Capped, jittered backoff so that many informers do not reconnect in lockstep.
                    await asyncio.sleep(min(cap, self._retry_delay * 2 ** min(failures - 1, 5))
                                        * random.uniform(0.5, 1))
                    cap = 30.0
        finally:
            if resync is not None:
                resync.cancel()

    def _log_failure(self, failures: int, message: str) -> None:
        # Loud once, then quiet: an unreachable server would otherwise flood the log from every informer.
        log.log(logging.WARNING if failures == 1 else logging.DEBUG, "%s: list/watch failed (retrying): %s",
                self.resource.plural, message)

    async def _list(self) -> None:
        result = await self.client.list_all(self.resource, self.namespace, self.list_page,
                                            label_selector=self.label_selector,
                                            field_selector=self.field_selector)
        self.relists += 1
        items = result.get("items") or []
        kind = self.resource.kind
        fresh: dict[str, Obj] = {}
        for item in items:
            # List items carry no kind; handlers and owner-ref code expect one.
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", self.resource.api_version)
            fresh[key_of(item)] = item
        for key in self.store.keys():
            if key not in fresh:
                old = self.store.remove(key)
                if old is not None:
                    self._dispatch("DELETED", old, None)
        for item in fresh.values():
            old = self.store.put(item)
            self._dispatch("MODIFIED" if old is not None else "ADDED", old, item)
        self.resource_version = (result.get("metadata") or {}).get("resourceVersion")
        self.store.caught_up(self.resource_version)
        self.synced.set()

    async def _watch(self) -> None:
        # The server ends each watch after timeoutSeconds; we then resume from the last
        # resourceVersion. A random timeout spreads the reconnects of many informers. If the
        # server vanished without closing the connection, our own deadline ends the wait.
        timeout = random.randint(300, 600)
        stream = self.client.watch(self.resource, self.namespace, resource_version=self.resource_version,
                                   label_selector=self.label_selector, field_selector=self.field_selector,
                                   timeout_seconds=timeout)
        try:
            async with asyncio.timeout(timeout + 30):
                async for event in stream:
                    self._apply(event)
        except TimeoutError:
            log.info("%s: watch silent past its timeout; reconnecting", self.resource.plural)

    def _apply(self, event: dict[str, Any]) -> None:
        etype, obj = event.get("type"), event.get("object") or {}
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if etype == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            self.store.caught_up(rv)
            return
        obj.setdefault("kind", self.resource.kind)
        obj.setdefault("apiVersion", self.resource.api_version)
        if etype in ("ADDED", "MODIFIED"):
            old = self.store.put(obj)
            self._dispatch("MODIFIED" if old is not None else "ADDED", old, obj)
        elif etype == "DELETED":
            old = self.store.remove(key_of(obj))
            self._dispatch("DELETED", old or obj, None)
        if rv:
            self.resource_version = rv
            self.store.caught_up(rv)

    async def _resync_loop(self) -> None:
        assert self.resync_period
        while True:
            await asyncio.sleep(self.resync_period)
            if self.has_synced:
                for obj in self.store.list():
                    self._dispatch("MODIFIED", obj, obj)

    def _dispatch(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        for h in self._handlers:
            try:
                if etype == "ADDED" and h.on_add and new is not None:
                    h.on_add(new)
                elif etype == "MODIFIED" and h.on_update and new is not None:
                    h.on_update(old or new, new)
                elif etype == "DELETED" and h.on_delete and old is not None:
                    h.on_delete(old)
            except Exception:  # noqa: BLE001 - one bad handler must not stop the cache
                log.exception("%s: event handler failed", self.resource.plural)


class InformerFactory:
    """One shared informer per resource (cluster-wide), so that controllers share caches."""

    def __init__(self, client: ListWatchClient, resync_period: float | None = None, list_page: int | None = 500):
        self.client = client
        self.resync_period = resync_period
        self.list_page = list_page
        self._informers: dict[Resource, Informer] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def informer(self, resource: Resource) -> Informer:
        inf = self._informers.get(resource)
        if inf is None:
            inf = self._informers[resource] = Informer(self.client, resource, resync_period=self.resync_period,
                                                       list_page=self.list_page)
        return inf

    def all(self) -> list[Informer]:
        return list(self._informers.values())

    def remember(self, resource: Resource, obj: Obj) -> None:
        """A write's answer, for the cache of `resource` if there is one (Store.remember); a Client's `on_write`."""
        inf = self._informers.get(resource)
        if inf is not None:
            inf.store.remember(obj)

    def start(self) -> None:
        """Start every informer requested so far that is not running yet."""
        running = {t.get_name() for t in self._tasks}
        for res, inf in self._informers.items():
            name = f"informer:{res.group}/{res.plural}"
            if name not in running:
                task = asyncio.create_task(inf.run(), name=name)
                task.add_done_callback(_log_death)
                self._tasks.append(task)

    def remove(self, resource: Resource) -> None:
        """Stop and forget the informer of `resource` (a custom kind whose definition was deleted)."""
        if self._informers.pop(resource, None) is None:
            return
        name = f"informer:{resource.group}/{resource.plural}"
        for task in [t for t in self._tasks if t.get_name() == name]:
            task.cancel()
            self._tasks.remove(task)

    async def wait_synced(self, timeout: float | None = None) -> None:
        await wait_for(asyncio.gather(*(i.synced.wait() for i in self._informers.values())), timeout)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s died: %r", task.get_name(), task.exception(), exc_info=task.exception())
