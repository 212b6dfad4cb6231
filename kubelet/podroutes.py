"""The kubelet's pod routing loop (`--pod-routes`): watches Nodes and keeps, on this node, a way to every other
node's spec.podCIDR, by the `--network-backend`:
- host-gw: a route via the node's InternalIP (kubelet/network/routes.py);
- vxlan: a route through this node's VXLAN device, with the neighbour and FDB entries that send the frames to the
  node's InternalIP (kubelet/network/vxlan.py); this node's VTEP MAC is published as a Node annotation;
- auto: host-gw to the nodes whose InternalIP is on a directly connected subnet, VXLAN to the others (what
  flannel's vxlan backend does with DirectRouting).

Like kind's kindnet and flannel, but in the kubelet: each node of a multi-node cluster runs one."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from pklib.errors import ApiError, ConnectionFailed
from pklib.informer import Handler, Informer
from pklib.resources import NODES

from kubelet.network import vxlan
from kubelet.network.routes import NextHop, desired_routes, links_of, local_networks, sync_routes
from pklib.timeouts import wait_for

log = logging.getLogger("kubelet.podroutes")

BACKENDS = ("host-gw", "vxlan", "auto")


@dataclass(frozen=True)
class Backend:
    kind: str = "host-gw"  # one of BACKENDS
    vni: int = vxlan.DEFAULT_VNI
    port: int = vxlan.VXLAN_PORT

    @property
    def tunnels(self) -> bool:
        return self.kind != "host-gw"


def node_route_info(node: dict[str, Any]) -> tuple[str, str, str]:
    """(name, pod CIDR, InternalIP) of a Node."""
    ip = next((a.get("address", "") for a in (node.get("status") or {}).get("addresses") or []
               if a.get("type") == "InternalIP"), "")
    return node["metadata"]["name"], (node.get("spec") or {}).get("podCIDR") or "", ip


def node_vxlan_info(node: dict[str, Any]) -> tuple[str, str, str, str]:
    """(name, pod CIDR, InternalIP, VTEP MAC) of a Node."""
    mac = ((node.get("metadata") or {}).get("annotations") or {}).get(vxlan.MAC_ANNOTATION, "")
    return (*node_route_info(node), mac)


def plan(nodes: list[tuple[str, str, str, str]], me: str, local_nets: list[Any], kind: str
         ) -> tuple[dict[str, str], dict[str, vxlan.Peer]]:
    """({pod CIDR: gateway} host-gw routes, {pod CIDR: Peer} VXLAN peers) this node wants."""
    direct = desired_routes([n[:3] for n in nodes], me, local_nets) if kind != "vxlan" else {}
    if kind == "host-gw":
        return direct, {}
    peers = vxlan.desired_peers(nodes, me)
    return direct, {cidr: p for cidr, p in peers.items() if cidr not in direct}


def _apply(nodes: list[tuple[str, str, str, str]], me: str, backend: Backend, node_ip: str, pod_cidr: str,
           cluster_cidr: str = "") -> tuple[dict[str, str], str]:
    """Set this node's routing up for `nodes`; returns (what it routes where, for the log; its VTEP MAC or "").
    `cluster_cidr` scopes the routes it owns (another cluster's on the same machine are not its own)."""
    with IPRoute() as ipr:
        mac, index = "", 0
        if backend.tunnels:
            index, mac = vxlan.ensure_device(ipr, backend.vni, node_ip, pod_cidr, backend.port)
        elif ipr.link_lookup(ifname=vxlan.device_name(backend.vni)):
            vxlan.delete_device(backend.vni)  # the node used VXLAN before
        direct, peers = plan(nodes, me, local_networks(ipr), backend.kind)
        routes = {cidr: NextHop(gw) for cidr, gw in direct.items()}
        routes |= {cidr: NextHop(p.vtep, index) for cidr, p in peers.items()}
        own = links_of(ipr, node_ip) | ({index} if index else set())
        sync_routes(ipr, routes, cluster_cidr, own)
        if index:
            vxlan.sync_peers(ipr, index, peers)
    shown = {cidr: f"via {gw}" for cidr, gw in direct.items()}
    shown |= {cidr: f"via {vxlan.device_name(backend.vni)} to {p.node_ip}" for cidr, p in peers.items()}
    return shown, mac


async def _publish_mac(client: Any, informer: Informer, node_name: str, mac: str) -> None:
    """The Node annotation the other nodes find this node's VTEP MAC in (flannel's backend-data)."""
    have = ((informer.store.get(node_name) or {}).get("metadata") or {}).get("annotations") or {}
    if have.get(vxlan.MAC_ANNOTATION) != mac:
        await client.patch(NODES, node_name, {"metadata": {"annotations": {vxlan.MAC_ANNOTATION: mac}}})


async def run_pod_routes(client: Any, node_name: str, backend: Backend = Backend(), node_ip: str = "",
                         pod_cidr: str = "", cluster_cidr: str = "", resync: float = 30.0) -> None:
    """Forever: on every Node change (and every `resync` seconds, in case a route was removed by hand)."""
    informer = Informer(client, NODES)
    changed = asyncio.Event()

    def poke(*_: Any) -> None:
        changed.set()
    informer.add_handler(Handler(on_add=poke, on_update=poke, on_delete=poke))
    task = asyncio.create_task(informer.run(), name="kubelet:pod-routes-informer")
    last: dict[str, str] | None = None
    try:
        while True:
            try:
                await wait_for(changed.wait(), resync)
            except TimeoutError:
                pass
            changed.clear()
            if not informer.has_synced:
                continue
            nodes = [node_vxlan_info(n) for n in informer.store.list()]
            try:
                want, mac = await asyncio.to_thread(_apply, nodes, node_name, backend, node_ip, pod_cidr,
                                                    cluster_cidr)
                if mac:
                    await _publish_mac(client, informer, node_name, mac)
            except (OSError, ApiError, ConnectionFailed) as e:
                log.warning("pod routes: %s", e)
                continue
            if want != last:
                log.info("pod routes (%s): %s", backend.kind,
                         ", ".join(f"{d} {how}" for d, how in sorted(want.items())) or "none")
                last = want
    finally:
        task.cancel()
