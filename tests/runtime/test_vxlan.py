"""The VXLAN backend's netlink work on real network namespaces: two "nodes" (netns on a veth pair, each with a
"pod" address on a bridge) reach each other's pods through their pkube.<VNI> devices with the pods' own source
addresses; the devices survive a resync unchanged, a peer that goes takes its route, neighbour and FDB entries
along, and the kubelet's routing step (podroutes._apply, run inside a node's netns) does host-gw to a neighbour
and VXLAN to a node behind a router in `auto` mode."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Iterator

import pytest
from pyroute2 import IPRoute, netns

from kubelet.network import vxlan
from kubelet.network.routes import RTPROT_PKUBE, NextHop, sync_routes
from tests.util import unique

pytestmark = pytest.mark.root

VNI = 4242
NODE = {"a": ("192.0.2.1", "10.99.1.0/24", "10.99.1.5"), "b": ("192.0.2.2", "10.99.2.0/24", "10.99.2.5")}


@pytest.fixture
def two_nodes() -> Iterator[dict[str, str]]:
    """name → netns of two namespaces joined by a veth, each with its node IP and a pod address on a bridge."""
    tag = unique("vx").replace("-", "")[-6:]
    names = {n: f"pkt{tag}{n}" for n in NODE}
    try:
        for ns in names.values():
            netns.create(ns)
        with IPRoute(netns=names["a"]) as ipr:
            ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": names["b"]})
        for n, ns in names.items():
            ip, cidr, pod = NODE[n]
            with IPRoute(netns=ns) as ipr:
                for dev in ("lo", "eth0"):
                    ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], state="up")
                ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=ip, prefixlen=24)
                ipr.link("add", ifname="pod0", kind="bridge")
                br = ipr.link_lookup(ifname="pod0")[0]
                ipr.addr("add", index=br, address=pod, prefixlen=24)
                ipr.link("set", index=br, state="up")
        yield names
    finally:
        for ns in names.values():
            if ns in netns.listnetns():
                netns.remove(ns)


def state(ns: str) -> dict[str, Any]:
    with IPRoute(netns=ns) as ipr:
        idx = ipr.link_lookup(ifname=vxlan.device_name(VNI))
        if not idx:
            return {}
        link = ipr.get_links(idx[0])[0]
        return {"index": idx[0], "mac": link.get_attr("IFLA_ADDRESS"), "mtu": link.get_attr("IFLA_MTU"),
                "routes": sorted(f"{r.get_attr('RTA_DST')}/{r['dst_len']}" for r in ipr.get_routes(family=2, oif=idx[0])
                                 if r.get_attr("RTA_DST") and r["dst_len"] < 32),
                "neigh": sorted((n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR"))
                                for n in ipr.get_neighbours(ifindex=idx[0], family=2)),
                "fdb": sorted((n.get_attr("NDA_LLADDR"), n.get_attr("NDA_DST"))
                              for n in ipr.get_neighbours(ifindex=idx[0], family=7) if n.get_attr("NDA_DST"))}


def setup_node(ns: str, me: str, macs: dict[str, str]) -> str:
    """What the kubelet does on node `me`: its device, then routes and entries to the other nodes."""
    ip, cidr, _ = NODE[me]
    with IPRoute(netns=ns) as ipr:
        index, mac = vxlan.ensure_device(ipr, VNI, ip, cidr)
        peers = vxlan.desired_peers([(n, c, i, macs.get(n, "")) for n, (i, c, _) in NODE.items()], me)
        sync_routes(ipr, {c: NextHop(p.vtep, index) for c, p in peers.items()})
        vxlan.sync_peers(ipr, index, peers)
    return mac


def ping(ns: str, source: str, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "2", "-I", source, target],
                          capture_output=True, text=True, timeout=15)


def test_pods_reach_each_other_through_the_tunnel_and_a_gone_peer_takes_its_entries(two_nodes: dict[str, str]
                                                                                     ) -> None:
    macs = {n: setup_node(ns, n, {}) for n, ns in two_nodes.items()}
    for n, ns in two_nodes.items():
        setup_node(ns, n, macs)
    a, b = state(two_nodes["a"]), state(two_nodes["b"])
    assert a["mtu"] == 1500 - 50 and a["mac"] == macs["a"]
    assert a["routes"] == ["10.99.2.0/24"] and a["neigh"] == [("10.99.2.0", macs["b"])]
    assert a["fdb"] == [(macs["b"], "192.0.2.2")] and b["fdb"] == [(macs["a"], "192.0.2.1")]
    p = ping(two_nodes["a"], NODE["a"][2], NODE["b"][2])
    assert p.returncode == 0, p.stdout + p.stderr
    # a resync changes nothing: same device, same MAC (the other nodes keep reaching it)
    setup_node(two_nodes["a"], "a", macs)
    assert state(two_nodes["a"]) == a
    # b is gone: a keeps nothing of it
    setup_node(two_nodes["a"], "a", {"a": macs["a"]})
    assert {k: state(two_nodes["a"])[k] for k in ("routes", "neigh", "fdb")} == {"routes": [], "neigh": [], "fdb": []}
    assert ping(two_nodes["a"], NODE["a"][2], NODE["b"][2]).returncode != 0
    # a new node address makes the device again; delete_device removes it
    with IPRoute(netns=two_nodes["a"]) as ipr:
        ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address="192.0.2.11", prefixlen=24)
        index, _ = vxlan.ensure_device(ipr, VNI, "192.0.2.11", NODE["a"][1])
        data = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        assert data.get_attr("IFLA_VXLAN_LOCAL") == "192.0.2.11"
    subprocess.run(["ip", "netns", "exec", two_nodes["a"], sys.executable, "-c",
                    f"from kubelet.network.vxlan import delete_device; delete_device({VNI})"], check=True, timeout=30)
    assert state(two_nodes["a"]) == {}


APPLY = """
import json, sys
from kubelet.podroutes import Backend, _apply
nodes = [tuple(n) for n in json.loads(sys.argv[1])]
print(json.dumps(_apply(nodes, "a", Backend("auto", {vni}), "192.0.2.1", "10.99.1.0/24")))
"""


def test_auto_routes_a_neighbour_directly_and_tunnels_to_a_node_behind_a_router(two_nodes: dict[str, str]) -> None:
    nodes = [("a", "10.99.1.0/24", "192.0.2.1", ""), ("b", "10.99.2.0/24", "192.0.2.2", "02:00:00:00:00:02"),
             ("far", "10.99.3.0/24", "198.51.100.3", "02:00:00:00:00:03")]
    p = subprocess.run(["ip", "netns", "exec", two_nodes["a"], sys.executable, "-c", APPLY.format(vni=VNI),
                        json.dumps(nodes)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    shown, mac = json.loads(p.stdout)
    assert shown == {"10.99.2.0/24": "via 192.0.2.2", "10.99.3.0/24": f"via pkube.{VNI} to 198.51.100.3"}
    a = state(two_nodes["a"])
    assert a["mac"] == mac and a["routes"] == ["10.99.3.0/24"] and a["fdb"] == [("02:00:00:00:00:03", "198.51.100.3")]
    with IPRoute(netns=two_nodes["a"]) as ipr:
        gw = [r.get_attr("RTA_GATEWAY") for r in ipr.get_routes(family=2, dst="10.99.2.0", dst_len=24)]
    assert gw == ["192.0.2.2"]


def test_route_sync_leaves_another_clusters_routes_alone(two_nodes: dict[str, str]) -> None:
    """Two multi-node clusters on one machine share the host's routing table and the routes' protocol number:
    each kubelet's sync, scoped to its cluster's pod range, keeps the other cluster's routes (unscoped, every
    Node update of one cluster removed the other's, and its Services sent half their requests nowhere)."""
    def pod_routes(ipr: IPRoute) -> dict[str, str]:
        return {f"{r.get_attr('RTA_DST')}/{r['dst_len']}": r.get_attr("RTA_GATEWAY")
                for r in ipr.get_routes(family=2, proto=RTPROT_PKUBE) if r["proto"] == RTPROT_PKUBE}
    with IPRoute(netns=two_nodes["a"]) as ipr:
        ipr.route("add", dst="10.98.2.0/24", gateway="192.0.2.2", proto=RTPROT_PKUBE)  # the other cluster's
        sync_routes(ipr, {"10.99.2.0/24": NextHop("192.0.2.2")}, "10.99.0.0/16")
        assert pod_routes(ipr) == {"10.98.2.0/24": "192.0.2.2", "10.99.2.0/24": "192.0.2.2"}
        sync_routes(ipr, {}, "10.99.0.0/16")  # node b left this cluster
        assert pod_routes(ipr) == {"10.98.2.0/24": "192.0.2.2"}
        # a route through one of this cluster's own links (its node network, its VXLAN device) is its own even
        # outside the pod range (a Node with a pod CIDR from elsewhere): it goes when that Node goes
        own = {r.get_attr("RTA_OIF") for r in ipr.get_routes(family=2, dst="10.98.2.0", dst_len=24)}
        sync_routes(ipr, {}, "10.99.0.0/16", own)
        assert pod_routes(ipr) == {}
