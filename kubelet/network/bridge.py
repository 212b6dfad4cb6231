"""The node bridge that every pod's host-side veth joins (pyroute2 netlink, no `ip` shell-outs)."""
from __future__ import annotations

import errno
import ipaddress

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pklib.hostnet import delete_link

DEFAULT_MTU = 1500


def host_mtu(ipr: IPRoute) -> int:
    """MTU of the interface carrying the host's default route (pods must not send bigger frames), else 1500."""
    for route in ipr.get_default_routes(family=2):
        oif = route.get_attr("RTA_OIF")
        if oif:
            links = ipr.get_links(oif)
            if links:
                return int(links[0].get_attr("IFLA_MTU"))
    return DEFAULT_MTU


def gateway_mac(gateway: ipaddress.IPv4Interface) -> str:
    """A fixed, locally administered MAC for the bridge, made of its gateway IP (0a:58:a.b.c.d, as OVN-Kubernetes
    derives MACs from IPs): unique per node, the same every time the node's bridge is made again."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in gateway.ip.packed)


def ensure_bridge(ipr: IPRoute, name: str, gateway: ipaddress.IPv4Interface) -> int:
    """Create the bridge with the gateway address if missing and bring it up; returns its index.

    The bridge gets a MAC address of its own at creation. Without one, Linux gives a bridge the lowest MAC of its
    ports and changes it as pods' veths come and go: once the pod whose veth held it is deleted, every other pod
    keeps sending to its gateway's old MAC, which nothing owns any more, until its ARP entry times out -- all its
    traffic through the node (Services, cluster DNS: lookups of 5-30 s) is lost meanwhile.

    Idempotent and safe against a concurrent creator (EEXIST is success)."""
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        try:
            ipr.link("add", ifname=name, kind="bridge", address=gateway_mac(gateway))
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        idx = ipr.link_lookup(ifname=name)
    index = idx[0]
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
    if (str(gateway.ip), gateway.network.prefixlen) not in have:
        try:
            ipr.addr("add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
    ipr.link("set", index=index, state="up")
    return index


def keep_address(ipr: IPRoute, index: int, gateway: ipaddress.IPv4Interface) -> None:
    """Pin the MAC of a bridge an older kubelet made without one of its own, as it is now: it then stops following
    its ports. (Giving it gateway_mac() instead would leave every running pod with a stale gateway MAC.)"""
    mac = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
    if mac != gateway_mac(gateway):
        ipr.link("set", index=index, address=mac)  # the same address, but now set: addr_assign_type NET_ADDR_SET


def delete_bridge(name: str) -> None:
    """Remove the bridge (node teardown; idempotent)."""
    delete_link(name)
