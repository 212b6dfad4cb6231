"""An etcd watch read by a thread, its events handed to the event loop in batches.

Why a thread: in a busy apiserver, a grpc.aio watch gets one message per turn of the event loop, and a synced
etcd watcher sends one event per message. Under a write burst the loop's turns are long (every request in flight
takes one per await), so the watch cache fell thousands of revisions behind etcd (`bench.apiserver`'s
`watch_cache_revisions_behind_etcd`). Here a thread blocks on a synchronous gRPC stream (without the GIL while it
waits) and appends what arrives to a batch; the loop is woken once per batch and the cache applies the whole batch
in one turn. The thread gets the GIL back quickly only with a short switch interval, which the apiserver's main()
sets (SWITCH_INTERVAL).

The thread also decodes the events (`convert`), so the loop only applies them.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, Iterator

import grpc
import grpc._common
from aetcd import rpc

from .interface import CompactedError, StorageError, WatchEvent

# The GIL switch interval (s) of a process that reads watches this way: Python's default (5 ms) leaves the reader
# waiting behind the loop's thread for most of each switch; 0.5 ms kept it within ~40 revisions of etcd at 600
# writes/s for a 4 % loss in write throughput (measured in session 16).
SWITCH_INTERVAL = 0.0005

# A synchronous gRPC stream waits for its next message in slices of grpc._common.MAXIMUM_WAIT_TIMEOUT (0.1 s), so
# that a main thread blocked in it still runs signal handlers; our reader is not the main thread, and those ten
# wake-ups a second were 0.18 % of a core of an otherwise idle apiserver (0.07 % with this). A message, a
# cancellation or the channel's closing still wakes the wait at once.
if isinstance(getattr(grpc._common, "MAXIMUM_WAIT_TIMEOUT", None), float):
    grpc._common.MAXIMUM_WAIT_TIMEOUT = 3600.0


class WatchFailed(StorageError):
    """The stream ended with a gRPC error (`code`): the member may be gone."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


class WatchStream:
    """One etcd watch (`create`, a WatchRequest) on its own channel to `target`, read by a daemon thread.
    `await batch()` returns the events that arrived since the last call (waiting for at least one) or raises the
    error that ended the stream; `stop()` ends it."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None, options: dict[str, Any],
                 create: Any, convert: Callable[[Any], WatchEvent]) -> None:
        self._loop = asyncio.get_running_loop()
        self._target, self._credentials, self._options = target, credentials, list(options.items())
        self._convert = convert
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._requests.put(create)
        self._lock = threading.Lock()
        self._events: list[WatchEvent] = []
        self._error: StorageError | None = None
        self._ended = False
        self._woken = False  # a wake-up is scheduled on the loop and not yet run
        self._ready = asyncio.Event()
        self._stopped = False
        self._call: Any = None
        threading.Thread(target=self._run, name=f"etcd-watch {target}", daemon=True).start()

    def _request_iterator(self) -> Iterator[Any]:
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def _run(self) -> None:
        channel = (grpc.secure_channel(self._target, self._credentials, options=self._options)
                   if self._credentials is not None else grpc.insecure_channel(self._target, options=self._options))
        error: StorageError | None = None
        try:
            with self._lock:
                if self._stopped:
                    return
                self._call = rpc.WatchStub(channel).Watch(self._request_iterator())
            for resp in self._call:
                if resp.compact_revision:
                    error = CompactedError(resp.compact_revision)
                    break
                if resp.canceled:
                    error = StorageError(f"etcd cancelled the watch: {resp.cancel_reason or 'no reason given'}")
                    break
                if resp.events:
                    self._hand_over([self._convert(ev) for ev in resp.events])
            else:
                error = StorageError("etcd ended the watch stream")
        except grpc.RpcError as e:
            if not self._stopped:
                error = WatchFailed(e.code(), e.details() or "")
        except Exception as e:  # a value that does not decode: the caller's loop logs it and re-lists
            error = StorageError(f"etcd watch event could not be read: {e!r}")
        finally:
            self._requests.put(None)
            channel.close()
            self._hand_over([], ended=True, error=error)

    def _hand_over(self, events: list[WatchEvent], ended: bool = False, error: StorageError | None = None) -> None:
        """Adds `events` (or the end of the stream) to what batch() returns; wakes the loop unless a wake-up is
        already on its way."""
        with self._lock:
            self._events.extend(events)
            if ended:
                self._ended, self._error = True, error
            if self._woken:
                return
            self._woken = True
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    async def batch(self) -> list[WatchEvent]:
        while True:
            with self._lock:
                events, self._events = self._events, []
                ended, error = self._ended, self._error
                self._woken = False
                self._ready.clear()
            if events:
                return events
            if ended:
                raise error if error is not None else StorageError("etcd watch stopped")
            await self._ready.wait()

    def stop(self) -> None:
        """Ends the stream; the thread closes its channel and exits on its own (nothing waits for it)."""
        with self._lock:
            self._stopped = True
            call = self._call
        self._requests.put(None)
        if call is not None:
            call.cancel()
