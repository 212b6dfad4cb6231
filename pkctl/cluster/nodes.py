"""The network of a multi-node local cluster (`pkctl cluster up --nodes N`), as kind builds it with a docker
network: a cluster bridge on the host holding the subnet's first address, and per extra node a network
namespace joined to it by a veth, with the node's own address and a default route via the host.

The supervisor builds it before it starts the nodes' kubelets (idempotent, so a restart after a reboot
rebuilds it), and for nodes added while it runs through `python -m pkctl.cluster.nodes --home DIR`;
`cluster down` takes it away. All netlink, through pyroute2.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from pklib.hostnet import delete_link

from pkctl.cluster.home import ClusterConfig, Home, HomeError, Worker, resolve

NETNS_DIR = "/run/netns"


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def ensure_network(cfg: ClusterConfig) -> None:
    if not cfg.workers:
        return
    subnet = ipaddress.ip_network(cfg.node_subnet)
    with IPRoute() as ipr:
        if not ipr.link_lookup(ifname=cfg.node_bridge):
            ipr.link("add", ifname=cfg.node_bridge, kind="bridge")
        br = ipr.link_lookup(ifname=cfg.node_bridge)[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=br, family=2)}
        if cfg.node_gateway not in have:
            ipr.addr("add", index=br, address=cfg.node_gateway, prefixlen=subnet.prefixlen)
        ipr.link("set", index=br, state="up")
        for w in cfg.workers:
            _ensure_node(ipr, br, w, subnet.prefixlen, cfg.node_gateway)


def _ensure_node(ipr: IPRoute, bridge: int, w: Worker, prefixlen: int, gateway: str) -> None:
    if not os.path.exists(netns_path(w.netns)):
        netns.create(w.netns)
    if not ipr.link_lookup(ifname=w.veth):
        ipr.link("add", ifname=w.veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": w.netns})
    veth = ipr.link_lookup(ifname=w.veth)[0]
    ipr.link("set", index=veth, master=bridge, state="up")
    with IPRoute(netns=w.netns) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        eth0 = ns.link_lookup(ifname="eth0")[0]
        if w.ip not in {a.get_attr("IFA_ADDRESS") for a in ns.get_addr(index=eth0, family=2)}:
            ns.addr("add", index=eth0, address=w.ip, prefixlen=prefixlen)
        ns.link("set", index=eth0, state="up")
        ns.route("replace", dst="0.0.0.0/0", gateway=gateway)


def delete_network(cfg: ClusterConfig) -> list[str]:
    """Each node's netns (its veth, pod bridge, NAT and proxy tables go with it), then the cluster bridge
    (and the host's routes through it); idempotent. Returns what could not be removed."""
    problems = [p for w in cfg.workers for p in delete_node(w)]
    if cfg.node_bridge:
        try:
            delete_link(cfg.node_bridge)
        except NetlinkError as e:
            problems.append(f"link {cfg.node_bridge}: {e}")
    return problems


def delete_node(w: Worker) -> list[str]:
    """One node's netns and its veth on the cluster bridge (`cluster node remove`); idempotent."""
    problems = []
    try:
        if os.path.exists(netns_path(w.netns)):
            netns.remove(w.netns)
    except OSError as e:
        problems.append(f"network namespace {w.netns}: {e}")
    try:
        delete_link(w.veth)
    except NetlinkError as e:
        problems.append(f"link {w.veth}: {e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Build the cluster network of the home's config (the supervisor runs this when nodes were added)."""
    parser = argparse.ArgumentParser(prog="python -m pkctl.cluster.nodes")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    try:
        ensure_network(Home(resolve(args.home)).load_config())
    except (HomeError, OSError) as e:  # NetlinkError is an OSError
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
