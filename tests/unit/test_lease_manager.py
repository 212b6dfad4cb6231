"""apiserver/storage/leases.py: objects written close together share one etcd lease (Kubernetes' lease reuse)."""
from __future__ import annotations

from apiserver.storage.leases import LeaseManager


class FakeEtcd:
    def __init__(self) -> None:
        self.now = 1000.0
        self.granted: list[int] = []  # ttl of each lease granted

    async def grant(self, ttl: int) -> int:
        self.granted.append(ttl)
        return len(self.granted)


async def test_writes_within_the_reuse_window_share_a_lease() -> None:
    etcd = FakeEtcd()
    leases = LeaseManager(etcd.grant, clock=lambda: etcd.now)
    first = await leases.lease_for(3600)
    assert etcd.granted == [3600 + 60]  # 5% of an hour is more than the 60 s cap
    etcd.now += 30
    assert await leases.lease_for(3600) == first  # expires between 1 h and 1 h + 60 s from now: fine
    etcd.now += 31
    second = await leases.lease_for(3600)  # the first lease would no longer outlive the TTL
    assert second != first and etcd.granted == [3660, 3660]


async def test_short_ttls_reuse_five_percent_and_a_lease_holds_at_most_max_attached() -> None:
    etcd = FakeEtcd()
    leases = LeaseManager(etcd.grant, clock=lambda: etcd.now, max_attached=3)
    ids = []
    for _ in range(4):
        etcd.now += 0.01
        ids.append(await leases.lease_for(100))
    assert etcd.granted == [105, 105] and ids == [1, 1, 1, 2]


async def test_forget_grants_anew() -> None:
    etcd = FakeEtcd()
    leases = LeaseManager(etcd.grant, clock=lambda: etcd.now)
    assert await leases.lease_for(100) == 1
    leases.forget()
    assert await leases.lease_for(100) == 2
