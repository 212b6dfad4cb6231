"""Services benchmark: nftables proxy and cluster DNS at 1,000 Services x 10 endpoints (one JSON document).

    .venv/bin/python -m bench.services [--services 1000] [--endpoints 10] [--changes 30] [--change-interval 0.1]
                                       [--queries 20000]

Needs root (nftables). Real etcd + apiserver processes; Services and EndpointSlices are objects only (no
pods; no packet is sent to their addresses). Measures:
- full sync: rules generation and the `nft -f` transaction for the whole table (in-process Proxier), first
  apply into an empty table and a rewrite of an existing one;
- endpoint change -> rules live: a `pkube proxy` process runs; we update one EndpointSlice through the
  API and time until `nft monitor` reports the rule with the new endpoint committed (includes the watch
  delivery and the proxy's partial sync; changes are --change-interval apart, 0.1 s by default, so that
  each is a lone change and not part of a burst the proxy would batch); plus the proxy's own
  programming-latency histogram;
- DNS: a `pkube dns` process on loopback; queries/s and latency for random Service names (UDP, one
  asyncio client with a bounded number of queries in flight; the client shares the 2 cores).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from dnslib import DNSRecord

from pklib.client import Client
from pklib.resources import must_lookup
from proxy import nft
from proxy.proxier import Proxier
from bench.common import control_plane, report
from tests.support.controlplane import ROOT, _stop
from tests.util import free_port, unique

SERVICES = must_lookup("services")
ENDPOINT_SLICES = must_lookup("endpointslices")
NAMESPACES = must_lookup("namespaces")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)


def slice_body(ns: str, service: str, ips: list[str]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{service}-x", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"port": 8080, "protocol": "TCP"}]}


async def populate(c: Client, ns: str, services: int, per: int, first: int = 0) -> None:
    """Services s{first} .. s{services - 1} with an EndpointSlice of `per` endpoints each (one in ten a NodePort);
    the namespace is created with the first of them."""
    if first == 0:
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            spec: dict[str, Any] = {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}
            if i % 10 == 0:
                spec["type"] = "NodePort"
            await c.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                      "metadata": {"name": f"s{i}", "namespace": ns}, "spec": spec})
            await c.create(ENDPOINT_SLICES, slice_body(ns, f"s{i}", [f"10.{100 + i // 250}.{i % 250}.{j + 1}"
                                                                    for j in range(per)]))
    await asyncio.gather(*(one(i) for i in range(first, services)))


def full_sync(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> dict[str, Any]:
    from proxy import rules
    table = unique("pkube-b")
    try:
        started = time.perf_counter()
        ruleset = rules.build(table, services, slices)
        generate = time.perf_counter() - started
        proxier = Proxier(table, "bench-node")
        first = time.perf_counter()
        proxier.sync_full(services, slices)
        first = time.perf_counter() - first
        rewrites = []
        for _ in range(3):
            t = time.perf_counter()
            proxier.sync_full(services, slices)
            rewrites.append(time.perf_counter() - t)
        # One slice changes: the partial transaction rewrites that Service's chains and elements only.
        incremental = []
        for n in range(5):
            svc = services[n * 97 % len(services)]
            name = svc["metadata"]["name"]
            changed = next(json.loads(json.dumps(s)) for s in slices
                           if s["metadata"]["labels"]["kubernetes.io/service-name"] == name)
            changed["endpoints"][0]["addresses"] = [f"10.99.255.{n + 1}"]
            t = time.perf_counter()
            proxier.sync_partial({f"{svc['metadata']['namespace']}/{name}": (svc, [changed])})
            incremental.append(time.perf_counter() - t)
        return {"chains": len(ruleset.chains), "ruleset_bytes": len(ruleset.text),
                "generate_ms": round(generate * 1000, 1), "first_full_sync_ms": round(first * 1000, 1),
                "full_resync_ms_median": round(statistics.median(rewrites) * 1000, 1),
                "one_endpoint_change_sync_ms_median": round(statistics.median(incremental) * 1000, 1)}
    finally:
        nft.delete_table(table)


class RuleMonitor:
    """`nft monitor rules`: timestamps each committed rule as the kernel announces it (no polling)."""

    def __init__(self, table: str):
        self.table = table
        self.proc = subprocess.Popen(["nft", "monitor", "rules"], stdout=subprocess.PIPE, text=True)
        self.lines: "queue.Queue[tuple[float, str]]" = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        # The monitor subscribes asynchronously: commit a probe rule and wait for it, so no change is missed.
        probe = unique("pkube-probe")
        nft.apply_script(f"table ip {probe} {{\n  chain c {{\n    counter\n  }}\n}}\n")
        try:
            for _ in range(100):
                if self.wait_for("counter", timeout=0.1, table=probe) is not None:
                    break
                nft.apply_script(f"add rule ip {probe} c counter\n")
        finally:
            nft.delete_table(probe)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line))

    def wait_for(self, needle: str, timeout: float = 30, table: str | None = None) -> float | None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                when, line = self.lines.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                return None
            if line.startswith("add rule") and f" {table or self.table} " in line and needle in line:
                return when
        return None

    def close(self) -> None:
        _stop(self.proc)  # type: ignore[arg-type]


async def endpoint_changes(c: Client, ns: str, api_kubeconfig: str, tmp: str, services: int,
                           changes: int, interval: float) -> dict[str, Any]:
    table = unique("pkube-b")
    port = free_port()
    log = os.path.join(tmp, "proxy.log")
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "proxy", "--kubeconfig", api_kubeconfig,
                             "--table", table, "--node-name", "bench-node", "--node-ip", "127.0.0.1",
                             "--metrics-bind-address", f"127.0.0.1:{port}"],
                            cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 120:
            if proc.poll() is not None:
                raise RuntimeError(Path(log).read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            await asyncio.sleep(0.1)
        startup = time.monotonic() - started
        latencies = []
        monitor = RuleMonitor(table)
        try:
            # The first change is a warm-up, not measured: `nft monitor` reports the first events after it
            # subscribed up to ~20 s late on a table this size (seen with nftables 1.0.6; the rule itself was
            # live within ~0.4 s, checked by listing the chain).
            for n in range(-1, changes):
                i = random.randrange(services)
                eps = await c.get(ENDPOINT_SLICES, f"s{i}-x", ns)
                new_ip = f"10.99.{n // 250}.{n % 250 + 1}" if n >= 0 else "10.99.255.254"
                eps["endpoints"][0]["addresses"] = [new_ip]
                t = time.perf_counter()
                await c.update(ENDPOINT_SLICES, eps)
                live = await asyncio.to_thread(monitor.wait_for, f"{new_ip}:8080")
                if live is not None and n >= 0:
                    latencies.append(live - t)
                # Pace the changes: each one should be a lone change. Changes closer together than the proxy's
                # --min-sync-period (50 ms) are a burst, which it deliberately gathers into one transaction.
                await asyncio.sleep(interval)
        finally:
            monitor.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        def metric(name: str) -> float:
            m = re.search(rf"^{name} (\S+)$", metrics, re.M)
            return float(m.group(1)) if m else float("nan")
        count = metric("pkube_proxy_network_programming_duration_seconds_count")
        total = metric("pkube_proxy_network_programming_duration_seconds_sum")
        syncs = metric("pkube_proxy_sync_proxy_rules_duration_seconds_count")
        sync_sum = metric("pkube_proxy_sync_proxy_rules_duration_seconds_sum")
        return {"proxy_start_to_healthy_s": round(startup, 2), "changes": changes, "observed": len(latencies),
                "change_interval_s": interval,
                "change_to_rules_live_ms_p50": pct(latencies, 50), "change_to_rules_live_ms_p99": pct(latencies, 99),
                "change_to_rules_live_ms_max": round(max(latencies) * 1000, 2),
                "proxy_reported_programming_ms_mean": round(total / count * 1000, 2) if count else None,
                "proxy_reported_sync_ms_mean": round(sync_sum / syncs * 1000, 2) if syncs else None}
    finally:
        _stop(proc)
        # What `cluster down` runs: the table goes and route_localnet is given back.
        subprocess.run([sys.executable, "-m", "launcher", "proxy", "--cleanup", "--table", table], cwd=ROOT,
                       capture_output=True, timeout=60, check=True)


async def dns_load(api_kubeconfig: str, tmp: str, ns: str, services: int, queries: int) -> dict[str, Any]:
    port = free_port()
    log = os.path.join(tmp, "dns.log")
    # The upstream is a closed loopback port: this benchmark only asks cluster names.
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "dns", "--kubeconfig", api_kubeconfig,
                             "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{free_port()}"],
                            cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    loop = asyncio.get_running_loop()
    pending: dict[int, tuple[asyncio.Future[bytes], float]] = {}

    class Client_(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            entry = pending.pop(int.from_bytes(data[:2], "big"), None)
            if entry and not entry[0].done():
                entry[0].set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client_, remote_addr=("127.0.0.1", port))
    # Queries are packed once per name and only get a fresh id per send, so that the client, which shares
    # the machine with the server, spends as little CPU as possible per query.
    packed = [DNSRecord.question(f"s{i}.{ns}.svc.cluster.local").pack() for i in range(services)]
    try:
        async def ask(query: bytes, qid: int) -> tuple[float, bool]:
            fut: asyncio.Future[bytes] = loop.create_future()
            t = time.perf_counter()
            pending[qid] = (fut, t)
            transport.sendto(qid.to_bytes(2, "big") + query[2:])
            try:
                data = await asyncio.wait_for(fut, 2)
            except asyncio.TimeoutError:
                pending.pop(qid, None)
                return time.perf_counter() - t, False
            # NOERROR with one answer: rcode in the low bits of byte 3, answer count in bytes 6-7.
            return time.perf_counter() - t, data[3] & 0x0F == 0 and int.from_bytes(data[6:8], "big") == 1

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(Path(log).read_text()[-2000:])
            _, ok = await ask(packed[0], 1)
            if ok:
                break
        sem = asyncio.Semaphore(64)
        results: list[tuple[float, bool]] = []

        async def one(n: int) -> None:
            async with sem:
                results.append(await ask(random.choice(packed), 2 + n % 60000))
        t = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(queries)))
        elapsed = time.perf_counter() - t
        lat = [r[0] for r in results if r[1]]
        return {"queries": queries, "answered": len(lat), "queries_per_s": round(len(lat) / elapsed),
                "latency_ms_p50": pct(lat, 50), "latency_ms_p99": pct(lat, 99), "in_flight": 64}
    finally:
        transport.close()
        _stop(proc)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with control_plane("pkb-svc-", ["--service-cluster-ip-range", "172.31.0.0/16"]) as cp:
        api, tmp = cp.api, cp.tmp
        ns = unique("bench")
        async with Client(api.url, api.token) as c:
            t = time.perf_counter()
            await populate(c, ns, args.services, args.endpoints)
            create_s = time.perf_counter() - t
            svcs = (await c.list_all(SERVICES, ns))["items"]
            eps = (await c.list_all(ENDPOINT_SLICES, ns))["items"]
            result: dict[str, Any] = {"services": args.services, "endpoints_per_service": args.endpoints,
                                      "create_objects_s": round(create_s, 1)}
            result["full_sync"] = await asyncio.to_thread(full_sync, svcs, eps)
            result["endpoint_change"] = await endpoint_changes(c, ns, api.kubeconfig, tmp, args.services,
                                                               args.changes, args.change_interval)
            result["dns"] = await dns_load(api.kubeconfig, tmp, ns, args.services, args.queries)
            result["note"] = "shared 2-core machine; figures are pessimistic"
            return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--endpoints", type=int, default=10)
    p.add_argument("--changes", type=int, default=30)
    p.add_argument("--change-interval", type=float, default=0.1,
                   help="seconds between measured changes; below the proxy's 50 ms --min-sync-period they are "
                        "a burst, which it batches on purpose")
    p.add_argument("--queries", type=int, default=20000)
    args = p.parse_args()
    report(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
