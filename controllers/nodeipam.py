"""Node IPAM: every Node gets its own pod range (spec.podCIDR) out of the cluster CIDR.

Ranges are handed out once: the set of used ranges is rebuilt from the nodes on start
(before the first allocation), a range we assigned is remembered even while the cache
has not caught up with our write, and a range comes free only when its node is deleted.
"""
from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError, is_not_found
from pklib.flagtypes import int_in_range
from pklib.informer import Obj
from pklib.objects import key_of
from pklib.resources import NODES


class CidrExhausted(Exception):
    pass


class CidrSet:
    """The /mask subnets of a cluster CIDR, allocated round-robin (a freed range is reused last)."""

    def __init__(self, cluster_cidr: str, mask: int):
        self.network = ipaddress.ip_network(cluster_cidr, strict=True)
        if mask < self.network.prefixlen or mask > self.network.max_prefixlen:
            raise ValueError(f"node CIDR mask /{mask} does not fit in cluster CIDR {cluster_cidr}")
        self.mask = mask
        self.size = 2 ** (mask - self.network.prefixlen)
        self._step = 2 ** (self.network.max_prefixlen - mask)
        self._used: set[int] = set()
        self._next = 0

    def _index(self, cidr: str) -> int | None:
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            return None
        if net.prefixlen != self.mask or not net.subnet_of(self.network):  # type: ignore[arg-type]
            return None
        return int((int(net.network_address) - int(self.network.network_address)) // self._step)

    def _cidr(self, index: int) -> str:
        return f"{self.network.network_address + index * self._step}/{self.mask}"

    def occupy(self, cidr: str) -> bool:
        """Mark a range in use (one found on a node); False if it is not one of ours."""
        index = self._index(cidr)
        if index is None:
            return False
        self._used.add(index)
        return True

    def allocate(self) -> str:
        for i in range(self.size):
            index = (self._next + i) % self.size
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % self.size
                return self._cidr(index)
        raise CidrExhausted(f"no free /{self.mask} left in {self.network}")

    def release(self, cidr: str) -> None:
        index = self._index(cidr)
        if index is not None:
            self._used.discard(index)

    @property
    def used(self) -> int:
        return len(self._used)


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a network CIDR: {e}") from None


_mask = int_in_range(1, 128, "prefix length")


class NodeIpamController(Controller):
    name = "nodeipam"

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cluster-cidr", type=_cidr, default="10.244.0.0/16", help="pod ranges are cut from this")
        parser.add_argument("--node-cidr-mask-size", type=_mask, default=24, help="size of each node's pod range")

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        try:
            self.cidrs = CidrSet(self.option("cluster_cidr", "10.244.0.0/16"), self.option("node_cidr_mask_size", 24))
        except ValueError as e:
            raise ValueError(f"nodeipam: {e}") from None
        # Ranges we wrote but may not have seen back yet: a second sync must not allocate again.
        self._assigned: dict[str, str] = {}
        self._recovered = False
        self.nodes = self.watch(NODES, on_add=self._maybe_enqueue, on_update=lambda old, new: self._maybe_enqueue(new),
                                on_delete=self._node_deleted)

    def _maybe_enqueue(self, node: Obj) -> None:
        if not (node.get("spec") or {}).get("podCIDR"):
            self.enqueue(node)

    def _node_deleted(self, node: Obj) -> None:
        name = key_of(node)
        cidr = (node.get("spec") or {}).get("podCIDR") or self._assigned.get(name)
        self._assigned.pop(name, None)
        if cidr and not any((n.get("spec") or {}).get("podCIDR") == cidr for n in self.nodes.store.list()):
            self.cidrs.release(cidr)
            # A range came free: nodes waiting for one get another try.
            for n in self.nodes.store.list():
                self._maybe_enqueue(n)

    def _recover(self) -> None:
        """Runs once the cache is filled: every range already on a node is taken."""
        for node in self.nodes.store.list():
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr and not self.cidrs.occupy(cidr):
                self.log.warning("node %s has podCIDR %s outside %s", key_of(node), cidr, self.cidrs.network)
        self._recovered = True

    async def sync(self, key: str) -> None:
        if not self._recovered:
            self._recover()
        node = self.nodes.store.get(key)
        if node is None:
            return
        spec = node.get("spec") or {}
        if spec.get("podCIDR"):
            self.cidrs.occupy(spec["podCIDR"])
            self._assigned.pop(key, None)
            return
        cidr = self._assigned.get(key)
        if cidr is None:
            try:
                cidr = self.cidrs.allocate()
            except CidrExhausted as e:
                self.recorder.warning(node, "CIDRNotAvailable", f"Node {key} status is now: CIDRNotAvailable ({e})")
                return
            self._assigned[key] = cidr
        patch: dict[str, Any] = {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        try:
            await self.client.patch(NODES, key, patch)
        except ApiError as e:
            if is_not_found(e):
                self._assigned.pop(key, None)
                self.cidrs.release(cidr)
                return
            raise
        self.log.debug("node %s: podCIDR %s", key, cidr)
