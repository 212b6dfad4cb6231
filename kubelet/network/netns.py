"""A pod's network namespace: named netns under /run/netns, loopback, a veth pair to the node bridge.

The pod end is `eth0` with the pod IP and a default route via the bridge; the host end joins the bridge in
hairpin mode so a pod reaching a Service that is load-balanced back to itself gets the reply.
"""
from __future__ import annotations

import errno
import ipaddress
import os

from pyroute2 import IPRoute, NetNS, netns
from pyroute2.netlink.exceptions import NetlinkError

from kubelet.network.bridge import ensure_bridge, host_mtu

NETNS_DIR = "/run/netns"


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def setup_pod_network(ns_name: str, host_veth: str, bridge: str, ip: ipaddress.IPv4Interface,
                      gateway: ipaddress.IPv4Interface) -> None:
    """Create and wire the pod's netns. The caller tears down with `teardown_pod_network` on failure."""
    netns.create(ns_name)
    with IPRoute() as ipr:
        br = ensure_bridge(ipr, bridge, gateway)
        mtu = host_mtu(ipr)
        ipr.link("add", ifname=host_veth, kind="veth", mtu=mtu, peer={"ifname": "eth0", "net_ns_fd": ns_name})
        veth = ipr.link_lookup(ifname=host_veth)[0]
        ipr.link("set", index=veth, master=br, state="up")
        ipr.brport("set", index=veth, mode=1)  # IFLA_BRPORT_MODE 1 = hairpin
    with NetNS(ns_name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        eth0 = ns.link_lookup(ifname="eth0")[0]
        ns.addr("add", index=eth0, address=str(ip.ip), prefixlen=ip.network.prefixlen)
        ns.link("set", index=eth0, state="up", mtu=mtu)
        ns.route("add", dst="0.0.0.0/0", gateway=str(gateway.ip))


def teardown_pod_network(ns_name: str, host_veth: str) -> None:
    """Delete the veth pair and the netns; each step tolerates a missing object, so this is idempotent."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=host_veth) if host_veth else []
        if idx:
            try:
                ipr.link("del", index=idx[0])  # deleting one end removes the peer too
            except NetlinkError as e:
                if e.code != errno.ENODEV:
                    raise
    if os.path.exists(netns_path(ns_name)):
        netns.remove(ns_name)


def list_netns(prefix: str) -> list[str]:
    return sorted(n for n in netns.listnetns() if n.startswith(prefix))
