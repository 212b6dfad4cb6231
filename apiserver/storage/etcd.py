"""The real storage backend: etcd v3 through `aetcd`'s gRPC stubs.

aetcd's high-level helpers cannot express ranged reads with a limit or at a
revision, so reads and transactions build the etcd protobuf requests directly
(`aetcd.rpc`); a watch is read by a thread of its own (etcdwatch.py). Values are
JSON (orjson). Every key is put under `prefix`, so that several API servers
(tests) can share one etcd without seeing each other.
"""
from __future__ import annotations

import asyncio
import builtins
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator
from urllib.parse import urlparse

import aetcd
import grpc
import orjson
from aetcd import rpc, watcher
from aetcd.exceptions import ClientError

from .interface import (CompactedError, Entry, KeyExistsError, KeyNotFoundError, ListResult, NoSpaceError,
                        RevisionConflictError, StorageError, ValueTooLargeError, WatchEvent, encode)
from .etcdwatch import WatchFailed, WatchStream
from .leases import LeaseManager

log = logging.getLogger("apiserver.storage")

# Keys in the interface are logical (`/registry/core/pods/ns/x`); this root is replaced by the
# configured prefix, so `--etcd-prefix /pkt-1` stores that pod at `/pkt-1/core/pods/ns/x`.
ROOT = "/registry"

# gRPC refuses responses over 4 MiB by default; a list of 10,000 pods is ~11 MiB.
# gRPC backs off reconnecting up to 120 s by default: an etcd member that restarted after a few seconds could
# then stay unused for a minute or more. Retry within 2 s, as a restarted member is usually back within seconds.
_CHANNEL_OPTIONS = {"grpc.max_receive_message_length": 256 * 1024 * 1024,
                    "grpc.initial_reconnect_backoff_ms": 250, "grpc.min_reconnect_backoff_ms": 250,
                    "grpc.max_reconnect_backoff_ms": 2000}

# etcd answers reads at a compacted revision with this gRPC error text.
_COMPACTED_TEXT = "required revision has been compacted"
# etcd refuses values over --max-request-bytes, and its gRPC server messages a little larger than that.
_TOO_LARGE_TEXTS = ("request is too large", "received message larger than max")
# A write attached to a lease that expired or was revoked meanwhile.
_LEASE_GONE_TEXT = "requested lease not found"
# Writes refused while etcd's NOSPACE alarm is raised (its db reached --quota-backend-bytes).
NOSPACE_TEXT = "database space exceeded"


# A write waits this long for etcd's answer (etcd's own limit is 7 s: a proposal lost with a leader that died
# was answered "request timed out" only then, and the object's controllers waited as long), then is sent again:
# an earlier try that was carried out after all is recognised by its value (_already_written).
WRITE_TIMEOUT = 2.0
WRITE_ATTEMPTS = 4


class _LeaseGone(StorageError):
    pass


class _Unanswered(StorageError):
    """A write that got no answer in WRITE_TIMEOUT: it may or may not have been carried out."""


# kube-apiserver's compaction clock, shared by every apiserver of an etcd whatever its --etcd-prefix.
COMPACT_REV_KEY = b"compact_rev_key"


@dataclass(frozen=True)
class MemberStatus:
    server: str
    member_id: int
    leader: int
    db_size: int  # the backend file, in bytes
    db_size_in_use: int  # what the data needs; the rest is free pages a defragmentation gives back
    revision: int
    errors: list[str]

    @property
    def is_leader(self) -> bool:
        return self.member_id == self.leader


