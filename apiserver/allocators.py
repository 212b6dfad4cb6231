"""ClusterIP and NodePort allocation, with the store as the arbiter.

A value is taken by creating its key (`/registry/allocations/serviceips/<ip>`,
`/registry/allocations/nodeports/<proto>/<port>`) with Storage.create, which succeeds only
if the key is absent. So two requests (even on two API servers) can never both get the
same value: the loser sees KeyExistsError and tries another candidate. Candidates start
at a random point of the range so that concurrent allocators rarely collide at all.
Each key records its owner (the Service's uid) so that a release never frees a value
that has since been given to someone else.
"""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Any, Iterator

from apiserver.storage.interface import KeyExistsError, KeyNotFoundError, RevisionConflictError

IP_PREFIX = "/registry/allocations/serviceips/"
PORT_PREFIX = "/registry/allocations/nodeports/"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_PORTS = (30000, 32767)
# Sequential probes from a random start before falling back to reading what is taken.
_PROBES = 64
# Host offsets inside the service CIDR that only an explicit request may take:
# .1 is the `kubernetes` Service (the API), .10 the cluster DNS.
RESERVED_OFFSETS = (1, 10)


class AllocationError(Exception):
    """Base of the allocation failures; the message is Kubernetes' wording for the field error."""


class AlreadyAllocated(AllocationError):
    pass


class OutOfRange(AllocationError):
    pass


class RangeFull(AllocationError):
    pass


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Owner:
    uid: str
    name: str  # namespace/name, for people reading the store

    def record(self) -> dict[str, Any]:
        return {"uid": self.uid, "service": self.name}


def parse_cidr(cidr: str) -> Network:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as e:
        raise ValueError(f"invalid service CIDR {cidr!r}: {e}") from None
    if net.num_addresses < 4:
        raise ValueError(f"service CIDR {cidr!r} is too small")
    return net


def parse_port_range(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`30000-32767` or (30000, 32767) → (30000, 32767)."""
    if isinstance(value, str):
        lo_text, sep, hi_text = value.partition("-")
        if not sep or not lo_text.strip().isdigit() or not hi_text.strip().isdigit():
            raise ValueError(f"invalid node port range {value!r}: want LOW-HIGH")
        lo, hi = int(lo_text), int(hi_text)
    else:
        lo, hi = int(value[0]), int(value[1])
    if not 0 < lo <= hi <= 65535:
        raise ValueError(f"invalid node port range {lo}-{hi}")
    return lo, hi


async def _claim(storage: Any, key: str, owner: Owner) -> bool:
    try:
        await storage.create(key, owner.record())
        return True
    except KeyExistsError:
        return False


async def _release(storage: Any, key: str, owner: Owner) -> None:
    entry = await storage.get(key)
    if entry is None or entry.value.get("uid") != owner.uid:
        return
    try:
        await storage.delete(key, entry.mod_revision)
    except (KeyNotFoundError, RevisionConflictError):
        pass  # released or re-taken meanwhile: not ours to delete any more


async def _allocate(storage: Any, prefix: str, size: int, key_of: Any, skip: set[int], owner: Owner,
                    what: str) -> int:
    """Claims a free offset in [0, size): random start, a few sequential probes, then the free list."""
    start = random.randrange(size)
    for i in range(min(_PROBES, size)):
        offset = (start + i) % size
        if offset not in skip and await _claim(storage, key_of(offset), owner):
            return offset
    # Crowded range: read what is taken and try the free offsets (bounded by the range size).
    taken = {e.key for e in (await storage.list(prefix)).entries}
    free = [o for o in _rotated(size, start) if o not in skip and key_of(o) not in taken]
    for offset in free:
        if await _claim(storage, key_of(offset), owner):
            return offset
    raise RangeFull(f"failed to allocate a {what}: range is full")


def _rotated(size: int, start: int) -> Iterator[int]:
    for i in range(size):
        yield (start + i) % size


class ServiceIPAllocator:
    def __init__(self, cidr: str = DEFAULT_SERVICE_CIDR):
        self.network = parse_cidr(cidr)
        self.cidr = str(self.network)
        # Host offsets 1 .. size-2 (no network address; for IPv4 no broadcast either).
        self._base = int(self.network.network_address)
        last = self.network.num_addresses - (2 if self.network.version == 4 else 1)
        self._count = min(last, 1 << 24)  # a huge IPv6 range needs no more candidates than this

    @property
    def family(self) -> str:
        return "IPv4" if self.network.version == 4 else "IPv6"

    def check(self, ip: str) -> None:
        """Raises OutOfRange with Kubernetes' message unless `ip` is usable in the range."""
        addr = ipaddress.ip_address(ip)
        offset = int(addr) - self._base
        if addr not in self.network or not 1 <= offset <= self._count:
            raise OutOfRange(f"provided IP is not in the valid range. The range of valid IPs is {self.cidr}")

    def _key(self, offset: int) -> str:
        return IP_PREFIX + str(ipaddress.ip_address(self._base + offset + 1))

    async def reserve(self, storage: Any, ip: str, owner: Owner) -> str:
        self.check(ip)
        ip = str(ipaddress.ip_address(ip))
        if not await _claim(storage, IP_PREFIX + ip, owner):
            raise AlreadyAllocated("provided IP is already allocated")
        return ip

    async def allocate(self, storage: Any, owner: Owner) -> str:
        # candidate offset o ↦ host offset o+1; the reserved host offsets are skipped.
        skip = {r - 1 for r in RESERVED_OFFSETS}
        offset = await _allocate(storage, IP_PREFIX, self._count, self._key, skip, owner, "serviceIP")
        return str(ipaddress.ip_address(self._base + offset + 1))

    async def release(self, storage: Any, ip: str, owner: Owner) -> None:
        await _release(storage, IP_PREFIX + str(ipaddress.ip_address(ip)), owner)


class NodePortAllocator:
    def __init__(self, port_range: str | tuple[int, int] = DEFAULT_NODE_PORTS):
        self.low, self.high = parse_port_range(port_range)

    @property
    def range_text(self) -> str:
        return f"{self.low}-{self.high}"

    def check(self, port: int) -> None:
        if not self.low <= port <= self.high:
            raise OutOfRange(f"provided port is not in the valid range. The range of valid ports is "
                             f"{self.range_text}")

    @staticmethod
    def key(protocol: str, port: int) -> str:
        return f"{PORT_PREFIX}{protocol.lower()}/{port}"

    async def reserve(self, storage: Any, protocol: str, port: int, owner: Owner) -> None:
        self.check(port)
        if not await _claim(storage, self.key(protocol, port), owner):
            raise AlreadyAllocated("provided port is already allocated")

    async def allocate(self, storage: Any, protocol: str, owner: Owner) -> int:
        prefix = f"{PORT_PREFIX}{protocol.lower()}/"
        offset = await _allocate(storage, prefix, self.high - self.low + 1,
                                 lambda o: self.key(protocol, self.low + o), set(), owner, "nodePort")
        return self.low + offset

    async def release(self, storage: Any, protocol: str, port: int, owner: Owner) -> None:
        await _release(storage, self.key(protocol, port), owner)
