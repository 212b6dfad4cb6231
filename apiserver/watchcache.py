"""The watch cache: one storage watch feeds every watcher and serves lists from memory.

A single storage watch over the whole key space (one etcd watch, not one per
client) updates a per-resource map of current objects, each kept together with
its serialised JSON, and a history of recent events per resource (bounded in
events and in bytes) so a watcher can resume from a recent resourceVersion.
Because one watch sees every write in revision order, `revision` is the store
revision the whole cache reflects, which lets a consistent list be answered from
memory once the cache has caught up with etcd's current revision.

Watchers get a bounded queue each; one that falls too far behind is dropped with
a 410 ERROR event (it must re-list) so it can never slow the others down. One
sweep every CLIENT_CHECK seconds ends the watches whose client went away (aiohttp
does not cancel their handlers, and an idle watch writes nothing that could fail),
so that an idle watch costs no timer of its own.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from .storage.interface import CompactedError, Entry, Storage, StorageError, WatchEvent

log = logging.getLogger("apiserver.watchcache")

ROOT = "/registry/"
PROGRESS_PREFIX = ROOT + "progress/"  # throw-away keys that move the cache's revision forward
NATURAL_CATCH_UP = 0.01  # how long to wait for the watch to catch up on its own before writing a marker
HISTORY = 10_000  # events kept per resource for resuming watches
# ... for at most this long (seconds) beyond the last HISTORY_MIN (Kubernetes' watch cache keeps about 75 s of
# events, at least 100): a watch resumed from further back gets 410 Expired and its client lists again. Without it
# a resource changing steadily (a Deployment's status, Events, Leases) fills all 10,000 entries over hours.
HISTORY_AGE = 300.0
HISTORY_MIN = 100
HISTORY_BYTES = 32 * 1024 * 1024  # and at most this much of their JSON (--watch-cache-max-bytes)
LOAD_PAGE = 2_000  # objects per etcd read when (re)filling the cache
WATCHER_QUEUE = 10_000  # events a watcher may lag behind before it is dropped
CLIENT_CHECK = 2.0  # seconds between two sweeps for watchers whose client is gone


def resource_prefix(group: str, plural: str) -> str:
    return f"{ROOT}{group or 'core'}/{plural}/"


def with_rv(obj: dict[str, Any], revision: int) -> dict[str, Any]:
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def encode(obj: dict[str, Any]) -> bytes:
    """An object's JSON to keep: a right-sized copy, as orjson's own bytes keep the buffer it grew (4-16 KiB for a
    1 KiB pod), eight times the memory held for as long as the cache keeps the object."""
    return bytes(memoryview(orjson.dumps(obj)))


class Cached:
    """One version of an object: its JSON (`raw`, what lists and watches send) and, while it is the current
    version, its decoded form too. A version that only the history still holds (superseded or deleted) keeps its
    JSON alone and `obj` decodes it on each use (a resumed watch's filter): the history's memory is its bytes
    (a decoded pod takes about five times its JSON)."""
    __slots__ = ("_obj", "raw", "revision")

    def __init__(self, obj: dict[str, Any], raw: bytes, revision: int) -> None:
        self._obj: dict[str, Any] | None = obj
        self.raw = raw
        self.revision = revision

    @property
    def obj(self) -> dict[str, Any]:
        """The object; never mutated after caching: readers deep-copy if they must change it."""
        if self._obj is not None:
            return self._obj
        decoded: dict[str, Any] = orjson.loads(self.raw)
        return decoded

    def superseded(self) -> None:
        """Forget the decoded form: this version is no longer current (the JSON stays the truth)."""
        self._obj = None


@dataclass
class Event:
    type: str  # ADDED | MODIFIED | DELETED
    key: str
    obj: Cached
    prev: Cached | None  # the object before this event (selector transitions)
    lines: dict[str, bytes] = field(default_factory=dict)  # encoded once, shared by the watchers it is offered to
    at: float = field(default_factory=time.monotonic)  # when the cache saw it (the history's age bound)

    def line(self, type_: str) -> bytes:
        encoded = self.lines.get(type_)
        if encoded is None:
            encoded = self.lines[type_] = event_line(type_, self.obj.raw)
        return encoded

    def forget_lines(self) -> None:
        """Drops the encoded lines once every watcher of the moment has its own reference (queued): kept in the
        history they would double the bytes it holds. A watch resumed later encodes them again."""
        self.lines.clear()


# A watcher's filter: (object) -> bool.
Filter = Callable[[dict[str, Any]], bool]


def event_line(type_: str, raw: bytes) -> bytes:
    return b'{"type":"' + type_.encode() + b'","object":' + raw + b"}\n"


@dataclass(eq=False)
class Watcher:
    namespace_prefix: str  # the key prefix this watcher sees (a namespace, or the whole resource)
    matches: Filter | None  # None: every object (no need to decode a version the history keeps as JSON only)
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(WATCHER_QUEUE))
    dropped: bool = False
    connected: Callable[[], bool] = lambda: True  # False once the client is gone (checked by the sweep)

    def offer(self, ev: Event) -> None:
        if self.dropped or not ev.key.startswith(self.namespace_prefix):
            return
        if self.matches is None:
            now, before = True, ev.prev is not None
        else:
            now = self.matches(ev.obj.obj)
            before = ev.prev is not None and self.matches(ev.prev.obj)
        if ev.type == "DELETED":
            line = ev.line("DELETED") if before or now else None
        elif now:
            line = ev.line("MODIFIED" if before else "ADDED")
        elif before:
            # The object left this watcher's selector: to the watcher it is gone.
            line = ev.line("DELETED")
        else:
            line = None
        if line is None:
            return
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.drop()

    def drop(self) -> None:
        self.dropped = True
        self.end()

    def end(self) -> None:
        """Let the watch finish: whatever is still queued is discarded, then the end marker."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class TooOld(Exception):
    def __init__(self, requested: int, oldest: int):
        super().__init__(f"too old resource version: {requested} ({oldest})")


class ResourceCache:
    """One resource's current objects, and its recent events: at most HISTORY of them and at most `max_bytes`
    of their JSON (10,000 events of 1 MiB ConfigMaps would otherwise hold 10 GiB), and beyond the last HISTORY_MIN
    none older than HISTORY_AGE. The oldest events go first;
    a watch resumed from before the oldest one kept gets 410 Expired. (An event also refers to the version
    before it, which the history holds too unless it is older than the history: that is at most one more
    version per object, the size of the current objects again.)"""
    def __init__(self, oldest: int, max_bytes: int = HISTORY_BYTES) -> None:
        self.objects: dict[str, Cached] = {}
        self.history: collections.deque[tuple[int, Event]] = collections.deque(maxlen=HISTORY)
        self.oldest = oldest  # events with revision > oldest are all in history
        self.max_bytes = max_bytes
        self.history_bytes = 0  # JSON bytes of the versions the history holds
        self.watchers: set[Watcher] = set()

    def apply(self, ev: WatchEvent, revision: int) -> None:
        prev = self.objects.get(ev.key)
        if ev.type == "DELETE":
            if prev is None:
                return
            # Kubernetes reports a deleted object at the revision of the deletion.
            obj = with_rv(dict(prev.obj, metadata=dict(prev.obj.get("metadata") or {})), revision)
            cached = Cached(obj, encode(obj), revision)
            del self.objects[ev.key]
            event = Event("DELETED", ev.key, cached, prev)
        else:
            assert ev.value is not None
            obj = with_rv(ev.value, revision)
            cached = Cached(obj, encode(obj), revision)
            self.objects[ev.key] = cached
            event = Event("MODIFIED" if prev is not None else "ADDED", ev.key, cached, prev)
        if len(self.history) == self.history.maxlen:
            self.oldest = self.history[0][0]
            self.history_bytes -= len(self.history[0][1].obj.raw)   # about to be pushed out by the append
        self.history.append((revision, event))
        self.history_bytes += len(cached.raw)
        expired = event.at - HISTORY_AGE
        while self.history and (self.history_bytes > self.max_bytes or (
                len(self.history) > HISTORY_MIN and self.history[0][1].at < expired)):
            self.oldest, dropped = self.history.popleft()
            self.history_bytes -= len(dropped.obj.raw)
        for w in list(self.watchers):
            w.offer(event)
        event.forget_lines()
        if prev is not None:
            prev.superseded()
        if ev.type == "DELETE":
            cached.superseded()

    def replay(self, revision: int, key_prefix: str, matches: Filter | None) -> list[bytes]:
        """The lines a watch resumed after `revision` starts with (TooOld when the history does not reach back)."""
        probe = Watcher(key_prefix, matches, asyncio.Queue())
        for ev in self.since(revision):
            probe.offer(ev)
            ev.forget_lines()
        return [probe.queue.get_nowait() or b"" for _ in range(probe.queue.qsize())]

    def items(self, key_prefix: str, matches: Filter | None) -> list[Cached]:
        return self.page(key_prefix, None, 0, matches)[0]

    def page(self, key_prefix: str, start: str | None, limit: int, matches: Filter | None
             ) -> tuple[list[Cached], str | None]:
        """Up to `limit` (0: all) matching objects from key `start` on, in key order like a list from etcd, and
        the key of the last one when keys are left after it (where the next page starts), else None: what a page
        read from etcd gives."""
        keys = sorted(k for k in self.objects if k.startswith(key_prefix) and (start is None or k >= start))
        found: list[Cached] = []
        for i, key in enumerate(keys):
            cached = self.objects[key]
            if matches is None or matches(cached.obj):
                found.append(cached)
                if len(found) == limit:
                    return found, (key if i + 1 < len(keys) else None)
        return found, None

    def since(self, revision: int) -> list[Event]:
        if revision < self.oldest:
            raise TooOld(revision, self.oldest + 1)
        return [ev for rev, ev in self.history if rev > revision]


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        log.error("the watch cache's loop ended: this apiserver serves nothing new from now on",
                  exc_info=task.exception())


class WatchCache:
    def __init__(self, storage: Storage, max_bytes: int = HISTORY_BYTES):
        self.storage = storage
        self.max_bytes = max_bytes  # of each resource's event history
        self.revision = 0
        self.loaded_at = 0  # the revision of the last full list
        self.caches: dict[str, ResourceCache] = {}
        self._advanced = asyncio.Condition()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._marker: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._id = uuid.uuid4().hex[:12]
        self._markers = 0
        # prefix → callbacks told, right after the cache changed, which key changed (None: everything was re-listed).
        self._listeners: dict[str, list[Callable[[str | None], None]]] = {}

    def stats(self) -> list[tuple[str, int, int, int]]:
        """(resource, objects, history events, history JSON bytes) per resource, the resource named as in
        Kubernetes' metrics (`pods`, `deployments.apps`)."""
        out = []
        for prefix, cache in sorted(self.caches.items()):
            group, plural = prefix[len(ROOT):].strip("/").split("/", 1)
            name = plural if group == "core" else f"{plural}.{group}"
            out.append((name, len(cache.objects), len(cache.history), cache.history_bytes))
        return out

    def listen(self, prefix: str, callback: Callable[[str | None], None]) -> None:
        """Call `callback(key)` whenever an object under `prefix` (a resource prefix) changes in the cache, before
        any request can see the change (the CRD registry serves a CRD's kinds from then on)."""
        self._listeners.setdefault(prefix, []).append(callback)

    def _notify(self, prefix: str, key: str | None) -> None:
        for callback in self._listeners.get(prefix, ()):
            try:
                callback(key)
            except Exception:
                log.exception("watch cache listener of %s failed", prefix)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def for_prefix(self, prefix: str) -> ResourceCache:
        cache = self.caches.get(prefix)
        if cache is None:
            # No object of this resource existed at the last list: its history starts there.
            cache = self.caches[prefix] = ResourceCache(self.loaded_at, self.max_bytes)
        return cache

    @staticmethod
    def _prefix_of(key: str) -> str | None:
        # /registry/<group>/<plural>/... → /registry/<group>/<plural>/
        parts = key.split("/", 4)
        if len(parts) < 5 or parts[2] in ("allocations", "progress"):
            return None
        return "/".join(parts[:4]) + "/"

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._run(), name="watchcache")
        self._task.add_done_callback(_report_end)
        self._sweeper = asyncio.create_task(self._sweep_disconnected(), name="watchcache-clients")

    async def stop(self) -> None:
        for task in (self._marker, self._sweeper, self._task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self.close_watchers()

    def close_watchers(self) -> None:
        """End every open watch (server shutdown): each stream finishes cleanly, clients re-watch elsewhere."""
        for cache in self.caches.values():
            for w in list(cache.watchers):
                cache.watchers.discard(w)
                w.end()

    async def _sweep_disconnected(self) -> None:
        while True:
            await asyncio.sleep(CLIENT_CHECK)
            for cache in self.caches.values():
                for w in [w for w in cache.watchers if not w.connected()]:
                    cache.watchers.discard(w)
                    w.end()

    async def _list_all(self) -> tuple[list[Entry], int]:
        """Everything under ROOT, in pages all read at the revision of the first one."""
        entries: list[Entry] = []
        start: str | None = None
        revision = 0
        while True:
            page = await self.storage.list(ROOT, start_key=start, limit=LOAD_PAGE, revision=revision)
            entries.extend(page.entries)
            revision = page.revision
            if not page.more or not page.entries:
                return entries, revision
            start = page.entries[-1].key + "\x00"

    async def _load(self) -> None:
        listed_entries, listed_revision = await self._list_all()
        caches: dict[str, ResourceCache] = {}
        for entry in listed_entries:
            prefix = self._prefix_of(entry.key)
            if prefix is None:
                continue
            obj = with_rv(entry.value, entry.mod_revision)
            cache = caches.setdefault(prefix, ResourceCache(listed_revision, self.max_bytes))
            cache.objects[entry.key] = Cached(obj, encode(obj), entry.mod_revision)
        # Watchers of the previous generation missed events: they must re-list (410), as in Kubernetes.
        for old in self.caches.values():
            for w in list(old.watchers):
                w.drop()
        self.caches = caches
        self.revision = self.loaded_at = listed_revision
        for prefix in self._listeners:
            self._notify(prefix, None)
        self._ready.set()

    async def _run(self) -> None:
        backoff = 0.1
        relist = False
        while True:
            try:
                if relist:
                    await self._load()
                    relist = False
                async for ev in self.storage.watch(ROOT, self.revision + 1):
                    backoff = 0.1
                    prefix = self._prefix_of(ev.key)
                    if prefix is not None:
                        self.for_prefix(prefix).apply(ev, ev.mod_revision)
                        if prefix in self._listeners:
                            self._notify(prefix, ev.key)
                    self.revision = ev.mod_revision
                    async with self._advanced:
                        self._advanced.notify_all()
            except CompactedError as e:
                # Events we never saw are gone: start over from a full list (watchers get 410 and re-list).
                log.warning("storage watch fell behind compaction (%s); re-listing", e)
                relist = True
                self._ready.clear()
            except (StorageError, OSError) as e:
                # etcd away for a moment: resume from the last revision seen, nobody notices.
                log.warning("storage watch failed (%s); resuming in %.1fs", e, backoff)
            except Exception:
                log.exception("watch cache loop failed; re-listing in %.1fs", backoff)
                relist = True
                self._ready.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def catch_up(self, timeout: float, revision: int = 0) -> bool:
        """Wait until the cache reflects etcd's current revision (or `revision`, if given and not newer).

        The cache only hears about writes under its own prefix, so when someone else writes to the
        same etcd (another cluster, another test API server), etcd's revision moves on without an
        event for us. Then a throw-away key under our prefix (created and deleted) produces an event
        at or after that revision, which proves the cache has seen everything before it."""
        target = await self.storage.current_revision()
        if revision:
            target = min(target, revision)
        if await self.wait_for_revision(target, NATURAL_CATCH_UP):
            return True
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._write_marker(), name="watchcache-progress")
        return await self.wait_for_revision(target, timeout)

    async def _write_marker(self) -> None:
        self._markers += 1
        key = f"{PROGRESS_PREFIX}{self._id}-{self._markers}"
        try:
            await self.storage.create(key, {})
            await self.storage.delete(key)
        except StorageError as e:
            log.warning("progress marker write failed: %s", e)

    async def wait_for_revision(self, revision: int, timeout: float) -> bool:
        """True once the cache reflects `revision` (False after `timeout` s)."""
        if self.revision >= revision:
            return True
        try:
            async with self._advanced:
                await asyncio.wait_for(self._advanced.wait_for(lambda: self.revision >= revision), timeout)
            return True
        except asyncio.TimeoutError:
            return False
