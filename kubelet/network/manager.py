"""The node's pod network: bridge + NAT once per node, a netns with an IP per pod sandbox."""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from kubelet.network import forwarding, nat
from kubelet.network.bridge import delete_bridge, ensure_bridge, keep_address
from kubelet.network.ipam import IPAM
from kubelet.network.netns import (Uplink, create_netns, list_netns, netns_path, teardown_pod_network,
                                   wire_pod_network)

UPLINK_TTL = 60.0  # seconds a pod setup trusts the bridge and MTU an earlier one saw (a gone bridge is noticed)


@dataclass
class NetworkConfig:
    pod_cidr: str
    ipam_dir: Path
    cluster_cidr: str = ""  # every node's pods: traffic to them is not masqueraded (empty: this node's only)
    bridge: str = "pkube0"
    nat_table: str = nat.DEFAULT_TABLE
    netns_prefix: str = "pkube-"
    veth_prefix: str = "pkv"
    # Egress through the node's uplink needs routing; tests that only talk pod-to-pod over the bridge leave the
    # host's setting alone.
    enable_forwarding: bool = True


@dataclass
class PodNetworkInfo:
    ip: str
    netns_name: str
    netns: str
    host_veth: str


class NodeNetwork:
    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self.ipam = IPAM(config.ipam_dir, config.pod_cidr)
        self.gateway = ipaddress.IPv4Interface(f"{self.ipam.gateway}/{self.ipam.network.prefixlen}")
        self._uplink: tuple[Uplink, float] | None = None  # and when it was looked up

    def ensure(self) -> None:
        """Idempotent node setup: bridge with the gateway address, NAT table, forwarding."""
        with IPRoute() as ipr:
            keep_address(ipr, ensure_bridge(ipr, self.config.bridge, self.gateway), self.gateway)
        nat.ensure_nat(self.config.nat_table, self.config.pod_cidr, self.config.cluster_cidr)
        if self.config.enable_forwarding:
            forwarding.enable(self.config.bridge)

    def names(self, sandbox_id: str) -> tuple[str, str]:
        """(netns name, host veth name); interface names are limited to 15 characters."""
        return self.config.netns_prefix + sandbox_id[:12], (self.config.veth_prefix + sandbox_id)[:15]

    def setup(self, sandbox_id: str) -> PodNetworkInfo:
        """The pod's IP and its netns, wired (prepare, then wire)."""
        info = self.prepare(sandbox_id)
        self.wire(sandbox_id, info)
        return info

    def prepare(self, sandbox_id: str) -> PodNetworkInfo:
        """The pod's IP and a new, empty netns (what a container can be created in); `wire` connects it."""
        ns_name, veth = self.names(sandbox_id)
        ip = self.ipam.allocate(sandbox_id)
        try:
            create_netns(ns_name)
        except BaseException:
            self.teardown(sandbox_id)
            raise
        return PodNetworkInfo(str(ip), ns_name, netns_path(ns_name), veth)

    def wire(self, sandbox_id: str, info: PodNetworkInfo) -> None:
        """Connect a prepared netns: veth to the bridge, address, routes. Tears the pod's network down (IP
        included) if it fails."""
        known = self._uplink
        fresh = known[0] if known and time.monotonic() - known[1] < UPLINK_TTL else None
        try:
            used = wire_pod_network(info.netns_name, info.host_veth, self.config.bridge,
                                    ipaddress.IPv4Interface(f"{info.ip}/{self.ipam.network.prefixlen}"),
                                    self.gateway, fresh)
            if used is not fresh:
                self._uplink = (used, time.monotonic())
        except BaseException:
            self.teardown(sandbox_id)
            raise

    def teardown(self, sandbox_id: str) -> None:
        """Idempotent: veth, netns and the IP allocation go."""
        ns_name, veth = self.names(sandbox_id)
        teardown_pod_network(ns_name, veth)
        self.ipam.release(sandbox_id)

    def gc(self, live_sandbox_ids: set[str]) -> list[str]:
        """Reclaim IPs and netns left by sandboxes that no longer exist (e.g. a crash mid-setup)."""
        live_ns = {self.names(s)[0] for s in live_sandbox_ids}
        for name in list_netns(self.config.netns_prefix):
            if name not in live_ns:
                teardown_pod_network(name, "")
        return self.ipam.gc(live_sandbox_ids)

    def destroy(self) -> None:
        """Node teardown: the NAT table and the bridge; ip_forward back as it was if this node turned it on
        and no other pkube node still runs here."""
        nat.delete_nat(self.config.nat_table)
        delete_bridge(self.config.bridge)
        forwarding.restore(self.config.bridge)
