"""An in-memory Storage with etcd's revision semantics, for unit tests of pure logic.

One global revision counter, a full event log (so watches can start from any
revision that was not compacted), compare-and-swap writes. Values are copied in
and out so callers can never alias stored state.
"""
from __future__ import annotations

import asyncio
import bisect
import copy
from typing import Any, AsyncIterator

from .interface import (CompactedError, Entry, KeyExistsError, KeyNotFoundError, ListResult,
                        RevisionConflictError, WatchEvent, encode)


class MemoryStorage:
    def __init__(self) -> None:
        self._revision = 1  # etcd starts at 1 too
        self._compacted = 0
        # key -> list of (revision, value or None for a deletion, create revision); history per key
        # lets list() answer at a past revision.
        self._history: dict[str, list[tuple[int, dict[str, Any] | None, int]]] = {}
        self._log: list[WatchEvent] = []
        self._changed = asyncio.Condition()

    def _latest(self, key: str, revision: int = 0) -> tuple[int, dict[str, Any] | None, int] | None:
        versions = self._history.get(key)
        if not versions:
            return None
        if revision <= 0:
            return versions[-1]
        i = bisect.bisect_right([v[0] for v in versions], revision)
        return versions[i - 1] if i else None

    async def _commit(self, event: WatchEvent, stored: dict[str, Any] | None, create_revision: int) -> None:
        self._history.setdefault(event.key, []).append((event.mod_revision, stored, create_revision))
        self._log.append(event)
        async with self._changed:
            self._changed.notify_all()

    async def get(self, key: str) -> Entry | None:
        v = self._latest(key)
        if v is None or v[1] is None:
            return None
        return Entry(key, copy.deepcopy(v[1]), v[0], v[2])

    async def list(self, prefix: str, *, start_key: str | None = None, limit: int = 0,
                   revision: int = 0) -> ListResult:
        if revision and revision < self._compacted:
            raise CompactedError(self._compacted)
        at = revision or self._revision
        entries: list[Entry] = []
        more = False
        for key in sorted(k for k in self._history if k.startswith(prefix)):
            if start_key is not None and key < start_key:
                continue
            v = self._latest(key, at)
            if v is None or v[1] is None:
                continue
            if limit and len(entries) == limit:
                more = True
                break
            entries.append(Entry(key, copy.deepcopy(v[1]), v[0], v[2]))
        return ListResult(entries, at, more)

    async def create(self, key: str, value: dict[str, Any], ttl: int = 0) -> int:
        # ttl: keys never expire in this fake (the etcd backend's leases are tested with real etcd)
        current = self._latest(key)
        if current is not None and current[1] is not None:
            raise KeyExistsError(key)
        self._revision += 1
        encode(value)  # the size limit, as etcd has it
        stored = copy.deepcopy(value)
        await self._commit(WatchEvent("PUT", key, stored, self._revision, True), stored, self._revision)
        return self._revision

    async def update(self, key: str, value: dict[str, Any], expected_revision: int, ttl: int = 0) -> int:
        current = self._latest(key)
        if current is None or current[1] is None:
            raise KeyNotFoundError(key)
        if current[0] != expected_revision:
            raise RevisionConflictError(key)
        self._revision += 1
        encode(value)  # the size limit, as etcd has it
        stored = copy.deepcopy(value)
        await self._commit(WatchEvent("PUT", key, stored, self._revision), stored, current[2])
        return self._revision

    async def delete(self, key: str, expected_revision: int = 0) -> Entry:
        current = self._latest(key)
        if current is None or current[1] is None:
            raise KeyNotFoundError(key)
        if expected_revision and current[0] != expected_revision:
            raise RevisionConflictError(key)
        self._revision += 1
        await self._commit(WatchEvent("DELETE", key, current[1], self._revision), None, 0)
        return Entry(key, copy.deepcopy(current[1]), self._revision, current[2])

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[WatchEvent]:
        if from_revision and from_revision < self._compacted:
            raise CompactedError(self._compacted)
        start = from_revision or self._revision + 1
        # The log is in revision order; find the first event at or after `start`.
        pos = bisect.bisect_left([e.mod_revision for e in self._log], start)
        while True:
            while pos < len(self._log):
                event = self._log[pos]
                pos += 1
                if event.key.startswith(prefix):
                    yield WatchEvent(event.type, event.key, copy.deepcopy(event.value), event.mod_revision,
                                     event.is_create)
            async with self._changed:
                await self._changed.wait_for(lambda: pos < len(self._log))

    async def current_revision(self) -> int:
        return self._revision

    async def check_revision(self, revision: int) -> None:
        if revision < self._compacted:
            raise CompactedError(self._compacted)

    async def compact(self, revision: int) -> None:
        if revision <= self._compacted:
            raise CompactedError(self._compacted)
        self._compacted = revision
        # Like etcd: history below the compaction point is gone, except each key's latest version.
        for key, versions in list(self._history.items()):
            keep = [v for v in versions if v[0] >= revision]
            older = [v for v in versions if v[0] < revision]
            if older and older[-1][1] is not None:
                keep.insert(0, older[-1])
            if keep:
                self._history[key] = keep
            else:
                del self._history[key]
        self._log = [e for e in self._log if e.mod_revision >= revision]

    async def healthy(self) -> bool:
        return True

    async def close(self) -> None:
        return None
