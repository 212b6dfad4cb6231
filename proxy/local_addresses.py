"""Making service addresses local to this host: /32s on an interface (by default `lo`), via netlink.

Used by `pkube dns` for its ClusterIP (10.96.0.10 by default): once the address is local, the DNS server
simply binds to it, and pods reach it through their default gateway -- the node (Linux accepts a packet
for any local address on any interface). `lo` is used rather than a dummy interface because it exists
on every kernel; the dummy driver is not always built.
"""
from __future__ import annotations

import logging

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("dns")


class LocalAddressError(Exception):
    pass


class LocalAddresses:
    def __init__(self, interface: str):
        self.interface = interface
        self.added: list[str] = []

    def ensure(self, addresses: list[str]) -> None:
        """Add each address that no interface has yet (idempotent); remembers what it added."""
        try:
            with IPRoute() as ipr:
                present = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2)}
                missing = [a for a in dict.fromkeys(addresses) if a not in present and a != "0.0.0.0"]
                if not missing:
                    return
                links = ipr.link_lookup(ifname=self.interface)
                if not links:
                    raise LocalAddressError(f"interface {self.interface!r} does not exist")
                for address in missing:
                    ipr.addr("add", index=links[0], address=address, prefixlen=32)
                    self.added.append(address)
                    log.info("added %s/32 to %s", address, self.interface)
        except NetlinkError as e:
            raise LocalAddressError(f"cannot add addresses to {self.interface}: {e.args[-1]}") from None

    def release(self) -> None:
        """Remove exactly the addresses ensure() added."""
        if not self.added:
            return
        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=self.interface)
            for address in self.added if links else []:
                try:
                    ipr.addr("del", index=links[0], address=address, prefixlen=32)
                except NetlinkError as e:  # someone removed it already
                    log.debug("removing %s from %s: %s", address, self.interface, e)
        self.added = []
