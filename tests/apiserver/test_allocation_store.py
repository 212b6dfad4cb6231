"""The allocators directly on the real etcd storage: crowded ranges, owners, bad ranges."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest

from apiserver.allocators import (IP_PREFIX, AlreadyAllocated, NodePortAllocator, OutOfRange, Owner, RangeFull,
                                  ServiceIPAllocator, parse_port_range)
from apiserver.storage.etcd import EtcdStorage
from tests.support.controlplane import Etcd
from tests.util import unique


@pytest.fixture
async def storage(etcd: Etcd) -> AsyncIterator[EtcdStorage]:
    s = EtcdStorage([etcd.url], "/" + unique("allocstore"))
    yield s
    await s.close()


def owner() -> Owner:
    return Owner(unique("uid"), "ns/" + unique("svc"))


async def test_crowded_port_range_finds_the_last_free_port(storage: EtcdStorage) -> None:
    ports = NodePortAllocator((32000, 32199))  # larger than the sequential probe window
    someone = owner()
    free = 32123
    await asyncio.gather(*(ports.reserve(storage, "TCP", p, someone) for p in range(32000, 32200) if p != free))
    assert await ports.allocate(storage, "TCP", owner()) == free
    with pytest.raises(RangeFull, match="failed to allocate a nodePort: range is full"):
        await ports.allocate(storage, "TCP", owner())
    # Other protocols have their own ports.
    assert 32000 <= await ports.allocate(storage, "UDP", owner()) <= 32199


async def test_release_only_frees_what_the_owner_holds(storage: EtcdStorage) -> None:
    ips = ServiceIPAllocator("10.100.0.0/24")
    first, second = owner(), owner()
    await ips.reserve(storage, "10.100.0.50", first)
    await ips.release(storage, "10.100.0.50", second)  # not second's: must stay taken
    with pytest.raises(AlreadyAllocated):
        await ips.reserve(storage, "10.100.0.50", second)
    await ips.release(storage, "10.100.0.50", first)
    await ips.reserve(storage, "10.100.0.50", second)
    entry = await storage.get(IP_PREFIX + "10.100.0.50")
    assert entry is not None and entry.value == {"uid": second.uid, "service": second.name}


async def test_ip_range_bounds(storage: EtcdStorage) -> None:
    ips = ServiceIPAllocator("10.100.1.0/24")
    for bad in ("10.100.1.0", "10.100.1.255", "10.100.2.1", "10.96.0.1"):
        with pytest.raises(OutOfRange, match="The range of valid IPs is 10.100.1.0/24"):
            await ips.reserve(storage, bad, owner())
    for ok in ("10.100.1.1", "10.100.1.254"):
        assert await ips.reserve(storage, ok, owner()) == ok
    allocated = {await ips.allocate(storage, owner()) for _ in range(20)}
    assert len(allocated) == 20 and not allocated & {"10.100.1.1", "10.100.1.10", "10.100.1.254"}


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "10.0.0.1/24", "nonsense", "10.0.0.0/31"])
def test_bad_cidr_is_a_clear_error(cidr: str) -> None:
    with pytest.raises(ValueError, match="service CIDR"):
        ServiceIPAllocator(cidr)


@pytest.mark.parametrize("value", ["30000", "a-b", "32767-30000", "0-10", "1-70000"])
def test_bad_port_range_is_a_clear_error(value: str) -> None:
    with pytest.raises(ValueError, match="node port range"):
        parse_port_range(value)


def test_port_range_forms() -> None:
    assert parse_port_range("30000-32767") == (30000, 32767)
    assert parse_port_range((31000, 31010)) == (31000, 31010)
