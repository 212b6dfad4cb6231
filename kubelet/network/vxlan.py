"""VXLAN pod routing, as flannel's vxlan backend does it (pyroute2 netlink).

Each node has one VXLAN device `pkube.<VNI>` (UDP 8472, the Linux default flannel uses too) on its
InternalIP, with its pod CIDR's network address as the device's /32 address (the node's VTEP address), and
publishes the device's MAC as the Node annotation `pkube.io/vxlan-mac`. For every other node it keeps:
- a route to that node's pod CIDR via the node's VTEP address, onlink on the device;
- a permanent neighbour entry: that VTEP address is at that node's VTEP MAC (no ARP over the tunnel);
- a permanent FDB entry: frames for that MAC are sent, encapsulated, to that node's InternalIP.
Learning is off: the device knows nothing but what the Nodes say. The inner packets keep the pods' addresses
(no NAT between nodes); the device MTU is the uplink's minus the 50 bytes of VXLAN encapsulation.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Callable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import ndmsg

from pklib.hostnet import delete_link

from kubelet.network.bridge import DEFAULT_MTU

VXLAN_PORT = 8472
DEFAULT_VNI = 1
OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
MAC_ANNOTATION = "pkube.io/vxlan-mac"
AF_BRIDGE = 7
NUD_PERMANENT = ndmsg.states["permanent"]


def device_name(vni: int) -> str:
    return f"pkube.{vni}"


def vtep_address(pod_cidr: str) -> str:
    """A node's VTEP address: its pod CIDR's network address (never given to a pod)."""
    return str(ipaddress.IPv4Network(pod_cidr).network_address)


@dataclass(frozen=True)
class Peer:
    """What this node needs to reach another node's pods through the tunnel."""
    vtep: str     # the other node's VTEP address (its pod CIDR's network address)
    mac: str      # its VXLAN device's MAC (the Node annotation)
    node_ip: str  # its InternalIP: where the encapsulated frames go


def desired_peers(nodes: list[tuple[str, str, str, str]], me: str) -> dict[str, Peer]:
    """(name, pod CIDR, InternalIP, VTEP MAC) of every node → {pod CIDR: Peer} for the other nodes that have all
    three (a node without a MAC yet has not set its device up: it is reached once it has)."""
    out: dict[str, Peer] = {}
    for name, cidr, ip, mac in nodes:
        if name == me or not cidr or not ip or not mac:
            continue
        try:
            net, addr = ipaddress.IPv4Network(cidr), ipaddress.IPv4Address(ip)
        except ValueError:
            continue
        out[str(net)] = Peer(str(net.network_address), mac.lower(), str(addr))
    return out


def _uplink_mtu(ipr: IPRoute, local_ip: str) -> int:
    for a in ipr.get_addr(family=socket.AF_INET):
        if a.get_attr("IFA_ADDRESS") == local_ip:
            links = ipr.get_links(a["index"])
            if links:
                return int(links[0].get_attr("IFLA_MTU"))
    return DEFAULT_MTU


def ensure_device(ipr: IPRoute, vni: int, local_ip: str, pod_cidr: str, port: int = VXLAN_PORT) -> tuple[int, str]:
    """Create (or keep) this node's VXLAN device with its VTEP address, up; returns (index, MAC).

    A device of that name with another VNI, local address or port (a changed node IP) is made again."""
    name = device_name(vni)
    idx = ipr.link_lookup(ifname=name)
    if idx:
        info = ipr.get_links(idx[0])[0].get_attr("IFLA_LINKINFO")
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        if data is None or (data.get_attr("IFLA_VXLAN_ID"), data.get_attr("IFLA_VXLAN_LOCAL"),
                            data.get_attr("IFLA_VXLAN_PORT")) != (vni, local_ip, port):
            ipr.link("del", index=idx[0])
            idx = []
    if not idx:
        try:
            ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_local=local_ip, vxlan_port=port,
                     vxlan_learning=0, mtu=_uplink_mtu(ipr, local_ip) - OVERHEAD)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        idx = ipr.link_lookup(ifname=name)
    index = idx[0]
    vtep = vtep_address(pod_cidr)
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=socket.AF_INET)}
    for addr, prefixlen in have - {(vtep, 32)}:  # a pod CIDR given again differently
        ipr.addr("del", index=index, address=addr, prefixlen=prefixlen)
    if (vtep, 32) not in have:
        ipr.addr("add", index=index, address=vtep, prefixlen=32)
    ipr.link("set", index=index, state="up")
    return index, str(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))


def sync_peers(ipr: IPRoute, index: int, peers: dict[str, Peer]) -> None:
    """Make the device's neighbour (ARP) and FDB entries exactly those of `peers`; the routes are
    kubelet.network.routes.sync_routes' (with NextHop(vtep, index))."""
    want_arp = {p.vtep: p.mac for p in peers.values()}
    want_fdb = {p.mac: p.node_ip for p in peers.values()}
    for n in ipr.get_neighbours(ifindex=index, family=socket.AF_INET):
        dst, mac = n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")
        if want_arp.get(dst) != mac:
            _ignore_gone(lambda: ipr.neigh("del", ifindex=index, dst=dst, family=socket.AF_INET))
    for n in ipr.get_neighbours(ifindex=index, family=AF_BRIDGE):
        mac, dst = n.get_attr("NDA_LLADDR"), n.get_attr("NDA_DST")
        if dst is not None and want_fdb.get(mac) != dst:
            _ignore_gone(lambda: ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst))
    for vtep, mac in want_arp.items():
        ipr.neigh("replace", ifindex=index, dst=vtep, lladdr=mac, state=NUD_PERMANENT, family=socket.AF_INET)
    for mac, node_ip in want_fdb.items():
        try:
            ipr.fdb("append", ifindex=index, lladdr=mac, dst=node_ip)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise


def _ignore_gone(op: Callable[[], Any]) -> None:
    try:
        op()
    except NetlinkError as e:
        if e.code not in (errno.ENOENT, errno.ESRCH, errno.ENODEV):
            raise


def delete_device(vni: int) -> None:
    """Remove the node's VXLAN device (its routes and neighbour/FDB entries go with it); idempotent."""
    delete_link(device_name(vni))
