"""Pure logic of a multi-node local cluster: which routes a node wants (host-gw), the pod NAT rule with a
cluster CIDR, the workers' names and addresses in a new home and of nodes added later, how the pod range is cut
between nodes (and widened for added ones), and the components and flags of the extra nodes."""
from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from kubelet.network.nat import ruleset
from kubelet.network.routes import desired_routes
from kubelet.podroutes import node_route_info
from pkctl.cluster.components import components
from pkctl.cluster.home import (ClusterConfig, add_workers, append_workers, component_identities,
                                make_room_for_nodes, node_network)

NETS = [ipaddress.IPv4Network("10.130.5.0/24"), ipaddress.IPv4Network("192.0.2.0/24")]


def test_routes_to_the_other_neighbouring_nodes_only() -> None:
    nodes = [("me", "10.244.0.0/24", "10.130.5.2"), ("w3", "10.244.2.0/24", "10.130.5.3"),
             ("host", "10.244.1.0/24", "198.51.100.7"),   # not a neighbour: the default route reaches it
             ("new", "", "10.130.5.4"), ("noip", "10.244.4.0/24", ""), ("bad", "nonsense", "10.130.5.9")]
    assert desired_routes(nodes, "me", NETS) == {"10.244.2.0/24": "10.130.5.3"}


def test_route_info_of_a_node() -> None:
    node = {"metadata": {"name": "a"}, "spec": {"podCIDR": "10.1.0.0/24"},
            "status": {"addresses": [{"type": "Hostname", "address": "a"}, {"type": "InternalIP", "address": "1.2.3.4"}]}}
    assert node_route_info(node) == ("a", "10.1.0.0/24", "1.2.3.4")
    assert node_route_info({"metadata": {"name": "b"}}) == ("b", "", "")


def test_pod_traffic_inside_the_cluster_cidr_is_not_masqueraded() -> None:
    assert "ip daddr != 10.244.0.0/24 masquerade" in ruleset("t", "10.244.0.0/24")
    assert "ip daddr != 10.244.0.0/16 masquerade" in ruleset("t", "10.244.0.0/24", "10.244.0.0/16")


def test_workers_are_named_like_kind_and_addressed_on_their_own_subnet() -> None:
    cfg = ClusterConfig(1, 2, 3, cluster_cidr="10.120.5.0/24")
    add_workers(cfg, Path("/tmp/My_Home"), 3)
    assert [w.name for w in cfg.workers] == ["my-home-worker", "my-home-worker3"]
    subnet = ipaddress.ip_network(cfg.node_subnet)
    assert subnet.prefixlen == 24 and subnet.subnet_of(ipaddress.ip_network("10.128.0.0/12"))
    assert cfg.node_gateway == str(subnet[1]) and [w.ip for w in cfg.workers] == [str(subnet[2]), str(subnet[3])]
    assert len({w.netns for w in cfg.workers}) == 2 and all(len(w.veth) <= 15 for w in cfg.workers)
    assert ClusterConfig(**dataclasses.asdict(cfg)).workers == cfg.workers  # survives config.json


def test_the_pod_range_is_cut_for_every_node() -> None:
    assert ClusterConfig(1, 2, 3).node_cidr_mask == 24  # the default 10.244.0.0/16, one node
    cfg = ClusterConfig(1, 2, 3, cluster_cidr="10.120.5.0/24")
    assert cfg.node_cidr_mask == 24
    for nodes, mask in ((2, 25), (3, 26), (4, 26), (5, 27)):
        add_workers(cfg, Path("/tmp/h"), nodes)
        assert cfg.node_cidr_mask == mask and 2 ** (mask - 24) >= nodes


def test_each_worker_has_a_kubelet_and_a_proxy_in_its_netns() -> None:
    one = ClusterConfig(1, 2, 3)
    assert not any(c.netns for c in components(one))
    cfg = ClusterConfig(1, 2, 3, cluster_cidr="10.120.5.0/24")
    add_workers(cfg, Path("/tmp/h"), 2)
    extra = [c for c in components(cfg) if c.netns]
    # one process per node in its netns, the kubelet's, hosting the proxy (as a k3s agent does)
    assert [n for c in extra for n in (c.name, *(m.name for m in c.members))] == ["kubelet-h-worker", "proxy-h-worker"]
    assert all(c.after == ("apiserver",) for c in extra)


def test_added_nodes_take_the_next_index_and_the_pod_range_widens_around_the_nodes_ranges() -> None:
    # a one-node home: its node holds the whole /24, so the range doubles and every node keeps a /24
    cfg = ClusterConfig(1, 2, 3, cluster_cidr="10.120.5.0/24")
    make_room_for_nodes(cfg, 2)
    added = append_workers(cfg, Path("/tmp/h"), 1)
    assert [w.name for w in added] == ["h-worker"] and added[0].index == 2
    assert cfg.cluster_cidr == "10.120.4.0/23" and cfg.node_cidr_mask == 24 and cfg.node_gateway
    # a three-node home: /26s, room for 4; a fifth node widens the range again, the /26s stay
    cfg = ClusterConfig(1, 2, 3, cluster_cidr="10.120.5.0/24")
    add_workers(cfg, Path("/tmp/h"), 3)
    subnet = cfg.node_subnet
    make_room_for_nodes(cfg, 4)
    assert (cfg.cluster_cidr, cfg.node_cidr_mask) == ("10.120.5.0/24", 26)
    # a removed node's index is not reused while a later one lives
    cfg.workers = [w for w in cfg.workers if w.index != 2]
    assert [w.index for w in append_workers(cfg, Path("/tmp/h"), 2)] == [4, 5]
    make_room_for_nodes(cfg, 5)
    assert (cfg.cluster_cidr, cfg.node_cidr_mask, cfg.node_subnet) == ("10.120.4.0/23", 26, subnet)
    # the default home's /16 has room for every node as it is
    big = ClusterConfig(1, 2, 3)
    make_room_for_nodes(big, 16)
    assert (big.cluster_cidr, big.node_cidr_mask) == ("10.244.0.0/16", 24)
    assert ClusterConfig(**dataclasses.asdict(cfg)).node_cidr_mask == 26  # survives config.json


def test_extra_nodes_of_a_tls_cluster_authenticate_with_certificates_on_the_network_planned_at_creation() -> None:
    """`cluster node add` needs no apiserver restart: no new token (the token file is read at start), and the
    apiserver's certificate already names the cluster network's gateway (node_network) before any node is added."""
    cfg = ClusterConfig(1, 2, 3, cluster_cidr="10.120.5.0/24", node_name="host")
    planned = node_network(Path("/tmp/h"))
    add_workers(cfg, Path("/tmp/h"), 2)
    assert (cfg.node_subnet, cfg.node_bridge) == planned
    assert "system:node:h-worker" in component_identities(cfg)  # plain HTTP: tokens only
    cfg.tls = True
    users = component_identities(cfg)
    assert "system:node:host" in users and not any(u.startswith("system:node:h-worker") for u in users)
    assert cfg.workers[0].client_cert == "kubelet-h-worker-client"
