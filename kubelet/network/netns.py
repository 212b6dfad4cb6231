"""A pod's network namespace: named netns under /run/netns (pklib/netns.py), loopback, a veth pair to the
node bridge.

The pod end is `eth0` with the pod IP and a default route via the bridge; the host end joins the bridge in
hairpin mode so a pod reaching a Service that is load-balanced back to itself gets the reply.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pklib.hostnet import delete_link
from pklib.netns import (NETNS_DIR, create_netns, in_netns, inside, list_netns, netns_path,  # noqa: F401 (API)
                         remove_netns)

from kubelet.network.bridge import ensure_bridge, host_mtu

log = logging.getLogger("kubelet")
LOOPBACK_INDEX = 1  # a new network namespace's first interface, always


@dataclass(frozen=True)
class Uplink:
    """What every pod's veth is made with: the node bridge's interface index and the MTU pods get."""
    bridge_index: int
    mtu: int


def node_uplink(ipr: IPRoute, bridge: str, gateway: ipaddress.IPv4Interface) -> Uplink:
    """Make sure of the bridge (with its gateway address) and read the host's MTU."""
    return Uplink(ensure_bridge(ipr, bridge, gateway), host_mtu(ipr))


def setup_pod_network(ns_name: str, host_veth: str, bridge: str, ip: ipaddress.IPv4Interface,
                      gateway: ipaddress.IPv4Interface, uplink: Uplink | None = None) -> Uplink:
    """Create and wire the pod's netns. The caller tears down with `teardown_pod_network` on failure."""
    create_netns(ns_name)
    return wire_pod_network(ns_name, host_veth, bridge, ip, gateway, uplink)


def wire_pod_network(ns_name: str, host_veth: str, bridge: str, ip: ipaddress.IPv4Interface,
                     gateway: ipaddress.IPv4Interface, uplink: Uplink | None = None) -> Uplink:
    """Wire the pod's (new, empty) netns: loopback up, the veth pair to the bridge, eth0's address and the default
    route. The caller tears down with `teardown_pod_network` on failure.

    `uplink`: the bridge and MTU as the caller last saw them (NodeNetwork keeps them), saving their lookups on
    every pod; when that bridge is gone the veth cannot join it and they are looked up (the bridge made) again.
    Returns the uplink used. The veth pair is made already joined to the bridge, up, with the MTU on both ends
    (one netlink request; the kernel removes the pair again if joining fails)."""
    with IPRoute() as ipr:
        link = uplink or node_uplink(ipr, bridge, gateway)

        def add_veth(link: Uplink) -> None:
            ipr.link("add", ifname=host_veth, kind="veth", mtu=link.mtu, master=link.bridge_index, state="up",
                     peer={"ifname": "eth0", "net_ns_fd": ns_name, "mtu": link.mtu})
        try:
            add_veth(link)
        except NetlinkError as e:
            if uplink is None or e.code not in (errno.EINVAL, errno.ENODEV):
                raise
            log.warning("bridge %s (index %d) is gone: making it again", bridge, link.bridge_index)
            link = node_uplink(ipr, bridge, gateway)  # the bridge we knew is gone (the kernel says EINVAL)
            add_veth(link)
        veth = ipr.link("get", ifname=host_veth)[0]["index"]
        ipr.brport("set", index=veth, mode=1)  # IFLA_BRPORT_MODE 1 = hairpin

    def configure(ns: IPRoute) -> None:
        ns.link("set", index=LOOPBACK_INDEX, state="up")
        eth0 = ns.link("get", ifname="eth0")[0]["index"]
        ns.addr("add", index=eth0, address=str(ip.ip), prefixlen=ip.network.prefixlen)
        ns.link("set", index=eth0, state="up")
        ns.route("add", dst="0.0.0.0/0", gateway=str(gateway.ip))
    inside(ns_name, configure)
    return link


def teardown_pod_network(ns_name: str, host_veth: str) -> None:
    """Delete the veth pair and the netns; each step tolerates a missing object, so this is idempotent."""
    if host_veth:
        delete_link(host_veth)  # deleting one end removes the peer too
    remove_netns(ns_name)
