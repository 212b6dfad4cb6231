"""Pure logic of pod routing between nodes by backend (host-gw, vxlan, auto): what a node wants to route where,
its VXLAN peers from the Nodes, which backend a local cluster's `auto` means, the per-home VNI, and the
flags pkctl gives the kubelets."""
from __future__ import annotations

import hashlib
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from kubelet.main import build_parser
from kubelet.network.routes import NextHop, _same
from kubelet.network.vxlan import MAC_ANNOTATION, Peer, desired_peers, device_name, vtep_address
from kubelet.podroutes import node_vxlan_info, plan
from pkctl.cluster.components import components
from pkctl.cluster.home import ClusterConfig, add_workers, private_vni

NETS = [ipaddress.IPv4Network("10.130.5.0/24")]
NODES = [("me", "10.244.0.0/24", "10.130.5.2", "02:00:00:00:00:02"),
         ("near", "10.244.1.0/24", "10.130.5.3", "02:00:00:00:00:03"),     # on my subnet
         ("far", "10.244.2.0/24", "198.51.100.7", "02:00:00:00:00:07"),    # behind a router
         ("nomac", "10.244.3.0/24", "198.51.100.8", ""),                   # its device is not up yet
         ("new", "", "10.130.5.9", "02:00:00:00:00:09")]                   # no pod CIDR yet


def test_host_gw_routes_the_neighbours_only() -> None:
    assert plan(NODES, "me", NETS, "host-gw") == ({"10.244.1.0/24": "10.130.5.3"}, {})


def test_vxlan_tunnels_to_every_other_node_with_a_mac() -> None:
    direct, peers = plan(NODES, "me", NETS, "vxlan")
    assert direct == {}
    assert peers == {"10.244.1.0/24": Peer("10.244.1.0", "02:00:00:00:00:03", "10.130.5.3"),
                     "10.244.2.0/24": Peer("10.244.2.0", "02:00:00:00:00:07", "198.51.100.7")}


def test_auto_routes_the_neighbours_directly_and_tunnels_to_the_others() -> None:
    direct, peers = plan(NODES, "me", NETS, "auto")
    assert direct == {"10.244.1.0/24": "10.130.5.3"} and list(peers) == ["10.244.2.0/24"]


def test_peers_skip_bad_entries_and_normalise_the_mac() -> None:
    nodes = [("a", "nonsense", "10.0.0.1", "02:AA:00:00:00:01"), ("b", "10.1.0.0/25", "x", "02:00:00:00:00:01"),
             ("c", "10.1.0.128/25", "10.0.0.3", "02:AA:00:00:00:03")]
    assert desired_peers(nodes, "me") == {"10.1.0.128/25": Peer("10.1.0.128", "02:aa:00:00:00:03", "10.0.0.3")}
    assert vtep_address("10.244.7.0/24") == "10.244.7.0"


def test_vxlan_info_of_a_node() -> None:
    node = {"metadata": {"name": "a", "annotations": {MAC_ANNOTATION: "02:00:00:00:00:01"}},
            "spec": {"podCIDR": "10.1.0.0/24"}, "status": {"addresses": [{"type": "InternalIP", "address": "1.2.3.4"}]}}
    assert node_vxlan_info(node) == ("a", "10.1.0.0/24", "1.2.3.4", "02:00:00:00:00:01")
    assert node_vxlan_info({"metadata": {"name": "b"}}) == ("b", "", "", "")


def test_a_route_matches_by_gateway_and_by_device_when_one_is_wanted() -> None:
    assert _same(NextHop("10.0.0.2"), NextHop("10.0.0.2", 7))           # host-gw: the kernel picks the device
    assert _same(NextHop("10.1.0.0", 9), NextHop("10.1.0.0", 9))
    assert not _same(NextHop("10.1.0.0", 9), NextHop("10.1.0.0", 7))    # a VXLAN route on another device
    assert not _same(NextHop("10.0.0.2"), NextHop("10.0.0.3")) and not _same(None, NextHop("10.0.0.2"))


def test_auto_is_host_gw_on_a_local_cluster_and_vxlan_is_kept_when_asked() -> None:
    cfg = ClusterConfig(1, 2, 3, cluster_cidr="10.120.5.0/24")
    add_workers(cfg, Path("/tmp/h"), 3)
    assert cfg.network_backend == "auto" and cfg.pod_routing == "host-gw"
    cfg.workers[1].ip = "198.51.100.9"  # a node off the cluster network
    assert cfg.pod_routing == "vxlan"
    cfg.network_backend = "vxlan"
    assert cfg.pod_routing == "vxlan"


def test_each_home_has_its_own_vni_and_device_name() -> None:
    vnis = {private_vni(hashlib.sha256(f"/tmp/home{i}".encode()).digest()) for i in range(200)}
    assert len(vnis) == 200 and all(4096 <= v < 2**24 for v in vnis)
    assert all(len(device_name(v)) <= 15 for v in vnis) and device_name(1) == "pkube.1"


def test_every_kubelet_gets_the_backend_and_the_vni() -> None:
    cfg = ClusterConfig(1, 2, 3, cluster_cidr="10.120.5.0/24", network_backend="vxlan", vxlan_vni=4242)
    add_workers(cfg, Path("/tmp/h"), 2)
    from pkctl.cluster.home import Home
    home = Home(Path("/tmp/h"))
    kubelets = [c for c in components(cfg) if c.name.startswith("kubelet")]
    assert len(kubelets) == 2
    for c in kubelets:
        argv = c.argv(home, cfg)
        assert argv[argv.index("--network-backend") + 1] == "vxlan" and "--pod-routes" in argv
        assert argv[argv.index("--vxlan-vni") + 1] == "4242"
    single = ClusterConfig(1, 2, 3, vxlan_vni=1)
    argv = next(c for c in components(single) if c.name == "kubelet").argv(home, single)
    assert "--network-backend" not in argv and "--pod-routes" not in argv


@pytest.mark.parametrize("flags, message", [(["--network-backend", "ipip"], "invalid choice: 'ipip'"),
                                            (["--vxlan-vni", "0"], "0 is not a VXLAN network identifier"),
                                            (["--vxlan-port", "70000"], "70000 is not a port number")])
def test_bad_backend_flags_are_one_line_errors(flags: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(flags)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_pkctl_rejects_an_unknown_backend_in_one_line() -> None:
    p = subprocess.run([sys.executable, "-m", "pkctl.main", "cluster", "up", "--home", "/nonexistent-pkube-home",
                        "--nodes", "2", "--network-backend", "ipip"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "invalid choice: 'ipip'" in p.stderr and "Traceback" not in p.stderr
