"""File-backed IP address management for one node pod CIDR.

Layout: `<root>/<cidr>/` holds one file per allocated address (named after the address, content = owner id)
plus `last_reserved` (where the next search starts, so released addresses are not reused at once, as in the
host-local CNI plugin) and a `lock` file. Every mutation happens under an exclusive `flock` of that lock, so
two processes (two kubelets, or a kubelet and a benchmark) never hand out the same address; the files survive
restarts, so neither does a restarted kubelet.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from pklib.files import write_atomic


class IPAMError(Exception):
    """The range is exhausted or the request is invalid."""


class IPAM:
    def __init__(self, root: Path, cidr: str) -> None:
        try:
            self.network = ipaddress.IPv4Network(cidr)
        except ValueError as e:
            raise IPAMError(f"invalid pod CIDR {cidr!r}: {e}") from None
        if self.network.prefixlen > 30:
            raise IPAMError(f"pod CIDR {cidr} is too small (needs at least a /30)")
        self.dir = Path(root) / str(self.network).replace("/", "_")
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The bridge address: the first usable address of the range."""
        return self.network.network_address + 1

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def allocate(self, owner: str) -> ipaddress.IPv4Address:
        """Reserve a free address for `owner`; an owner that already holds one gets the same address back."""
        with self._locked():
            for ip, held_by in self._entries():
                if held_by == owner:
                    return ip
            # the pod addresses: the network's hosts but the first, the gateway (as integers: a /16 has 65,534)
            first = int(self.network.network_address) + 2
            count = max(0, self.network.num_addresses - 3)
            start = 0
            last = self._read(self.dir / "last_reserved")
            if last:
                try:
                    after = int(ipaddress.IPv4Address(last)) - first + 1
                    start = after if 0 < after <= count else 0
                except ValueError:
                    start = 0
            for i in range(count):
                ip = ipaddress.IPv4Address(first + (start + i) % count)
                try:
                    fd = os.open(self.dir / str(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "w") as f:
                    f.write(owner)
                write_atomic(self.dir / "last_reserved", str(ip))
                return ip
        raise IPAMError(f"no free address left in pod CIDR {self.network}")

    def release(self, owner: str) -> None:
        """Free every address held by `owner` (idempotent)."""
        with self._locked():
            for ip, held_by in self._entries():
                if held_by == owner:
                    (self.dir / str(ip)).unlink(missing_ok=True)

    def allocations(self) -> dict[str, str]:
        """address -> owner."""
        with self._locked():
            return {str(ip): owner for ip, owner in self._entries()}

    def gc(self, live_owners: Iterable[str]) -> list[str]:
        """Release addresses whose owner is not in `live_owners` (leaks from crashes); returns the freed addresses."""
        live = set(live_owners)
        freed = []
        with self._locked():
            for ip, owner in self._entries():
                if owner not in live:
                    (self.dir / str(ip)).unlink(missing_ok=True)
                    freed.append(str(ip))
        return freed

    def _entries(self) -> Iterator[tuple[ipaddress.IPv4Address, str]]:
        for p in self.dir.iterdir():
            try:
                ip = ipaddress.IPv4Address(p.name)
            except ValueError:
                continue  # lock, last_reserved, temp files
            yield ip, self._read(p)

    @staticmethod
    def _read(p: Path) -> str:
        try:
            return p.read_text().strip()
        except FileNotFoundError:
            return ""

