"""End to end: a 2-node local cluster whose nodes reach each other's pods through VXLAN
(`pkctl cluster up --nodes 2 --network-backend vxlan`, flannel's vxlan backend): a device pkube.<VNI> in each
node's network namespace, a route per remote pod CIDR through it, permanent neighbour and FDB entries from the
Node annotations; pods reach each other by IP with their source IPs kept; a Node that goes takes its entries
along, and `cluster down --purge` leaves no device (local_cluster checks)."""
from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Any, Callable, Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from tests.e2e.helpers import Cluster, local_cluster, make_namespace, no_traceback
from tests.e2e.test_nodes import pkctl, run_servers
from tests.util import unique, wait_for_sync as wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler")),
                       reason="the control plane has not landed in this build"),
]

MAC_ANNOTATION = "pkube.io/vxlan-mac"


@pytest.fixture(scope="module")
def tunnel() -> Iterator[Cluster]:
    with local_cluster("--nodes", "2", "--network-backend", "vxlan") as c:
        yield c


def ip_json(netns: str, *argv: str) -> list[dict[str, Any]]:
    """`ip -j` (or `bridge -j`) inside a node's network namespace ("": the host, the first node's)."""
    tool = "bridge" if argv[0] == "fdb" else "ip"
    p = subprocess.run([tool, *(["-n", netns] if netns else []), "-j", "-d", *argv],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout or "[]")


def nodes_by_name(c: Cluster) -> dict[str, dict[str, Any]]:
    code, body = c.api("/api/v1/nodes")
    assert code == 200, body
    return {n["metadata"]["name"]: n for n in body["items"]}


def internal_ip(node: dict[str, Any]) -> str:
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


State = tuple[set[str], set[tuple[str, str]], set[tuple[str, str]]]


def tunnel_state(netns: str, device: str) -> State:
    """(routes through the device, its neighbour entries (IP, MAC), its FDB entries (MAC, remote IP))."""
    routes = {r["dst"] for r in ip_json(netns, "route", "show", "dev", device)}
    neigh = {(n["dst"], n["lladdr"]) for n in ip_json(netns, "neigh", "show", "dev", device)}
    fdb = {(f["mac"], f["dst"]) for f in ip_json(netns, "fdb", "show", "dev", device) if f.get("dst")}
    return routes, neigh, fdb


def wait_tunnel(netns: str, device: str, ok: Callable[[State], bool], timeout: float = 30) -> None:
    seen: list[State] = []

    def check() -> bool:
        seen[:] = [tunnel_state(netns, device)]
        return ok(seen[0])
    try:
        wait_for(check, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{device} in {netns or 'the host'}: {seen}") from None


def uplink_mtu(netns: str, ip: str) -> int:
    """MTU of the interface holding the node's InternalIP."""
    for link in ip_json(netns, "addr", "show"):
        if any(a.get("local") == ip for a in link.get("addr_info", [])):
            return int(link["mtu"])
    raise AssertionError(f"no interface has {ip}")


def test_every_node_has_a_vxlan_device_and_publishes_its_mac(tunnel: Cluster) -> None:
    cfg = tunnel.config()
    assert "(vxlan pod network)" in tunnel.up_output
    device, worker = f"pkube.{cfg['vxlan_vni']}", cfg["workers"][0]
    where = {cfg["node_name"]: "", worker["name"]: worker["netns"]}

    def annotated() -> dict[str, dict[str, Any]] | None:
        nodes = nodes_by_name(tunnel)
        return nodes if len(nodes) == 2 and all(MAC_ANNOTATION in n["metadata"].get("annotations", {})
                                                 for n in nodes.values()) else None
    nodes = wait_for(annotated, timeout=60)
    for name, netns in where.items():
        link = ip_json(netns, "link", "show", device)[0]
        vx = link["linkinfo"]["info_data"]
        assert link["linkinfo"]["info_kind"] == "vxlan" and vx["id"] == cfg["vxlan_vni"] and vx["port"] == 8472
        assert vx["local"] == internal_ip(nodes[name]) and not vx.get("learning")
        assert link["address"] == nodes[name]["metadata"]["annotations"][MAC_ANNOTATION]
        assert link["mtu"] == uplink_mtu(netns, internal_ip(nodes[name])) - 50  # VXLAN's encapsulation
        # the other node's pod CIDR through the tunnel, its VTEP's MAC and where to send its frames
        other = nodes[next(n for n in nodes if n != name)]
        cidr, mac = other["spec"]["podCIDR"], other["metadata"]["annotations"][MAC_ANNOTATION]
        vtep = str(ipaddress.ip_network(cidr).network_address)
        wait_tunnel(netns, device, lambda s: s == ({cidr}, {(vtep, mac)}, {(mac, internal_ip(other))}))


def test_pods_on_both_nodes_reach_each_other_through_the_tunnel_with_their_own_ips(tunnel: Cluster) -> None:
    ns = make_namespace(tunnel)
    cfg = tunnel.config()
    ips = run_servers(tunnel, ns, {"first": (cfg["node_name"], {}), "second": (cfg["workers"][0]["name"], {})})
    for client, server in (("first", "second"), ("second", "first")):
        request = f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ips[server]} 8080"

        def answer() -> str | None:
            p = pkctl(tunnel, "-n", ns, "exec", client, "--", "sh", "-c", request, check=False)
            assert no_traceback(p), p.stderr
            return p.stdout if "200 OK" in p.stdout else None
        out = wait_for(answer, timeout=30)
        # the server saw the client pod's own IP: no masquerade through the tunnel
        assert out.split()[-1].removeprefix("[").removesuffix("]").removeprefix("::ffff:") == ips[client], out
    # and no host-gw route carried it: the only way to the other node's pods is the VXLAN device
    worker = cfg["workers"][0]
    other_cidr = nodes_by_name(tunnel)[worker["name"]]["spec"]["podCIDR"]
    assert {r["dev"] for r in ip_json("", "route", "show", other_cidr)} == {f"pkube.{cfg['vxlan_vni']}"}


def test_a_node_that_goes_takes_its_tunnel_entries_along(tunnel: Cluster) -> None:
    cfg = tunnel.config()
    device, worker = f"pkube.{cfg['vxlan_vni']}", cfg["workers"][0]
    name, mac, cidr = unique("gone"), "02:00:00:00:00:fa", "198.51.100.0/24"  # a documentation range: never real
    ip = str(ipaddress.ip_network(cfg["node_subnet"])[250])
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {MAC_ANNOTATION: mac}},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr],
                     "taints": [{"key": "example.com/not-a-machine", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
    code, body = tunnel.api("/api/v1/nodes", node)
    assert code == 201, body
    try:
        for netns in ("", worker["netns"]):
            wait_tunnel(netns, device, lambda s: cidr in s[0] and ("198.51.100.0", mac) in s[1] and (mac, ip) in s[2])
    finally:
        code, body = tunnel.api(f"/api/v1/nodes/{name}", method="DELETE")
        assert code == 200, body
    for netns in ("", worker["netns"]):
        wait_tunnel(netns, device, lambda s: cidr not in s[0] and all(mac not in e for e in s[1] | s[2]))
