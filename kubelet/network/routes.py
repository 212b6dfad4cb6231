"""host-gw pod routing: a route to each other node's pod CIDR via that node's address (pyroute2 netlink).

Only nodes whose address is on a directly connected subnet get a route (a next hop must be a neighbour);
the others are reached through the default route. The routes carry their own protocol number, so the
sync finds and removes exactly the ones it made, and never touches anyone else's.
"""
from __future__ import annotations

import errno
import ipaddress
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

RTPROT_PKUBE = 201  # between the kernel's reserved and the routing daemons' (bird 12, zebra 11, ...)


def desired_routes(nodes: list[tuple[str, str, str]], me: str,
                   local_nets: list[ipaddress.IPv4Network]) -> dict[str, str]:
    """(name, pod CIDR, InternalIP) of every node → {pod CIDR: next hop} for the other, neighbouring nodes."""
    out: dict[str, str] = {}
    for name, cidr, ip in nodes:
        if name == me or not cidr or not ip:
            continue
        try:
            net, addr = ipaddress.IPv4Network(cidr), ipaddress.IPv4Address(ip)
        except ValueError:
            continue
        if any(addr in n and addr != n.network_address for n in local_nets):
            out[str(net)] = str(addr)
    return out


def local_networks(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
            for a in ipr.get_addr(family=socket.AF_INET) if a["scope"] == 0]


def sync_routes(ipr: IPRoute, want: dict[str, str]) -> None:
    """Make the routes of protocol RTPROT_PKUBE exactly `want` ({dst CIDR: gateway})."""
    have: dict[str, str] = {}
    for r in ipr.get_routes(family=socket.AF_INET, proto=RTPROT_PKUBE):
        if r["proto"] == RTPROT_PKUBE:
            have[f"{r.get_attr('RTA_DST')}/{r['dst_len']}"] = str(r.get_attr("RTA_GATEWAY"))
    for dst, gw in have.items():
        if want.get(dst) != gw:
            try:
                ipr.route("del", dst=dst, gateway=gw, proto=RTPROT_PKUBE)
            except NetlinkError as e:
                if e.code != errno.ESRCH:  # already gone
                    raise
    for dst, gw in want.items():
        if have.get(dst) != gw:
            ipr.route("replace", dst=dst, gateway=gw, proto=RTPROT_PKUBE)

