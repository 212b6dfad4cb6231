"""Share one expensive read among the callers waiting for it, without handing anyone stale data.

The kubelet's periodic full sync queues every pod at once, and each pod's sync starts by reading the runtime's
state (one `runc list` plus every sandbox's and container's state file), which costs the same for one pod as
for all of them. Callers that ask while a read is under way wait for the next one, which starts after they
asked, so each gets state at least as new as its request, as if it had read on its own; everyone waiting for
the same read shares its result. N pods synced together then cost two reads instead of N.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Generic, Hashable, TypeVar

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)


async def call_blocking(inline: bool, fn: Callable[..., R], *args: Any) -> R:
    """fn(*args) in a worker thread (it blocks), or right here when `inline` (it is known not to)."""
    return fn(*args) if inline else await asyncio.to_thread(fn, *args)


class Interrupted(Exception):
    """The caller doing a shared read was cancelled before it finished; the others may simply try again."""


class SharedRead(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._next: asyncio.Future[T] | None = None   # the read that has not started yet, and who waits for it
        self._one_at_a_time = asyncio.Lock()
        self.reads = 0                                  # how many reads were made (for tests and metrics)

    async def get(self) -> T:
        batch = self._next
        if batch is None:
            batch = self._next = asyncio.get_running_loop().create_future()
            await self._lead(batch)
        # shielded: one waiter being cancelled must not cancel the read the others wait for
        return await asyncio.shield(batch)

    async def _lead(self, batch: asyncio.Future[T]) -> None:
        try:
            await asyncio.sleep(0)  # callers of this same moment (a whole queue of pods) join this read
            async with self._one_at_a_time:
                self._next = None  # from here on, callers need a read that starts after this one
                self.reads += 1
                result = await self._read()
        except Exception as e:  # noqa: BLE001 - handed to every waiter, raised by get()
            batch.set_exception(e)
        except BaseException:
            if self._next is batch:
                self._next = None
            batch.set_exception(Interrupted("the shared read was interrupted"))
            batch.exception()  # retrieved here: nobody else may be waiting
            raise
        else:
            batch.set_result(result)

    def idle(self) -> bool:
        """No read is under way or waited for."""
        return self._next is None and not self._one_at_a_time.locked()


class SharedReads(Generic[K, T]):
    """A SharedRead per key, kept while it is in use: pods synced together that read the same object (every pod
    mounts its namespace's `kube-root-ca.crt` ConfigMap) make one request for it."""

    def __init__(self, read: Callable[[K], Awaitable[T]]) -> None:
        self._read = read
        self._by_key: dict[K, SharedRead[T]] = {}

    async def get(self, key: K) -> T:
        shared = self._by_key.get(key)
        if shared is None:
            shared = self._by_key[key] = SharedRead(lambda: self._read(key))
        try:
            return await shared.get()
        finally:
            if shared.idle() and self._by_key.get(key) is shared:
                del self._by_key[key]

    def __len__(self) -> int:
        return len(self._by_key)
