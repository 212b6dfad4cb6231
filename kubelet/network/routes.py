"""Pod routing between nodes (pyroute2 netlink): host-gw, a route to each other node's pod CIDR via that node's
address; the VXLAN backend's routes (kubelet/network/vxlan.py) go through the same sync, onlink on its device.

Only nodes whose address is on a directly connected subnet get a route (a next hop must be a neighbour);
the others are reached through the default route. The routes carry their own protocol number, so the
sync finds and removes exactly the ones it made, and never touches anyone else's. Every pkube cluster on a
machine shares that number (a local cluster's first node is the host, so several multi-node clusters share
its routing table), so the sync is also scoped to its cluster's pod range (`--cluster-cidr`; each home gets
its own): another cluster's routes lie outside it and are left alone.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from typing import Collection

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

RTPROT_PKUBE = 201  # between the kernel's reserved and the routing daemons' (bird 12, zebra 11, ...)
RTNH_F_ONLINK = 4


@dataclass(frozen=True)
class NextHop:
    gateway: str
    oif: int = 0  # 0: the interface the gateway is on (host-gw); else this device, onlink (VXLAN)


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
        if on_local_network(addr, local_nets):
            out[str(net)] = str(addr)
    return out


def on_local_network(addr: ipaddress.IPv4Address, local_nets: list[ipaddress.IPv4Network]) -> bool:
    """Whether `addr` is a neighbour: on a directly connected subnet (so a next hop without a gateway)."""
    return any(addr in n and addr != n.network_address for n in local_nets)


def links_of(ipr: IPRoute, address: str) -> set[int]:
    """The interfaces that hold `address` (a node's own IP: the link to its node network)."""
    return {a["index"] for a in ipr.get_addr(family=socket.AF_INET) if a.get_attr("IFA_ADDRESS") == address}


def local_networks(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
            for a in ipr.get_addr(family=socket.AF_INET) if a["scope"] == 0]


def sync_routes(ipr: IPRoute, want: dict[str, NextHop], scope: str = "", links: Collection[int] = ()) -> None:
    """Make the routes of protocol RTPROT_PKUBE exactly `want` ({dst CIDR: next hop}); with `scope` (the
    cluster's pod range, which holds every node's pod CIDR), only among the routes to destinations inside it
    or through one of `links` (the cluster's own: its node network's, its VXLAN device), so that a route this
    node made to a Node whose pod CIDR lies outside the range still goes with that Node."""
    inside = ipaddress.IPv4Network(scope) if scope else None
    have: dict[str, NextHop] = {}
    for r in ipr.get_routes(family=socket.AF_INET, proto=RTPROT_PKUBE):
        if r["proto"] != RTPROT_PKUBE or not r.get_attr("RTA_DST"):
            continue  # (a default route is none of ours)
        net = ipaddress.IPv4Network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}")
        if inside is None or net.subnet_of(inside) or int(r.get_attr("RTA_OIF") or 0) in links:
            have[str(net)] = NextHop(str(r.get_attr("RTA_GATEWAY")), int(r.get_attr("RTA_OIF") or 0))
    for dst, hop in have.items():
        if not _same(want.get(dst), hop):
            try:
                ipr.route("del", dst=dst, gateway=hop.gateway, oif=hop.oif, proto=RTPROT_PKUBE)
            except NetlinkError as e:
                if e.code != errno.ESRCH:  # already gone
                    raise
    for dst, hop in want.items():
        if not _same(hop, have.get(dst)):
            if hop.oif:
                ipr.route("replace", dst=dst, gateway=hop.gateway, oif=hop.oif, flags=RTNH_F_ONLINK,
                          proto=RTPROT_PKUBE)
            else:
                ipr.route("replace", dst=dst, gateway=hop.gateway, proto=RTPROT_PKUBE)


def _same(want: NextHop | None, have: NextHop | None) -> bool:
    if want is None or have is None:
        return want is have
    return want.gateway == have.gateway and (not want.oif or want.oif == have.oif)
