"""Keeping etcd small for a cluster that runs for months: compaction, defragmentation, NOSPACE recovery.

- Compaction, as kube-apiserver does it (`--etcd-compaction-interval`, 5 min): every interval each
  apiserver records the store revision and compacts to the one it recorded at the previous tick, so
  history younger than one interval always survives. The ticks of all apiservers of an etcd are
  coordinated through the `compact_rev_key` clock (EtcdStorage.compact_tick): one compaction per interval
  however many apiservers run.
- Defragmentation: compaction frees pages inside etcd's file but never shrinks it. When a member's file
  has grown to twice what it uses and at least `--etcd-defrag-threshold` is free, it is defragmented.
- The NOSPACE alarm: past `--quota-backend-bytes` etcd refuses every write (not even a compaction clock
  tick goes through). Recovery is what etcd's maintenance guide prescribes: compact to the current
  revision, defragment every member, disarm the alarm. If the data itself does not fit, etcd raises the
  alarm again at the next write and `pkctl cluster status` says what to do.

Defragmentation blocks the member, so members are done one at a time, followers first, and only by one
apiserver: the one whose own etcd (the first of --etcd-servers) is the leader. A single apiserver is
always that one; with `--control-planes N` exactly one apiserver sits beside the leader.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .metrics import Metrics
from .storage.etcd import EtcdStorage, MemberStatus
from .storage.interface import CompactedError, StorageError

log = logging.getLogger("apiserver.etcdmaintenance")

DEFAULT_COMPACTION_INTERVAL = 300.0  # kube-apiserver's --etcd-compaction-interval
DEFAULT_DEFRAG_THRESHOLD = 100 * 2**20


@dataclass(frozen=True)
class Settings:
    compaction_interval: float = DEFAULT_COMPACTION_INTERVAL  # 0: never compact (nor maintain)
    defrag_threshold: int = DEFAULT_DEFRAG_THRESHOLD  # free bytes in a member's file before it is defragmented


def needs_defrag(status: MemberStatus, threshold: int) -> bool:
    free = status.db_size - status.db_size_in_use
    return free >= threshold and status.db_size >= 2 * status.db_size_in_use


class Maintainer:
    def __init__(self, storage: EtcdStorage, settings: Settings, metrics: Metrics | None = None):
        self.storage, self.settings, self.metrics = storage, settings, metrics
        self._time = 0  # the compact_rev_key clock as this apiserver last saw it
        self._revision = 0  # the store revision at our previous tick: what the next tick compacts to

    async def run(self) -> None:
        interval = self.settings.compaction_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            await self.tick()

    async def tick(self) -> None:
        """One interval's work; failures are logged and retried at the next tick."""
        try:
            self._time, self._revision, compacted = await self.storage.compact_tick(self._time, self._revision)
            if compacted and self.metrics is not None:
                self.metrics.etcd_compactions.inc()
        except StorageError as e:
            log.warning("etcd compaction failed: %s", e)
        try:
            await self.maintain()
        except StorageError as e:
            log.warning("etcd maintenance failed: %s", e)

    async def maintain(self) -> None:
        """Defragment members whose file grew well past their data; recover from a NOSPACE alarm."""
        own = await self.storage.member_status(self.storage.servers[0])
        if not own.is_leader:
            return  # the apiserver beside the leader does it, so that two members are never blocked at once
        statuses = [own]
        for server in self.storage.servers[1:]:
            try:
                statuses.append(await self.storage.member_status(server))
            except StorageError as e:
                log.warning("etcd maintenance skips %s: %s", server, e)
        if self.metrics is not None:
            for status in statuses:
                self.metrics.db_size.labels(status.server).set(status.db_size)
        alarms = await self.storage.alarms()
        nospace = [member for member, alarm in alarms if alarm == "NOSPACE"]
        if nospace:
            await self._recover(statuses, nospace)
            return
        for status in _followers_first(statuses):
            if needs_defrag(status, self.settings.defrag_threshold):
                await self._defragment(status)

    async def _recover(self, statuses: list[MemberStatus], members: list[int]) -> None:
        revision = max(s.revision for s in statuses)
        log.warning("etcd NOSPACE alarm on member(s) %s: compacting to %d, defragmenting, disarming",
                    ", ".join(f"{m:x}" for m in members), revision)
        try:
            await self.storage.compact(revision)
        except CompactedError:
            pass
        for status in _followers_first(statuses):
            await self._defragment(status)
        # Alarms are cluster-wide state: members we could not reach still had their alarm raised by the leader.
        for member in members:
            await self.storage.disarm(member, "NOSPACE")
        if self.metrics is not None:
            self.metrics.etcd_alarm_recoveries.inc()
        after = [await self.storage.member_status(s.server) for s in statuses]
        log.warning("etcd NOSPACE alarm disarmed; db size now %s", ", ".join(
            f"{s.server} {s.db_size} bytes ({s.db_size_in_use} in use)" for s in after))

    async def _defragment(self, status: MemberStatus) -> None:
        log.info("defragmenting etcd %s: %d bytes, %d in use", status.server, status.db_size, status.db_size_in_use)
        await self.storage.defragment(status.server)
        if self.metrics is not None:
            self.metrics.etcd_defrags.inc()


def _followers_first(statuses: list[MemberStatus]) -> list[MemberStatus]:
    # The leader last: defragmenting it makes the cluster elect another one meanwhile at worst once.
    return sorted(statuses, key=lambda s: s.is_leader)
