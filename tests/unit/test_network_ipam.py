"""File-backed IPAM: unique addresses across processes, release, reuse order, GC, exhaustion."""
from __future__ import annotations

import ipaddress
import multiprocessing
from pathlib import Path

import pytest

from kubelet.network.ipam import IPAM, IPAMError


def _allocate_many(root: str, worker: int, n: int, out: "multiprocessing.Queue[list[str]]") -> None:
    ipam = IPAM(Path(root), "10.9.0.0/24")
    out.put([str(ipam.allocate(f"w{worker}-{i}")) for i in range(n)])


def test_two_processes_never_get_the_same_address(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    out: "multiprocessing.Queue[list[str]]" = ctx.Queue()
    procs = [ctx.Process(target=_allocate_many, args=(str(tmp_path), w, 60, out)) for w in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    addresses = results[0] + results[1]
    assert len(addresses) == 120 and len(set(addresses)) == 120
    assert "10.9.0.1" not in addresses  # the gateway
    assert len(IPAM(tmp_path, "10.9.0.0/24").allocations()) == 120


def test_allocate_is_idempotent_per_owner_and_survives_a_new_instance(tmp_path: Path) -> None:
    a = IPAM(tmp_path, "10.9.0.0/24")
    ip = a.allocate("pod-a")
    assert ip == ipaddress.IPv4Address("10.9.0.2") and a.gateway == ipaddress.IPv4Address("10.9.0.1")
    assert a.allocate("pod-a") == ip
    assert IPAM(tmp_path, "10.9.0.0/24").allocate("pod-b") == ipaddress.IPv4Address("10.9.0.3")


def test_release_and_no_immediate_reuse(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path, "10.9.0.0/24")
    first = ipam.allocate("a")
    ipam.release("a")
    ipam.release("a")
    assert ipam.allocations() == {}
    assert ipam.allocate("b") != first  # the search continues after the last reserved address


def test_gc_frees_addresses_of_unknown_owners(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path, "10.9.0.0/24")
    keep, leak = ipam.allocate("live"), ipam.allocate("dead")
    assert ipam.gc({"live"}) == [str(leak)]
    assert ipam.allocations() == {str(keep): "live"}


def test_exhaustion_and_bad_cidr(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path, "10.9.0.0/30")  # hosts .1 (gateway) and .2
    ipam.allocate("a")
    with pytest.raises(IPAMError, match="no free address"):
        ipam.allocate("b")
    with pytest.raises(IPAMError, match="invalid pod CIDR"):
        IPAM(tmp_path, "10.9.0.300/24")


def test_the_search_wraps_around_after_the_last_address(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path, "10.9.0.0/29")  # .1 the gateway, pods .2-.6 (.7 is the broadcast address)
    got = [str(ipam.allocate(f"p{i}")) for i in range(5)]
    assert got == ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
    ipam.release("p1")
    assert str(ipam.allocate("late")) == "10.9.0.3"  # after .6, from the start again
