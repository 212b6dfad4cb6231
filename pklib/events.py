"""EventRecorder: core/v1 Events telling users what a component did and why.

`record()` never blocks the caller (a controller's sync loop must not wait on
bookkeeping): events go to a bounded queue that a background task writes. A
repeat of the same (object, type, reason, message) patches the existing Event's
count and lastTimestamp instead of creating a new one, as client-go's
EventCorrelator does, so a crash-looping object yields one Event with count N.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from typing import Any, Protocol

from .api.timefmt import now_rfc3339
from .api.wellknown import DEFAULT_NAMESPACE
from .errors import ApiError, ConnectionFailed, is_not_found
from .resources import EVENTS, Resource
from .timeouts import wait_for

log = logging.getLogger(__name__)


NORMAL = "Normal"
WARNING = "Warning"


class EventWriter(Protocol):
    async def create(self, res: Resource, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]: ...

    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge") -> dict[str, Any]: ...


class EventRecorder:
    def __init__(self, client: EventWriter, component: str, host: str | None = None,
                 queue_size: int = 1000, cache_size: int = 4096):
        self.client = client
        self.component = component
        self.host = host or socket.gethostname()
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str]] = asyncio.Queue(queue_size)
        # (object, type, reason, message) -> (event namespace, event name, count); LRU-bounded.
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self._cache_size = cache_size
        self._idle = asyncio.Event()
        self._idle.set()
        self._dropped = 0  # events dropped since the queue was last drained: logged once per burst

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an Event about `obj`; dropped if the writer is far behind (one log line per burst of drops, as a
        line per event would cost the busy process more than the event)."""
        try:
            self._queue.put_nowait((obj, type_, reason, message))
            self._idle.clear()
        except asyncio.QueueFull:
            if not self._dropped:
                log.warning("event queue full; dropping %s %s: %s (and the next ones until it drains)",
                            reason, _ref(obj).get("name"), message)
            self._dropped += 1

    def normal(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.record(obj, NORMAL, reason, message)

    def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.record(obj, WARNING, reason, message)

    async def flush(self, timeout: float = 10) -> None:
        """Wait until every queued event was written (tests, shutdown)."""
        await wait_for(self._idle.wait(), timeout)

    async def run(self) -> None:
        while True:
            obj, type_, reason, message = await self._queue.get()
            try:
                await self._write(obj, type_, reason, message)
            except (ApiError, ConnectionFailed) as e:
                log.info("could not write event %s for %s: %s", reason, _ref(obj).get("name"), e)
            finally:
                if self._queue.empty():
                    self._idle.set()
                    if self._dropped:
                        log.warning("event queue drained; %d events were dropped", self._dropped)
                        self._dropped = 0

    async def _write(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        ref = _ref(obj)
        ts = now_rfc3339()
        agg_key = (ref.get("uid", ""), ref["kind"], ref.get("namespace", ""), ref["name"], type_, reason, message)
        seen = self._seen.get(agg_key)
        if seen is not None:
            ns, name, count = seen
            try:
                await self.client.patch(EVENTS, name, {"count": count + 1, "lastTimestamp": ts}, ns)
                self._remember(agg_key, (ns, name, count + 1))
                return
            except ApiError as e:
                if not is_not_found(e):
                    raise
                # The Event expired or was deleted: start a new one.
        ns = ref.get("namespace") or DEFAULT_NAMESPACE
        # Like client-go: <object name>.<unique hex suffix>, unique enough per object.
        name = f"{ref['name']}.{time.time_ns():x}"
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref, "reason": reason, "message": message, "type": type_,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.host,
        }
        await self.client.create(EVENTS, event, ns)
        self._remember(agg_key, (ns, name, 1))

    def _remember(self, key: tuple[str, ...], value: tuple[str, str, int]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)


def _ref(obj: dict[str, Any]) -> dict[str, Any]:
    """An ObjectReference to obj (involvedObject)."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""), "name": meta.get("name", ""),
           "uid": meta.get("uid"), "namespace": meta.get("namespace"),
           "resourceVersion": meta.get("resourceVersion")}
    return {k: v for k, v in ref.items() if v}
