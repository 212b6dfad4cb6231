"""Facts about this host's network, shared by the kubelet (its node address) and `pkctl cluster up`."""
from __future__ import annotations

import socket

from pyroute2 import IPRoute


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
