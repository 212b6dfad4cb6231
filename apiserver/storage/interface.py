"""The narrow, revision-aware storage interface under the API server.

Keys are strings such as `/registry/pods/default/web-1`. Values are object
dicts; the backend serialises them. Every revision is the store's global
revision (etcd's), which the API server exposes as `metadata.resourceVersion`.
Backends: `etcd.EtcdStorage` (the real one) and `memory.MemoryStorage` (unit tests).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

import orjson

# etcd's default --max-request-bytes: a larger value is refused before it is sent (nothing is written).
MAX_VALUE_BYTES = 1536 * 1024


class StorageError(Exception):
    pass


class KeyExistsError(StorageError):
    """create() of a key that already exists."""


class KeyNotFoundError(StorageError):
    """get/update/delete of a key that does not exist."""


class RevisionConflictError(StorageError):
    """update/delete whose expected revision is not the key's current one."""


class ValueTooLargeError(StorageError):
    """The store refuses a value this large (etcd: --max-request-bytes, 1.5 MiB by default) → 413."""


class NoSpaceError(StorageError):
    """The store refuses writes for lack of space (etcd's NOSPACE alarm) → 503 until maintenance recovers it."""


def encode(value: dict[str, Any]) -> bytes:
    """A value as stored (JSON); ValueTooLargeError past MAX_VALUE_BYTES, as etcd would refuse it."""
    data = orjson.dumps(value)
    if len(data) > MAX_VALUE_BYTES:
        raise ValueTooLargeError(f"the object is {len(data)} bytes as stored, over the limit of {MAX_VALUE_BYTES} "
                                 f"bytes (etcdserver: request is too large)")
    return data


class CompactedError(StorageError):
    """watch from a revision that was compacted away (→ 410 Gone)."""

    def __init__(self, compact_revision: int = 0):
        super().__init__(f"revision compacted (oldest available {compact_revision})")
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class Entry:
    key: str
    value: dict[str, Any]
    mod_revision: int
    create_revision: int = 0


@dataclass(frozen=True)
class ListResult:
    entries: list[Entry]
    revision: int  # the store revision the list was read at
    more: bool  # True when `limit` cut the list short


@dataclass(frozen=True)
class WatchEvent:
    type: str  # "PUT" (create or update) | "DELETE"
    key: str
    value: dict[str, Any] | None  # the new value; for DELETE the last value before deletion
    mod_revision: int
    is_create: bool = False


class Storage(Protocol):
    async def get(self, key: str) -> Entry | None: ...

    async def list(self, prefix: str, *, start_key: str | None = None, limit: int = 0,
                   revision: int = 0) -> ListResult:
        """Keys under prefix in key order, from start_key (inclusive) on; at `revision` if > 0."""
        ...

    async def create(self, key: str, value: dict[str, Any], ttl: int = 0) -> int:
        """Writes only if the key is absent; returns the new revision. KeyExistsError otherwise.
        With ttl > 0 the store deletes the key by itself after about ttl seconds (Events)."""
        ...

    async def update(self, key: str, value: dict[str, Any], expected_revision: int, ttl: int = 0) -> int:
        """Writes only if the key's mod revision is expected_revision; returns the new revision.
        ttl as for create (counted again from this write)."""
        ...

    async def delete(self, key: str, expected_revision: int = 0) -> Entry:
        """Removes the key (if expected_revision > 0, only at that revision); returns the deleted entry
        with mod_revision set to the revision of the delete."""
        ...

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events for keys under prefix with revision >= from_revision, in revision order, forever."""
        ...

    async def current_revision(self) -> int: ...

    async def check_revision(self, revision: int) -> None:
        """Raises CompactedError if `revision` is older than the store's compaction point (watch → 410)."""
        ...

    async def compact(self, revision: int) -> None: ...

    async def healthy(self) -> bool: ...

    async def close(self) -> None: ...
