"""The kubelet's host-gw routing loop (`--pod-routes`): watches Nodes and keeps, on this node, a route to
every other node's spec.podCIDR via its InternalIP (kubelet/network/routes.py does the netlink part).

Like kind's kindnet, but in the kubelet: each node of a local multi-node cluster runs one."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from pyroute2 import IPRoute

from pklib.informer import Handler, Informer
from pklib.resources import NODES

from kubelet.network.routes import desired_routes, local_networks, sync_routes

log = logging.getLogger("kubelet.podroutes")


def node_route_info(node: dict[str, Any]) -> tuple[str, str, str]:
    """(name, pod CIDR, InternalIP) of a Node."""
    ip = next((a.get("address", "") for a in (node.get("status") or {}).get("addresses") or []
               if a.get("type") == "InternalIP"), "")
    return node["metadata"]["name"], (node.get("spec") or {}).get("podCIDR") or "", ip


def _apply(nodes: list[tuple[str, str, str]], me: str) -> dict[str, str]:
    with IPRoute() as ipr:
        want = desired_routes(nodes, me, local_networks(ipr))
        sync_routes(ipr, want)
    return want


async def run_pod_routes(client: Any, node_name: str, resync: float = 30.0) -> None:
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
                await asyncio.wait_for(changed.wait(), resync)
            except TimeoutError:
                pass
            changed.clear()
            if not informer.has_synced:
                continue
            nodes = [node_route_info(n) for n in informer.store.list()]
            try:
                want = await asyncio.to_thread(_apply, nodes, node_name)
            except OSError as e:
                log.warning("pod routes: %s", e)
                continue
            if want != last:
                log.info("pod routes: %s", ", ".join(f"{d} via {g}" for d, g in sorted(want.items())) or "none")
                last = want
    finally:
        task.cancel()