def _channel_closed_under_us() -> bool:
    """True in an `except asyncio.CancelledError` around a gRPC call that nobody cancelled: another caller closed
    the call's channel to move to the next endpoint (_reconnect), and gRPC cancels the calls still on it. That
    cancellation must not end the caller's task (the watch cache's loop died of it): its call is retried."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


def _details(e: Exception) -> str:
    return (e.details() or "") if isinstance(e, rpc.AioRpcError) else str(e)


@dataclass(frozen=True)
class EtcdTLS:
    """TLS to etcd (https:// servers): the CA that signed etcd's certificate, and our client certificate."""
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()
        return grpc.ssl_channel_credentials(root_certificates=read(self.ca_file), private_key=read(self.key_file),
                                            certificate_chain=read(self.cert_file))


class _TlsClient(aetcd.Client):  # type: ignore[misc]
    """aetcd.Client on a TLS channel: aetcd 1.0 only opens insecure ones, so connect() builds the same stubs on a
    secure channel (no etcd password auth: the client certificate is our identity)."""

    def __init__(self, credentials: grpc.ChannelCredentials, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        self.channel = rpc.secure_channel(f"{self._host}:{self._port}", self._credentials,
                                          options=self._options.items())
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata)
        self._connected.set()


def _address(server: str) -> tuple[str, int, bool]:
    """An etcd endpoint URL as (host, port, whether it speaks TLS)."""
    url = urlparse(server)
    return url.hostname or "127.0.0.1", url.port or 2379, url.scheme == "https"


def _range_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with prefix (etcd's prefix range)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def _guard(txn: Any, key: bytes, target: str, value: int) -> None:
    """Adds to `txn` the condition that key's create (or mod) revision is `value`. Transactions are built in
    place (message.add()): constructing the parts and passing them copies each, twice the CPU of a write's Txn."""
    c = txn.compare.add()
    c.key = key
    c.result = rpc.Compare.EQUAL
    if target == "create":
        c.target = rpc.Compare.CREATE
        c.create_revision = value
    else:
        c.target = rpc.Compare.MOD
        c.mod_revision = value


def _read_on_failure(txn: Any, key: bytes) -> None:
    """What a failed `txn` answers: the key as it is (missing, someone else's value, or ours: _already_written)."""
    txn.failure.add().request_range.key = key


def _already_written(resp: Any, data: bytes, retried: bool) -> int | None:
    """The revision of a write found carried out by an earlier try whose answer was lost: the compare of the
    try again failed on a key that holds exactly the value written (None otherwise)."""
    if not retried or not resp.responses:
        return None
    kvs = resp.responses[0].response_range.kvs
    return int(kvs[0].mod_revision) if kvs and kvs[0].value == data else None


class EtcdStorage:
    def __init__(self, servers: list[str], prefix: str = "/registry", timeout: float = 10.0,
                 tls: EtcdTLS | None = None):
        if not servers:
            raise ValueError("at least one etcd server is required")
        self._servers = servers
        self._credentials = tls.credentials() if tls is not None else None
        self._timeout = timeout
        self._prefix = prefix.rstrip("/")
        self._pb = self._prefix.encode()
        self._client: aetcd.Client | None = None
        self._index = 0
        self.leases = LeaseManager(self._grant_lease)
        self._watches: set[WatchStream] = set()

    # -- connection --------------------------------------------------------------------------

    def _new_client(self, server: str, timeout: float | None = None) -> aetcd.Client:
        host, port, tls = _address(server)
        where: dict[str, Any] = {"host": host, "port": port, "timeout": timeout or self._timeout,
                                 "options": _CHANNEL_OPTIONS}
        if tls and self._credentials is not None:
            return _TlsClient(self._credentials, **where)
        return aetcd.Client(**where)

    async def _connect(self) -> aetcd.Client:
        if self._client is None:
            # aetcd speaks to one endpoint; with several, try them in order until one connects.
            last: Exception | None = None
            for _ in range(len(self._servers)):
                client = self._new_client(self._servers[self._index % len(self._servers)])
                try:
                    await client.connect()
                    self._client = client
                    break
                except ClientError as e:
                    last = e
                    self._index += 1
            if self._client is None:
                raise StorageError(f"cannot connect to etcd {self._servers}: {last}")
        return self._client

    def _full(self, key: str) -> bytes:
        if key.startswith(ROOT):
            key = key[len(ROOT):]
        return self._pb + key.encode()

    def _strip(self, key: bytes) -> str:
        return ROOT + key[len(self._pb):].decode()

    async def _call(self, method: str, request: Any, timeout: float | None = None,
                    retried: list[bool] | None = None) -> Any:
        """One request; with several endpoints, an unavailable member makes us move on to the next one. A write
        passes `retried`, which notes each time it is sent again after a try that may have been carried out;
        its timeout then raises _Unanswered."""
        for attempt in range(len(self._servers)):
            client = await self._connect()
            kv = client.kvstub
            try:
                return await getattr(kv, method)(request, timeout=timeout or self._timeout)
            except asyncio.CancelledError:
                if not _channel_closed_under_us():
                    raise
                if retried is not None:
                    retried.append(True)
                continue
            except rpc.AioRpcError as e:
                details = e.details() or ""
                if _COMPACTED_TEXT in details:
                    raise CompactedError() from None
                if any(text in details for text in _TOO_LARGE_TEXTS):
                    raise ValueTooLargeError(details) from None
                if NOSPACE_TEXT in details:
                    raise NoSpaceError(f"etcd is out of space (NOSPACE alarm): {details}") from None
                if _LEASE_GONE_TEXT in details:
                    self.leases.forget()
                    raise _LeaseGone(details) from None
                if e.code() == rpc.StatusCode.DEADLINE_EXCEEDED and retried is not None:
                    raise _Unanswered(details) from None
                if e.code() == rpc.StatusCode.UNAVAILABLE and attempt + 1 < len(self._servers):
                    log.warning("etcd %s unavailable (%s); trying the next endpoint",
                                self._servers[self._index % len(self._servers)], details)
                    if retried is not None:
                        retried.append(True)
                    await self._reconnect(client)
                    continue
                raise StorageError(f"etcd {method} failed: {e.code().name}: {details}") from None
        raise StorageError(f"etcd {method} failed on every endpoint")

    async def _grant_lease(self, ttl: int) -> int:
        for attempt in range(len(self._servers)):
            client = await self._connect()
            try:
                resp = await client.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=self._timeout)
                return int(resp.ID)
            except asyncio.CancelledError:
                if not _channel_closed_under_us():
                    raise
                continue
            except rpc.AioRpcError as e:
                details = e.details() or ""
                if NOSPACE_TEXT in details:
                    raise NoSpaceError(f"etcd is out of space (NOSPACE alarm): {details}") from None
                if e.code() == rpc.StatusCode.UNAVAILABLE and attempt + 1 < len(self._servers):
                    await self._reconnect(client)
                    continue
                raise StorageError(f"etcd LeaseGrant failed: {e.code().name}: {details}") from None
        raise StorageError("etcd LeaseGrant failed on every endpoint")

    async def _put(self, txn: Any, key: bytes, data: bytes, ttl: int) -> Any:
        """Adds the put of a write to `txn` (returned); with a ttl, attached to a (shared) lease so that etcd
        deletes the key after it."""
        put = txn.success.add().request_put
        put.key = key
        put.value = data
        if ttl > 0:
            put.lease = await self.leases.lease_for(ttl)
        return txn

    async def _write(self, build: Any, ttl: int) -> tuple[Any, bool]:
        """Runs the transaction `await build()` makes: once more with a new lease if the shared one just expired,
        again when etcd leaves it unanswered. (Its answer, whether an earlier try may have been carried out.)"""
        retried: list[bool] = []
        for attempt in range(WRITE_ATTEMPTS):
            try:
                try:
                    return await self._call("Txn", await build(), WRITE_TIMEOUT, retried), bool(retried)
                except _LeaseGone:
                    if ttl <= 0:
                        raise
                    return await self._call("Txn", await build(), WRITE_TIMEOUT, retried), bool(retried)
            except _Unanswered as e:
                retried.append(True)
                log.warning("etcd left a write unanswered for %.0fs (%s); sending it again", WRITE_TIMEOUT, e)
        raise StorageError(f"etcd left a write unanswered {WRITE_ATTEMPTS} times (no leader?)")

    async def _reconnect(self, failed: aetcd.Client) -> None:
        """Move on to the next endpoint, unless a concurrent caller already did (`failed` is not current)."""
        if self._client is None or self._client is not failed:
            return
        client, self._client = self._client, None
        self._index += 1
        await client.close()

    async def _watch_failed(self, client: aetcd.Client, error: Exception) -> StorageError:
        # The member this watch was on may be gone; the caller resumes the watch, on the next endpoint.
        if len(self._servers) > 1 and self._client is client:
            log.warning("etcd watch on %s failed (%s); moving to the next endpoint",
                        self._servers[self._index % len(self._servers)], error)
            await self._reconnect(client)
        return StorageError(f"etcd watch failed: {error}")

    def _entry(self, kv: Any) -> Entry:
        return Entry(self._strip(kv.key), orjson.loads(kv.value), kv.mod_revision, kv.create_revision)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        resp = await self._call("Range", rpc.RangeRequest(key=self._full(key)))
        return self._entry(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str, *, start_key: str | None = None, limit: int = 0,
                   revision: int = 0) -> ListResult:
        full = self._full(prefix)
        req = rpc.RangeRequest(key=self._full(start_key) if start_key else full, range_end=_range_end(full),
                               limit=limit, revision=revision)
        resp = await self._call("Range", req)
        # etcd's header carries the current revision even for a read in the past: report the one read at.
        return ListResult([self._entry(kv) for kv in resp.kvs], revision or resp.header.revision, bool(resp.more))

    async def current_revision(self) -> int:
        # A count-only read of an empty range costs nothing and carries the store revision.
        resp = await self._call("Range", rpc.RangeRequest(key=self._pb + b"/\0", count_only=True))
        return int(resp.header.revision)

    async def check_revision(self, revision: int) -> None:
        """Raises CompactedError if `revision` is older than etcd's compaction point."""
        await self._call("Range", rpc.RangeRequest(key=self._pb + b"/\0", count_only=True, revision=revision))

    # -- writes ------------------------------------------------------------------------------

    async def create(self, key: str, value: dict[str, Any], ttl: int = 0) -> int:
        k, data = self._full(key), encode(value)

        async def build() -> Any:
            txn = rpc.TxnRequest()
            _guard(txn, k, "create", 0)
            _read_on_failure(txn, k)
            return await self._put(txn, k, data, ttl)
        resp, retried = await self._write(build, ttl)
        if not resp.succeeded:
            if (revision := _already_written(resp, data, retried)) is not None:
                return revision
            raise KeyExistsError(key)
        return int(resp.header.revision)

    async def update(self, key: str, value: dict[str, Any], expected_revision: int, ttl: int = 0) -> int:
        k, data = self._full(key), encode(value)

        async def build() -> Any:
            txn = rpc.TxnRequest()
            _guard(txn, k, "mod", expected_revision)
            _read_on_failure(txn, k)
            return await self._put(txn, k, data, ttl)
        resp, retried = await self._write(build, ttl)
        if not resp.succeeded:
            if (revision := _already_written(resp, data, retried)) is not None:
                return revision
            if resp.responses and not resp.responses[0].response_range.kvs:
                raise KeyNotFoundError(key)
            raise RevisionConflictError(key)
        return int(resp.header.revision)

    async def delete(self, key: str, expected_revision: int = 0) -> Entry:
        k = self._full(key)
        txn = rpc.TxnRequest()
        delete = txn.success.add().request_delete_range
        delete.key = k
        delete.prev_kv = True
        if expected_revision:
            _guard(txn, k, "mod", expected_revision)
            _read_on_failure(txn, k)
        resp = await self._call("Txn", txn)
        if not resp.succeeded:
            if resp.responses and not resp.responses[0].response_range.kvs:
                raise KeyNotFoundError(key)
            raise RevisionConflictError(key)
        deleted = resp.responses[0].response_delete_range
        if deleted.deleted < 1:
            raise KeyNotFoundError(key)
        prev = deleted.prev_kvs[0]
        return Entry(key, orjson.loads(prev.value), int(resp.header.revision), prev.create_revision)

    async def compact(self, revision: int) -> None:
        await self._call("Compact", rpc.CompactionRequest(revision=revision, physical=True))

    # -- maintenance (apiserver/etcdmaintenance.py) ---------------------------------------------

    @property
    def servers(self) -> "builtins.list[str]":
        return list(self._servers)

    async def compact_tick(self, logical_time: int, revision: int) -> tuple[int, int, bool]:
        """One step of kube-apiserver's compactor (etcd3/compact.go), shared by every apiserver of the etcd.

        The version of the (unprefixed) key `compact_rev_key` is a logical clock. The caller that finds it at
        `logical_time` bumps it, recording `revision`, and compacts to `revision` (the store revision it saw one
        interval earlier); a caller whose clock is behind loses the race and adopts the key's version. Returns
        (logical time, current store revision, whether this call compacted)."""
        key = COMPACT_REV_KEY
        compare = rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.VERSION, version=logical_time)
        txn = rpc.TxnRequest(
            compare=[compare],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=str(revision).encode()))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))])
        resp = await self._call("Txn", txn)
        current = int(resp.header.revision)
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            return (int(kvs[0].version) if kvs else 0), current, False
        if revision == 0:
            return logical_time + 1, current, False  # the first tick only records where we are
        try:
            await self.compact(revision)
        except CompactedError:
            pass  # someone (etcdctl, an alarm recovery) compacted further already
        return logical_time + 1, current, True

    async def member_status(self, server: str) -> MemberStatus:
        client = self._new_client(server)
        try:
            await client.connect()
            resp = await client.maintenancestub.Status(rpc.StatusRequest(), timeout=self._timeout)
            return MemberStatus(server, int(resp.header.member_id), int(resp.leader), int(resp.dbSize),
                                int(resp.dbSizeInUse), int(resp.header.revision), list(resp.errors))
        except (rpc.AioRpcError, ClientError) as e:
            raise StorageError(f"etcd status of {server} failed: {_details(e)}") from None
        finally:
            await client.close()

    async def defragment(self, server: str, timeout: float = 300.0) -> None:
        """Defragments one member (it answers nothing else meanwhile: never run two members at once)."""
        client = self._new_client(server, timeout)
        try:
            await client.connect()
            await client.maintenancestub.Defragment(rpc.DefragmentRequest(), timeout=timeout)
        except (rpc.AioRpcError, ClientError) as e:
            raise StorageError(f"etcd defragment of {server} failed: {_details(e)}") from None
        finally:
            await client.close()

    async def alarms(self) -> "builtins.list[tuple[int, str]]":
        """The raised alarms, as (member id, NOSPACE|CORRUPT)."""
        resp = await self._maintenance("Alarm", rpc.AlarmRequest(action=rpc.AlarmRequest.GET, memberID=0,
                                                                 alarm=rpc.NONE))
        return [(int(a.memberID), rpc.AlarmType.Name(a.alarm)) for a in resp.alarms]

    async def disarm(self, member_id: int, alarm: str) -> None:
        await self._maintenance("Alarm", rpc.AlarmRequest(action=rpc.AlarmRequest.DEACTIVATE, memberID=member_id,
                                                          alarm=rpc.AlarmType.Value(alarm)))

    async def _maintenance(self, method: str, request: Any) -> Any:
        client = await self._connect()
        try:
            return await getattr(client.maintenancestub, method)(request, timeout=self._timeout)
        except asyncio.CancelledError:
            if not _channel_closed_under_us():
                raise
            raise StorageError(f"etcd {method} failed: its connection was closed") from None
        except rpc.AioRpcError as e:
            if e.code() == rpc.StatusCode.UNAVAILABLE:
                await self._reconnect(client)
            raise StorageError(f"etcd {method} failed: {_details(e)}") from None

    # -- watch -------------------------------------------------------------------------------

    def _watch_event(self, ev: Any) -> WatchEvent:
        """An etcd event as the storage interface's (decoded in the watch's thread)."""
        kv = ev.kv
        if ev.type == rpc.Event.EventType.DELETE:
            prev = orjson.loads(ev.prev_kv.value) if ev.HasField("prev_kv") else None
            return WatchEvent("DELETE", self._strip(kv.key), prev, kv.mod_revision)
        return WatchEvent("PUT", self._strip(kv.key), orjson.loads(kv.value), kv.mod_revision,
                          is_create=kv.version == 1)

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[WatchEvent]:
        """The watch is read by a thread on its own channel (etcdwatch.WatchStream says why), to the endpoint the
        other calls use; events come in batches, each yielded without a turn of the loop in between."""
        client = await self._connect()
        server = self._servers[self._index % len(self._servers)]
        full = self._full(prefix)
        create = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=full, range_end=_range_end(full), start_revision=from_revision, prev_kv=True))
        host, port, tls = _address(server)
        stream = WatchStream(f"{host}:{port}", self._credentials if tls else None, _CHANNEL_OPTIONS, create,
                             self._watch_event)
        self._watches.add(stream)
        try:
            while True:
                try:
                    events = await stream.batch()
                except WatchFailed as e:
                    if e.code == grpc.StatusCode.UNAVAILABLE:
                        raise await self._watch_failed(client, e) from None
                    raise
                for ev in events:
                    yield ev
        finally:
            self._watches.discard(stream)
            stream.stop()

    async def healthy(self) -> bool:
        try:
            await asyncio.wait_for(self.current_revision(), 2.0)
            return True
        except (StorageError, asyncio.TimeoutError, ClientError):
            return False

    async def close(self) -> None:
        for stream in list(self._watches):
            stream.stop()
        if self._client is not None:
            await self._client.close()
            self._client = None
