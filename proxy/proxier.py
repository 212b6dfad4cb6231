"""The proxier: turns the current Services and Endpoints into kernel state, one transaction per sync.

It owns what the kernel is believed to hold (chains and sets of the table, the UDP targets conntrack may
remember) so that each sync deletes exactly the stale parts. A full reconcile re-reads the table from the
kernel first, so rules someone else changed or deleted are put back.
"""
from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram

from . import nft, rules

log = logging.getLogger("proxy")

ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def enable_route_localnet() -> None:
    """DNAT of connections to 127.0.0.1:NODEPORT needs the kernel to route 127/8 sources off `lo`.

    Like kube-proxy we set it for the whole node; the masquerade rule then gives those packets a real
    source address before they leave.
    """
    if ROUTE_LOCALNET.read_text().strip() != "1":
        ROUTE_LOCALNET.write_text("1\n")
        log.info("set net.ipv4.conf.all.route_localnet=1 for node ports on 127.0.0.1")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sync_duration = Histogram(
            "pkube_proxy_sync_proxy_rules_duration_seconds", "Time to generate and apply the nftables ruleset",
            registry=self.registry, buckets=_LATENCY_BUCKETS)
        self.programming_latency = Histogram(
            "pkube_proxy_network_programming_duration_seconds",
            "From a Service or Endpoints change to its rules being live in the kernel",
            registry=self.registry, buckets=_LATENCY_BUCKETS)
        self.sync_failures = Counter("pkube_proxy_sync_proxy_rules_failures", "Failed nftables transactions",
                                     registry=self.registry)


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


class Proxier:
    def __init__(self, table: str, node_name: str, metrics: Metrics | None = None):
        self.table = rules.valid_table_name(table)
        self.node_name = node_name
        self.metrics = metrics or Metrics()
        self._applied: rules.Ruleset | None = None  # what the kernel holds; None: unknown, do a full sync
        self._udp: set[tuple[str, int, str]] = set()
        self._ports: rules.PortCache = {}
        self.last_sync: float = 0.0  # monotonic time of the last successful sync (for /healthz)

    def sync(self, services: Iterable[dict[str, Any]], endpoints: Mapping[str, dict[str, Any]],
             full: bool = False) -> rules.Ruleset:
        """Program the kernel; `full` re-reads the table and rewrites all of it. Raises NftError."""
        started = time.perf_counter()
        ruleset = rules.build(self.table, services, endpoints, self.node_name, self._ports)
        try:
            if full or self._applied is None:
                chains, sets = nft.current_objects(self.table)
                nft.apply_script(nft.transaction(ruleset, chains, sets))
            else:
                script = nft.incremental(self._applied, ruleset)
                if script is not None:
                    nft.apply_script(script)
        except nft.NftError:
            self._applied = None
            self.metrics.sync_failures.inc()
            raise
        self._applied = ruleset
        udp = rules.udp_targets(ruleset.ports)
        stale = self._udp - udp
        self._udp = udp
        if stale:
            delete_udp_conntrack(stale)
        self.last_sync = time.monotonic()
        took = time.perf_counter() - started
        self.metrics.sync_duration.observe(took)
        log.debug("%s sync of %d service ports in %.1f ms", "full" if full else "partial", len(ruleset.ports),
                  took * 1000)
        return ruleset
