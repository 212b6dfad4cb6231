"""Defect 4 of issue 13 (CVE-2020-8558 class): with `route_localnet=1`, which the proxy sets for node ports on
127.0.0.1, a pod or a LAN host sends a packet to 127.0.0.1:PORT through the node and reaches a host service
that listens on loopback only. The proxy's table must drop it, and still let node ports on 127.0.0.1 work.

Everything happens in two private network namespaces, so the machine's own sysctls are never touched:
"node" (route_localnet=1, the proxy's real table applied by the real Proxier, a server on 127.0.0.1) and
"peer" (the attacker: a pod or LAN host on a veth into the node, routing 127.0.0.0/8 via the node).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.controlplane import ROOT, _stop
from tests.util import free_port, unique, wait_for_sync

pytestmark = pytest.mark.root

ROUTE_LOCALNET = "/proc/sys/net/ipv4/conf/all/route_localnet"

# Runs inside the node namespace: one full sync of the real proxier (libnftables works in its caller's netns).
APPLY = """
import json, sys
from proxy.proxier import Proxier
table, node, services, slices = json.load(sys.stdin)
Proxier(table, node).sync_full(services, slices)
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass
class Nodes:
    node: str
    peer: str
    node_ip: str
    peer_ip: str
    tmp: str
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def serve(self, netns: str, address: str, port: int, probe_from: str) -> None:
        """An HTTP server in `netns` bound to `address` only; ready once it answers from `probe_from`."""
        self.servers.append(subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "http.server", "--bind", address,
             "--directory", self.tmp, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_sync(lambda: self.reachable(probe_from, f"http://{address}:{port}/"),
                      message=f"server on {address}:{port} in {netns}")

    def reachable(self, netns: str, url: str) -> bool:
        """Whether a GET from inside `netns` gets an answer (the client gives up after 3 s)."""
        out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "tests.proxy.servers", "fetch", url],
                             cwd=ROOT, capture_output=True, timeout=30)
        return out.returncode == 0

    def apply_proxy_table(self, table: str, services: list[Any], slices: list[Any]) -> None:
        subprocess.run(["ip", "netns", "exec", self.node, sys.executable, "-c", APPLY], cwd=ROOT, check=True,
                       input=json.dumps([table, "node", services, slices]).encode(), capture_output=True,
                       timeout=60)

    def close(self) -> None:
        for proc in self.servers:
            _stop(proc)  # type: ignore[arg-type]
        for ns in (self.node, self.peer):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # its veth end and nft table go too


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tag = unique("pkl").split("-")[1][:6]
    prefix = f"10.{random.randint(216, 223)}.{random.randint(0, 255)}"
    tmp = tempfile.mkdtemp(prefix="pkt-localnet-")
    n = Nodes(f"pkl{tag}-node", f"pkl{tag}-peer", f"{prefix}.1", f"{prefix}.2", tmp)
    try:
        sh("ip", "netns", "add", n.node)
        sh("ip", "netns", "add", n.peer)
        sh("ip", "-n", n.node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", n.peer)
        sh("ip", "-n", n.node, "addr", "add", f"{n.node_ip}/24", "dev", "eth0")
        sh("ip", "-n", n.node, "link", "set", "eth0", "up")
        sh("ip", "-n", n.node, "link", "set", "lo", "up")
        sh("ip", "-n", n.peer, "addr", "add", f"{n.peer_ip}/24", "dev", "eth0")
        sh("ip", "-n", n.peer, "link", "set", "eth0", "up")
        # The attacker's `lo` stays down, so 127.0.0.0/8 is not local there: it goes to the node.
        sh("ip", "-n", n.peer, "route", "add", "127.0.0.0/8", "via", n.node_ip)
        # What the proxy sets on the node; the attacker sets it too, to accept the answers from 127.0.0.1.
        for ns in (n.node, n.peer):
            sh("ip", "netns", "exec", ns, "sh", "-c", f"echo 1 > {ROUTE_LOCALNET}")
        yield n
    finally:
        n.close()
        subprocess.run(["rm", "-rf", tmp], check=False)


def node_port_service(node_port: int, endpoint_ip: str, endpoint_port: int) -> tuple[Any, Any]:
    svc = {"metadata": {"namespace": "ns", "name": "web", "resourceVersion": "1"},
           "spec": {"type": "NodePort", "clusterIP": "172.30.251.10",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": node_port}]}}
    slice_ = {"metadata": {"namespace": "ns", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
              "addressType": "IPv4", "ports": [{"name": "http", "port": endpoint_port, "protocol": "TCP"}],
              "endpoints": [{"addresses": [endpoint_ip], "conditions": {"ready": True}}]}
    return svc, slice_


def test_a_peer_cannot_reach_loopback_only_services_of_the_node(nodes: Nodes) -> None:
    port = free_port()
    secret = f"http://127.0.0.1:{port}/"
    nodes.serve(nodes.node, "127.0.0.1", port, probe_from=nodes.node)  # etcd, an insecure API port: anything bound to loopback only
    # The attack works on a node with route_localnet=1 and no drop rule (the code before the fix).
    assert nodes.reachable(nodes.peer, secret), "the attack setup is broken: the peer never reached 127.0.0.1"

    # The proxy's real table, with a node port Service whose endpoint is on the peer.
    endpoint_port, node_port = free_port(), random.randint(30000, 32767)
    nodes.serve(nodes.peer, nodes.peer_ip, endpoint_port, probe_from=nodes.node)
    svc, slice_ = node_port_service(node_port, nodes.peer_ip, endpoint_port)
    nodes.apply_proxy_table(unique("pkube-t"), [svc], [slice_])

    assert not nodes.reachable(nodes.peer, secret), "a peer reached a service listening on the node's 127.0.0.1"
    # The node itself still uses its loopback, and node ports on 127.0.0.1 still work (DNAT'ed, so let through,
    # replies included).
    assert nodes.reachable(nodes.node, secret)
    assert nodes.reachable(nodes.node, f"http://127.0.0.1:{node_port}/")


def test_ip_forward_comes_back_after_the_last_node_is_cleaned_up(tmp_path: Path) -> None:
    """`cluster down` gives ip_forward back (issue 13, defect 4): the kubelet's record and restore, run for real
    in a private network namespace (ip_forward is per namespace) with two nodes' bridges."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    netns, state = unique("pkf"), str(tmp_path / "state")

    def in_netns(*args: str) -> str:
        return subprocess.run(["ip", "netns", "exec", netns, *args], cwd=ROOT, check=True, capture_output=True,
                              text=True, timeout=30).stdout.strip()

    def kubelet(call: str, bridge: str) -> None:
        in_netns(sys.executable, "-c", f"from pathlib import Path; from kubelet.network import forwarding; "
                                       f"forwarding.{call}({bridge!r}, state_dir=Path({state!r}))")

    sh("ip", "netns", "add", netns)
    try:
        # A new namespace copies the host's value (devconf_inherit_init_net): start from off, as a fresh machine.
        in_netns("sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")
        assert in_netns("cat", "/proc/sys/net/ipv4/ip_forward") == "0"
        for bridge in ("pkfa", "pkfb"):  # two clusters' nodes
            sh("ip", "-n", netns, "link", "add", bridge, "type", "bridge")
            kubelet("enable", bridge)
        assert in_netns("cat", "/proc/sys/net/ipv4/ip_forward") == "1"
        sh("ip", "-n", netns, "link", "del", "pkfa")  # the first node's cleanup deletes its bridge, then restores
        kubelet("restore", "pkfa")
        assert in_netns("cat", "/proc/sys/net/ipv4/ip_forward") == "1", "restored while another node needs it"
        sh("ip", "-n", netns, "link", "del", "pkfb")
        kubelet("restore", "pkfb")
        assert in_netns("cat", "/proc/sys/net/ipv4/ip_forward") == "0"
        assert not os.listdir(state)
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
