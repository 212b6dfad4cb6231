"""The proxier: turns the current Services and EndpointSlices into kernel state, one transaction per sync.

It owns what the kernel is believed to hold (per Service, `state.TableState`) so that each sync deletes
exactly the stale parts. A partial sync rewrites only the Services that changed; a full reconcile (at
start, periodically, after a failure) re-reads the table from the kernel first and rewrites all of it, so
rules someone else changed or deleted are put back. UDP conntrack entries of vanished endpoints go too.
"""
from __future__ import annotations

import logging
import subprocess
import time
from typing import Any, Iterable, Mapping, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram

from . import hostports, nft, rules, slices
from .state import TableState, stale_udp

log = logging.getLogger("proxy")

Obj = dict[str, Any]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sync_duration = Histogram(
            "pkube_proxy_sync_proxy_rules_duration_seconds", "Time to generate and apply the nftables ruleset",
            registry=self.registry, buckets=_LATENCY_BUCKETS)
        # As kube-proxy: the same, split by kind of sync (a full one rewrites the table, a partial one the changes).
        self.sync_kind_duration = {kind: Histogram(
            f"pkube_proxy_sync_{kind}_proxy_rules_duration_seconds", f"Time of {kind} syncs of the nftables ruleset",
            registry=self.registry, buckets=_LATENCY_BUCKETS) for kind in ("full", "partial")}
        self.programming_latency = Histogram(
            "pkube_proxy_network_programming_duration_seconds",
            "From a Service or EndpointSlice change to its rules being live in the kernel",
            registry=self.registry, buckets=_LATENCY_BUCKETS)
        self.sync_failures = Counter("pkube_proxy_sync_proxy_rules_failures", "Failed nftables transactions",
                                     registry=self.registry)
        self.netpol_sync_duration = Histogram(
            "pkube_proxy_sync_network_policy_rules_duration_seconds",
            "Time to build and apply this node's NetworkPolicy table", registry=self.registry, buckets=_LATENCY_BUCKETS)
        self.netpol_sync_failures = Counter("pkube_proxy_sync_network_policy_rules_failures",
                                            "Failed NetworkPolicy syncs", registry=self.registry)


def delete_udp_conntrack(stale: Iterable[tuple[str, int, str]]) -> None:
    """Forget UDP flows to endpoints that are gone; otherwise a client keeps sending into the void.

    UDP has no handshake, so the kernel would reuse the conntrack entry (and its old DNAT) for as long as
    the client keeps talking.
    """
    for address, port, ep_ip in sorted(stale):
        if address == "nodeport":
            args = ["-p", "udp", "--orig-port-dst", str(port), "--dst-nat", ep_ip]
        else:
            args = ["-p", "udp", "--orig-dst", address, "--orig-port-dst", str(port), "--dst-nat", ep_ip]
        try:
            # Exit status 1 means "nothing matched", which is the common case.
            subprocess.run(["conntrack", "-D", *args], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("conntrack -D %s failed: %s", " ".join(args), e)


# Service key "ns/name" -> (the Service, or None when it is gone; its EndpointSlices).
Snapshot = Mapping[str, tuple[Optional[Obj], list[Obj]]]


class Proxier:
    def __init__(self, table: str, node_name: str, metrics: Metrics | None = None):
        self.table = rules.valid_table_name(table)
        self.node_name = node_name
        self.metrics = metrics or Metrics()
        self.state = TableState(self.table)
        self.needs_full = True  # what the kernel holds is unknown (at start, after a failed transaction)
        self.last_sync: float = 0.0  # monotonic time of the last successful sync (for /healthz)

    def fragment(self, svc: Obj, endpoint_slices: list[Obj]) -> rules.Fragment:
        return rules.fragment(rules.service_ports(svc, endpoint_slices, self.node_name))

    def sync_full(self, services: Iterable[Obj], endpoint_slices: Iterable[Obj],
                  pods: Iterable[Obj] = ()) -> rules.Ruleset:
        """Re-read the table's objects from the kernel and rewrite all of it for these objects (and this
        node's pods' hostPorts). Raises NftError."""
        started = time.perf_counter()
        by_service = slices.group_by_service(endpoint_slices)
        fragments = {}
        for svc in services:
            key = rules.service_key(svc)
            fragments[key] = self.fragment(svc, by_service.get(key, []))
        for pod in pods:
            frag = hostports.fragment(pod)
            if frag is not None:
                fragments[hostports.pod_key(pod)] = frag
        before = self.state.whole()
        ruleset = rules.assemble(self.table, fragments.values())
        try:
            chains, sets = nft.current_objects(self.table)
            nft.apply_script(nft.transaction(ruleset, chains, sets))
        except nft.NftError:
            self._failed()
            raise
        self.state.replace(fragments)
        self.needs_full = False
        self._done(started, "full", stale_udp(before, ruleset))
        return ruleset

    def sync_partial(self, snapshot: Snapshot, pods: Mapping[str, Optional[Obj]] | None = None) -> None:
        """Rewrite only the Services in `snapshot` and the pods in `pods` (key `hostports.pod_key` -> the pod,
        or None when it is gone): kube-proxy's partial sync. Raises NftError.

        Needs the table in a known state: after a start or a failure, call sync_full first.
        """
        if self.needs_full:
            raise RuntimeError("a partial sync needs a full sync first")
        started = time.perf_counter()
        updates: dict[str, rules.Fragment | None] = {
            key: self.fragment(svc, sl) if svc is not None else None for key, (svc, sl) in snapshot.items()}
        for key, pod in (pods or {}).items():
            updates[key] = hostports.fragment(pod) if pod is not None else None
        before, after = self.state.partial(updates)
        script = nft.incremental(before, after)
        try:
            if script is not None:
                nft.apply_script(script)
        except nft.NftError:
            self._failed()
            raise
        self.state.update(updates)
        self._done(started, "partial", stale_udp(before, after))

    def _failed(self) -> None:
        self.needs_full = True
        self.metrics.sync_failures.inc()

    def _done(self, started: float, kind: str, stale: set[tuple[str, int, str]]) -> None:
        if stale:
            delete_udp_conntrack(stale)
        self.last_sync = time.monotonic()
        took = time.perf_counter() - started
        self.metrics.sync_duration.observe(took)
        self.metrics.sync_kind_duration[kind].observe(took)
        log.debug("%s sync in %.1f ms", kind, took * 1000)
