"""WATCH over HTTP: newline-delimited JSON events streamed from the watch cache.

resourceVersion unset or "0": synthetic ADDED events for the current objects,
then changes. resourceVersion N: every change after N (replayed from the cache's
history), then live ones; N older than the history or than etcd's compaction
point gets an ERROR event carrying a 410 Expired Status, as in Kubernetes.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import orjson
from aiohttp import web

from pklib.resources import Resource

from . import shutdown
from .bodies import int64
from .handlers_list import RV_WAIT, parse_filters
from .handlers_objects import collection_prefix, converts, served_line
from .metrics import Metrics
from .status import StatusError
from .storage.interface import CompactedError, Storage
from .watchcache import WATCHER_QUEUE, Filter, TooOld, WatchCache, Watcher, event_line, resource_prefix

log = logging.getLogger("apiserver.watch")

DEFAULT_TIMEOUT = 1800  # Kubernetes' --min-request-timeout; spread by up to 2x like it does
MAX_TIMEOUT = 365 * 24 * 3600
MAX_BATCH = 256  # events written per socket write when a watcher has a backlog
# A bookmark goes out this long before a watch times out, so the client resumes from the newest revision
# (Kubernetes' cacher does the same, besides one every --watch-bookmark-interval).
PRE_TIMEOUT_BOOKMARK = 2.0
# Request key: a StreamResponse subclass that re-encodes events (server-side Tables for `kubectl get -w`).
WATCH_RESPONSE = "pkube.watch_response"


def is_watch(query: Any) -> bool:
    return str(query.get("watch", "")).lower() in ("1", "true")


def _error_line(err: StatusError) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": err.status()}) + b"\n"


def _next_bookmark(now: float, deadline: float, interval: float) -> float:
    at = min(now + interval, deadline - PRE_TIMEOUT_BOOKMARK)
    return at if at > now else float("inf")


def _connected(request: web.Request) -> bool:
    return request.transport is not None and not request.transport.is_closing()


def _bookmark(res: Resource, revision: int) -> bytes:
    return orjson.dumps({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version,
                                                        "metadata": {"resourceVersion": str(revision)}}}) + b"\n"


def _served(res: Resource, lines: list[bytes]) -> list[bytes]:
    """Event lines as the watched version shows their objects (custom resources stored at another version)."""
    if not converts(res):
        return lines
    return [served_line(res, line) if line.startswith(b'{"type":"ADDED"') or line.startswith(b'{"type":"MODIFIED"')
            or line.startswith(b'{"type":"DELETED"') else line for line in lines]


async def _start(request: web.Request) -> web.StreamResponse:
    response_class = request.get(WATCH_RESPONSE, web.StreamResponse)
    resp = response_class(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    return resp


async def serve_watch(request: web.Request, storage: Storage, cache: WatchCache, metrics: Metrics,
                      res: Resource, namespace: str | None, name: str | None, bookmark_interval: float
                      ) -> web.StreamResponse:
    query = request.query
    filters = parse_filters(res, query)
    by_labels_fields = filters.matches
    # None when everything matches: the history's older versions then need no decoding for a resumed watch
    matches: Filter | None = (None if filters.trivial else by_labels_fields) if name is None else (
        lambda obj: (obj.get("metadata") or {}).get("name") == name and by_labels_fields(obj))
    # A timeout past a year is as good as none (and asyncio cannot schedule int64 seconds ahead).
    timeout = min(int64(query.get("timeoutSeconds") or 0, "timeoutSeconds"), MAX_TIMEOUT) \
        or int(DEFAULT_TIMEOUT * (1 + random.random()))
    bookmarks = str(query.get("allowWatchBookmarks", "")).lower() in ("1", "true")
    rv_text = query.get("resourceVersion") or ""
    rv = int64(rv_text, "resourceVersion") if rv_text else 0

    failure: StatusError | None = None
    if rv:
        try:
            await storage.check_revision(rv)
        except CompactedError as e:
            failure = StatusError(410, "Expired", f"too old resource version: {rv} ({e.compact_revision})")
        else:
            if not await cache.catch_up(RV_WAIT, rv) or cache.revision < rv:
                failure = StatusError(504, "Timeout", f"Too large resource version: {rv}, current: {cache.revision}")

    elif rv_text != "0":
        # No resourceVersion: start from the current state, which the cache must have caught up with.
        await cache.catch_up(RV_WAIT)
    ns_prefix = collection_prefix(res, namespace)
    rc = cache.for_prefix(resource_prefix(res.group, res.plural))
    initial: list[bytes] = []
    watcher: Watcher | None = None
    if failure is None:
        # From computing the replay to registering the watcher nothing awaits: no event can fall in between.
        if rv:
            try:
                initial = rc.replay(rv, ns_prefix, matches)
            except TooOld as e:
                failure = StatusError(410, "Expired", str(e))
        else:
            initial = [event_line("ADDED", c.raw) for c in rc.items(ns_prefix, matches)]
        if failure is None:
            watcher = Watcher(ns_prefix, matches, asyncio.Queue(WATCHER_QUEUE),
                              connected=lambda: _connected(request))
            rc.watchers.add(watcher)
            if shutdown.stopping(request):  # came in while the server stops: ends right after its initial events
                watcher.end()
    if failure is not None:
        resp = await _start(request)
        await resp.write(_error_line(failure))
        return resp
    assert watcher is not None

    metrics.watchers.labels(res.plural).inc()
    try:
        resp = await _start(request)
        if initial:
            await resp.write(b"".join(_served(res, initial)))
        await _pump(request, resp, watcher, res, cache, time.monotonic() + timeout, bookmarks, bookmark_interval)
    except ConnectionResetError:
        pass  # the client went away
    finally:
        rc.watchers.discard(watcher)
        metrics.watchers.labels(res.plural).dec()
    return resp


async def _pump(request: web.Request, resp: web.StreamResponse, watcher: Watcher, res: Resource,
                cache: WatchCache, deadline: float, bookmarks: bool, bookmark_interval: float) -> None:
    # An idle watch sleeps until its next bookmark or its deadline; a client that leaves meanwhile is noticed
    # by the watch cache's sweep, which ends the watcher (a None in its queue).
    now = time.monotonic()
    next_bookmark = _next_bookmark(now, deadline, bookmark_interval) if bookmarks else float("inf")
    while True:
        now = time.monotonic()
        if now >= deadline or not _connected(request):
            return
        try:
            async with asyncio.timeout(min(deadline, next_bookmark) - now):
                line = await watcher.queue.get()
        except TimeoutError:
            now = time.monotonic()
            if now >= next_bookmark:
                await resp.write(_bookmark(res, cache.revision))
                next_bookmark = _next_bookmark(now, deadline, bookmark_interval)
            continue
        batch = [line]
        while line is not None and len(batch) < MAX_BATCH and not watcher.queue.empty():
            line = watcher.queue.get_nowait()
            batch.append(line)
        if line is None:  # the cache closed this watcher: it fell behind, or the server stops
            batch.pop()
            if watcher.dropped:
                batch.append(_error_line(StatusError(
                    410, "Expired", "the watch fell too far behind and was closed; re-list and watch again")))
        if batch:
            await resp.write(b"".join(_served(res, [b for b in batch if b is not None])))
        if line is None:
            return
