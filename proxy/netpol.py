"""NetworkPolicy enforcement on this node, run by `pkube proxy` (the per-node component that already owns
nftables): informers keep NetworkPolicies, every pod (peers may live on any node) and namespaces (their labels
for namespaceSelector); any change marks the ruleset dirty, and the sync loop rebuilds it
(netpol_rules.build) and applies the difference in one nft transaction, at most once per --min-sync-period.
The first sync, and the one after a failure, rewrites the whole table.

The table is `pkube-netpol` next to the default `pkube-proxy` (`<table>-netpol` for another --table: one per
node and network namespace). It is deleted when the proxy stops and by `--cleanup`: without its proxy a node
no longer keeps its policies up to date, so it does not keep stale ones either.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pklib.client import Client
from pklib.informer import Handler, InformerFactory, Obj
from pklib.resources import NAMESPACES, NETWORKPOLICIES, PODS

from . import netpol_rules, nft
from .proxier import Metrics
from .rules import valid_table_name

log = logging.getLogger("proxy.netpol")

# br_netfilter's switch: without it, traffic bridged between two pods of a node skips the ip family's hooks.
BRIDGE_NF_CALL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def table_for(proxy_table: str) -> str:
    """The policy table that goes with a proxy table: pkube-proxy -> pkube-netpol, T -> T-netpol."""
    base = proxy_table[: -len("-proxy")] if proxy_table.endswith("-proxy") else proxy_table
    return valid_table_name(f"{base[:64 - len('-netpol')]}-netpol")  # nft table names: at most 64 characters


def bridged_traffic_filtered(switch: Path = BRIDGE_NF_CALL) -> bool:
    try:
        return switch.read_text().strip() == "1"
    except OSError:
        return False


def _pod_facts(pod: Obj) -> tuple[object, ...]:
    """What of a pod the ruleset depends on: labels, node, addresses, phase, container ports."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    return (meta.get("labels"), spec.get("nodeName"), spec.get("hostNetwork"), status.get("podIP"),
            status.get("podIPs"), status.get("phase"), [c.get("ports") for c in spec.get("containers") or []])


class PolicyEnforcer:
    def __init__(self, client: Client, table: str, node_name: str, min_sync_period: float, metrics: Metrics):
        self.metrics = metrics
        self.table = table
        self.node = node_name
        self.min_sync_period = min_sync_period
        self.informers = InformerFactory(client)
        self.pods = self.informers.informer(PODS)
        self.namespaces = self.informers.informer(NAMESPACES)
        self.policies = self.informers.informer(NETWORKPOLICIES)
        self.applied: netpol_rules.Ruleset | None = None  # what the kernel holds; None: unknown (full sync next)
        self._dirty = asyncio.Event()
        self.syncs = 0
        dirty = Handler(self._mark, lambda o, n: self._mark(n), self._mark)
        self.policies.add_handler(dirty)
        self.pods.add_handler(Handler(self._mark, self._pod_changed, self._mark))
        self.namespaces.add_handler(Handler(self._mark, self._namespace_changed, self._mark))

    def _mark(self, _: Obj) -> None:
        self._dirty.set()

    def _pod_changed(self, old: Obj, new: Obj) -> None:
        # Pod status updates (probes, restarts) are frequent; only what a ruleset reads matters.
        if _pod_facts(old) != _pod_facts(new):
            self._dirty.set()

    def _namespace_changed(self, old: Obj, new: Obj) -> None:
        if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
            self._dirty.set()

    def _cluster(self) -> netpol_rules.Cluster:
        namespaces = {(n.get("metadata") or {}).get("name", ""): n for n in self.namespaces.store.list()}
        return netpol_rules.Cluster(self.node, self.pods.store.list(), namespaces, self.policies.store.list())

    def _apply(self, cluster: netpol_rules.Cluster) -> None:
        new = netpol_rules.build(self.table, cluster)
        if self.applied is None:
            chains, sets = nft.current_objects(self.table)
            script: str | None = netpol_rules.full(new, chains, sets)
        else:
            script = netpol_rules.incremental(self.applied, new)
        if script is not None:
            self.applied = None
            nft.apply_script(script)
        self.applied = new
        self.syncs += 1

    async def run(self, ready: asyncio.Event) -> None:
        if not bridged_traffic_filtered():
            log.warning("%s is not 1 (br_netfilter): traffic between two pods of this node is not filtered by "
                        "NetworkPolicies", BRIDGE_NF_CALL)
        self.informers.start()
        try:
            await self.informers.wait_synced()
            loop = asyncio.get_running_loop()
            failures = 0
            while True:
                self._dirty.clear()
                started = loop.time()
                try:
                    # The snapshot is taken here, in the loop that mutates the caches; nft runs in a thread.
                    with self.metrics.netpol_sync_duration.time():
                        await asyncio.to_thread(self._apply, self._cluster())
                    failures = 0
                    ready.set()
                except Exception as e:  # noqa: BLE001 - Services keep being proxied whatever goes wrong here
                    failures += 1
                    self.metrics.netpol_sync_failures.inc()
                    if isinstance(e, nft.NftError):
                        log.error("network policy sync failed (attempt %d): %s", failures, e)
                    else:
                        log.exception("network policy sync failed (attempt %d)", failures)
                    await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
                    continue
                await self._dirty.wait()
                await asyncio.sleep(max(0.0, started + self.min_sync_period - loop.time()))
        finally:
            await self.informers.stop()

    async def remove(self) -> None:
        await asyncio.to_thread(nft.delete_table, self.table)
