"""A pod's network namespace: named netns under /run/netns (pklib/netns.py), loopback, a veth pair to the
node bridge.

The pod end is `eth0` with the pod IP and a default route via the bridge; the host end joins the bridge in
hairpin mode so a pod reaching a Service that is load-balanced back to itself gets the reply.
"""
from __future__ import annotations

import ipaddress

from pyroute2 import IPRoute

from pklib.hostnet import delete_link
from pklib.netns import (NETNS_DIR, create_netns, in_netns, inside, list_netns, netns_path,  # noqa: F401 (API)
                         remove_netns)

from kubelet.network.bridge import ensure_bridge, host_mtu


def setup_pod_network(ns_name: str, host_veth: str, bridge: str, ip: ipaddress.IPv4Interface,
                      gateway: ipaddress.IPv4Interface) -> None:
    """Create and wire the pod's netns. The caller tears down with `teardown_pod_network` on failure."""
    create_netns(ns_name)
    with IPRoute() as ipr:
        br = ensure_bridge(ipr, bridge, gateway)
        mtu = host_mtu(ipr)
        ipr.link("add", ifname=host_veth, kind="veth", mtu=mtu, peer={"ifname": "eth0", "net_ns_fd": ns_name})
        veth = ipr.link_lookup(ifname=host_veth)[0]
        ipr.link("set", index=veth, master=br, state="up")
        ipr.brport("set", index=veth, mode=1)  # IFLA_BRPORT_MODE 1 = hairpin

    def configure(ns: IPRoute) -> None:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        eth0 = ns.link_lookup(ifname="eth0")[0]
        ns.addr("add", index=eth0, address=str(ip.ip), prefixlen=ip.network.prefixlen)
        ns.link("set", index=eth0, state="up", mtu=mtu)
        ns.route("add", dst="0.0.0.0/0", gateway=str(gateway.ip))
    inside(ns_name, configure)


def teardown_pod_network(ns_name: str, host_veth: str) -> None:
    """Delete the veth pair and the netns; each step tolerates a missing object, so this is idempotent."""
    if host_veth:
        delete_link(host_veth)  # deleting one end removes the peer too
    remove_netns(ns_name)
