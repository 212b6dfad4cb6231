"""This host's network, shared by the kubelet and `pkctl cluster`: its node address, and link removal."""
from __future__ import annotations

import errno
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError


def host_ip() -> str:
    """The first global IPv4 address of the interface holding the default route (else any global one)."""
    with IPRoute() as ipr:
        default = [r for r in ipr.get_routes(family=socket.AF_INET) if r.get("dst_len") == 0]
        oif = default[0].get_attr("RTA_OIF") if default else None
        addrs = [(a["index"], a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr(family=socket.AF_INET)
                 if a["scope"] == 0]
    for index, addr in addrs:
        if index == oif:
            return str(addr)
    return str(addrs[0][1]) if addrs else "127.0.0.1"


def delete_link(name: str) -> None:
    """Delete the link `name` (a bridge, or one end of a veth pair, which takes its peer along); a link that
    is not there (any more) is fine. NetlinkError for anything else."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            try:
                ipr.link("del", index=idx[0])
            except NetlinkError as e:
                if e.code != errno.ENODEV:
                    raise


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))
