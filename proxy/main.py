"""`pkube proxy`: programs Services into nftables on this node.

    pkube proxy --kubeconfig FILE [--node-name N] [--node-ip IP] [--table pkube-proxy] [--sync-period 30s]
                [--metrics-bind-address 127.0.0.1:10249] [--cleanup]

Informers keep Services and EndpointSlices (discovery.k8s.io/v1, merged per Service by their
`kubernetes.io/service-name` label) in memory; every change marks its Service dirty, and the sync loop
syncs at most once per --min-sync-period (default 50 ms): a lone change goes out at once, a burst of
changes becomes one nft transaction that rewrites only the dirty Services (a partial sync). At start,
after a failed transaction and every --sync-period the whole table is reconciled against the kernel (a
full sync). The rules stay in place when the proxy stops (connections keep working across restarts, as
with kube-proxy); `--cleanup` deletes the table, gives back `route_localnet` (see localnet.py) and exits.

LoadBalancer Services get every node's address (their InternalIPs, sorted; this node's --node-ip while no Node
has one) as `status.loadBalancer.ingress`, as k3s' ServiceLB does, and every node serves them on its own. Every
node's proxy computes the same list from the Nodes, so several writers agree.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import socket
import time
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pklib.client import Client
from pklib.component import (ConfigError, add_client_flags, make_client as _make_client, run_until_signalled,
                             serve_http, setup_logging)
from pklib.errors import ApiError, ConnectionFailed, is_conflict, is_not_found
from pklib.informer import Handler, Informer, InformerFactory, Obj
from pklib.objects import key_of
from pklib.kubeconfig import KubeconfigError
from pklib.resources import ENDPOINTSLICES, NODES, PODS, SERVICES

from . import hostports, localnet, netpol, nft, rules, slices
from .proxier import Metrics, Proxier
from pklib.timeouts import wait_for

log = logging.getLogger("proxy")

TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


def duration(text: str) -> float:
    """Seconds from "30s", "2m", "1h", "500ms" or a bare number."""
    t = text.strip()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], factor
            break
    else:
        scale = 1.0
    try:
        value = float(t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 30s, 500ms, 2m)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive, got {text!r}")
    return value


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def table_name(text: str) -> str:
    try:
        return rules.valid_table_name(text)
    except rules.RulesError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkube proxy", description="Programs Services into nftables.")
    add_client_flags(p)
    p.add_argument("--node-name", default=socket.gethostname(), help="this node (for externalTrafficPolicy Local)")
    p.add_argument("--node-ip", help="address for LoadBalancer ingress (default: the Node's InternalIP, "
                                     "else the source address of the default route)")
    p.add_argument("--table", type=table_name, default="pkube-proxy", help="nftables table (ip family) to own")
    p.add_argument("--sync-period", type=duration, default=30.0, help="full reconcile interval, e.g. 30s")
    p.add_argument("--min-sync-period", type=duration, default=0.05,
                   help="at most one sync per this interval; changes within it share one transaction")
    p.add_argument("--metrics-bind-address", type=host_port, default=("127.0.0.1", 10249),
                   help="HOST:PORT of /metrics and /healthz (port 0: not served)")
    p.add_argument("--network-policy", action=argparse.BooleanOptionalAction, default=True,
                   help="enforce NetworkPolicies for this node's pods (table pkube-netpol, or <table>-netpol)")
    p.add_argument("--cleanup", action="store_true",
                   help="delete the nftables tables, restore route_localnet if no other proxy needs it, and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def make_client(config: argparse.Namespace) -> Client:
    return _make_client(config, "pkube-proxy")


def default_route_source() -> str | None:
    """The address the kernel would use towards the default route (a netlink lookup; no packet is sent)."""
    from pyroute2 import IPRoute
    try:
        with IPRoute() as ipr:
            for route in ipr.route("get", dst="198.51.100.1"):
                src = route.get_attr("RTA_PREFSRC")
                if src:
                    return str(src)
    except Exception as e:  # noqa: BLE001 - no default route: LoadBalancer ingress just stays empty
        log.info("no default route to take a node address from: %s", e)
    return None


async def node_ip(client: Client, config: argparse.Namespace) -> str | None:
    if config.node_ip:
        return str(config.node_ip)
    try:
        node = await client.get(NODES, config.node_name)
        for addr in (node.get("status") or {}).get("addresses") or []:
            if addr.get("type") == "InternalIP":
                return str(addr["address"])
    except ApiError as e:
        if not is_not_found(e):
            raise
    return await asyncio.to_thread(default_route_source)


def change_time(stamp: str | None, wall: float, monotonic: float) -> float:
    """When a change to program happened, on the monotonic clock (now: `monotonic`), for the programming latency:
    now, or earlier when the endpoint slice controller stamped the time of the pod change that caused it. That
    stamp is wall-clock time; only its age (from `wall`, the wall clock now) is used, so a step of the wall clock
    between the change and its sync does not turn into a latency."""
    if stamp:
        try:
            age = wall - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            return monotonic - max(0.0, age)
        except ValueError:
            pass
    return monotonic


class ProxyServer:
    """Informers -> dirty Service keys -> batched syncs (partial, or full at start and periodically);
    plus LoadBalancer status."""

    def __init__(self, client: Client, config: argparse.Namespace, metrics: Metrics):
        self.client = client
        self.config = config
        self.metrics = metrics
        self.proxier = Proxier(config.table, config.node_name, metrics)
        self.informers = InformerFactory(client)
        self.services = self.informers.informer(SERVICES)
        self.slices = self.informers.informer(ENDPOINTSLICES)
        self.nodes = self.informers.informer(NODES)  # their addresses: LoadBalancer ingress
        # This node's pods, for their hostPorts (hostports.py).
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={config.node_name}")
        self._pods_task: asyncio.Task[None] | None = None
        self.node_ip: str | None = None
        self.localnet_on = False  # route_localnet is set after the first sync (localnet.py)
        self._dirty = asyncio.Event()
        self._dirty_keys: set[str] = set()  # Services whose rules may have changed since the last sync
        self._dirty_pods: set[str] = set()  # pods ("ns/name") whose hostPorts may have changed
        # Service key -> when its change happened, for the programming-latency metric (earliest pending).
        self._pending: dict[str, float] = {}
        self.services.add_handler(Handler(self._svc_changed, lambda o, n: self._svc_changed(n), self._svc_changed))
        self.slices.add_handler(Handler(self._slice_changed, self._slice_moved, self._slice_changed))
        self.pods.add_handler(Handler(self._pod_changed, lambda o, n: self._pod_changed(n), self._pod_changed))

    def start_informers(self) -> None:
        self.informers.start()
        self._pods_task = asyncio.create_task(self.pods.run(), name="informer:pods")

    async def wait_synced(self) -> None:
        await self.informers.wait_synced()
        await self.pods.wait_synced()

    async def stop_informers(self) -> None:
        await self.informers.stop()
        if self._pods_task is not None:
            self._pods_task.cancel()
            await asyncio.gather(self._pods_task, return_exceptions=True)

    def _pod_changed(self, pod: Obj) -> None:
        # Most pods publish no hostPort: only those that do, or did, cost a sync.
        if hostports.host_ports(pod) or hostports.pod_key(pod) in self.proxier.state.fragments:
            self._dirty_pods.add(key_of(pod))
            self._dirty.set()

    def _mark(self, key: str, when: float) -> None:
        self._dirty_keys.add(key)
        # Objects of the initial list are not "changes": like kube-proxy, only measure after the first sync.
        if self.proxier.last_sync:
            self._pending.setdefault(key, when)
        self._dirty.set()

    def _svc_changed(self, svc: Obj) -> None:
        self._mark(key_of(svc), time.monotonic())

    def _slice_moved(self, old: Obj, new: Obj) -> None:
        # A slice relabelled to another Service changes both.
        before = slices.service_key(old)
        if before is not None and before != slices.service_key(new):
            self._mark(before, time.monotonic())
        self._slice_changed(new)

    def _slice_changed(self, slice_: Obj) -> None:
        key = slices.service_key(slice_)
        if key is None:
            return
        # The endpoint slice controller may stamp the time of the pod change that caused this; prefer it.
        stamp = ((slice_.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_ANNOTATION)
        self._mark(key, change_time(stamp, time.time(), time.monotonic()))

    def _slices_of(self, key: str) -> list[Obj]:
        ns, _, name = key.partition("/")
        return [s for s in self.slices.store.by_index("label", f"{slices.SERVICE_NAME_LABEL}={name}")
                if (s.get("metadata") or {}).get("namespace") == ns]

    async def _sync(self, full: bool) -> None:
        # Snapshot the caches here, in the event loop that mutates them; the thread only reads the snapshot.
        pending, self._pending = self._pending, {}
        dirty, self._dirty_keys = self._dirty_keys, set()
        dirty_pods, self._dirty_pods = self._dirty_pods, set()
        try:
            # nft and rule generation are blocking; keep the informers' event loop free meanwhile.
            if full:
                await asyncio.to_thread(self.proxier.sync_full, self.services.store.list(), self.slices.store.list(),
                                        self.pods.store.list())
            else:
                snapshot = {key: (self.services.store.get(key), self._slices_of(key)) for key in dirty}
                pods = {f"pod:{key}": self.pods.store.get(key) for key in dirty_pods}
                await asyncio.to_thread(self.proxier.sync_partial, snapshot, pods)
        except nft.NftError:
            # Keep the changes pending so the next attempt still reports their latency.
            for k, v in pending.items():
                self._pending.setdefault(k, v)
            self._dirty_keys |= dirty
            self._dirty_pods |= dirty_pods
            raise
        now = time.monotonic()
        for when in pending.values():
            self.metrics.programming_latency.observe(max(0.0, now - when))

    async def sync_loop(self, ready: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_full = 0.0
        failures = 0
        while True:
            full = loop.time() >= next_full or self.proxier.needs_full
            self._dirty.clear()
            last_start = loop.time()
            try:
                await self._sync(full)
                if not self.localnet_on:
                    # Only once the table (with its drop rule for 127.0.0.0/8 from outside `lo`) is in place.
                    await asyncio.to_thread(localnet.enable, self.config.table)
                    self.localnet_on = True
                failures = 0
                if full:
                    next_full = loop.time() + self.config.sync_period
                ready.set()
            except nft.NftError as e:
                failures += 1
                log.error("sync failed (attempt %d): %s", failures, e)
                self._dirty.set()
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            try:
                await wait_for(self._dirty.wait(), max(0.0, next_full - loop.time()))
            except asyncio.TimeoutError:
                continue
            # At most one sync per --min-sync-period: a change after a quiet spell is applied at once, the
            # changes of a burst are gathered into the next transaction (kube-proxy's bounded-frequency runner).
            await asyncio.sleep(max(0.0, last_start + self.config.min_sync_period - loop.time()))

    def loadbalancer_ingress(self) -> list[dict[str, str]]:
        """Every node's InternalIP, sorted (the same list in every node's proxy); this node's address when no Node
        has one (a proxy run without Nodes)."""
        ips = sorted({a["address"] for n in self.nodes.store.list()
                      for a in (n.get("status") or {}).get("addresses") or []
                      if a.get("type") == "InternalIP" and a.get("address")},
                     key=lambda ip: tuple(int(x) for x in ip.split(".")) if ip.count(".") == 3 else (256, ip))
        if not ips and self.node_ip:
            ips = [self.node_ip]
        return [{"ip": ip} for ip in ips]

    async def loadbalancer_loop(self) -> None:
        """Give LoadBalancer Services the nodes' addresses, through the status subresource, when they differ."""
        wake = asyncio.Event()
        self.services.add_handler(Handler(lambda o: wake.set(), lambda o, n: wake.set()))
        self.nodes.add_handler(Handler(lambda o: wake.set(), lambda o, n: wake.set(), lambda o: wake.set()))
        while True:
            await wake.wait()
            wake.clear()
            ours = self.loadbalancer_ingress()
            if not ours:
                continue
            for svc in self.services.store.list():
                spec, status = svc.get("spec") or {}, svc.get("status") or {}
                current = (status.get("loadBalancer") or {}).get("ingress")
                if spec.get("loadBalancerClass"):
                    continue  # another load balancer implementation owns it
                # A Service that stopped being a LoadBalancer loses the addresses we gave it (ours, or an older
                # list of ours: only node addresses)
                nodes = {i["ip"] for i in ours}
                was_ours = bool(current) and all((i or {}).get("ip") in nodes for i in current or [])
                want = ours if spec.get("type") == "LoadBalancer" else (None if current == ours or was_ours
                                                                         else current)
                if current == want:
                    continue
                body = copy.deepcopy(svc)
                body.setdefault("status", {})["loadBalancer"] = {"ingress": want} if want else {}
                try:
                    await self.client.update_status(SERVICES, body)
                except ApiError as e:
                    if e.code == 403:  # a joined machine's proxy runs as its node: the `cluster up` machine's write
                        log.info("not writing LoadBalancer status (%s); the proxies of the first machine do",
                                 e.message)
                        return
                    if not (is_conflict(e) or is_not_found(e)):
                        log.warning("cannot set the load balancer status of %s: %s", key_of(svc), e.message)
                    # A conflict means a newer version is on its way through the informer, which wakes us.

    def healthy(self) -> bool:
        last = self.proxier.last_sync
        return bool(last) and time.monotonic() - last < 2 * self.config.sync_period + 10


async def serve_metrics(server: ProxyServer, host: str, port: int) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(server.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok = server.healthy()
        return web.Response(text="ok" if ok else "rules not synced recently", status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return await serve_http(app, host, port)


async def run(config: argparse.Namespace, ready: asyncio.Event) -> None:
    """Run until cancelled; `ready` is set after the first successful sync."""
    if config.cleanup:
        await asyncio.to_thread(nft.delete_table, config.table)
        await asyncio.to_thread(nft.delete_table, netpol.table_for(config.table))
        await asyncio.to_thread(localnet.restore, config.table, nft.proxy_tables)
        ready.set()
        return
    client = make_client(config)
    server = ProxyServer(client, config, Metrics())
    policies = (netpol.PolicyEnforcer(client, netpol.table_for(config.table), config.node_name,
                                      config.min_sync_period, server.metrics) if config.network_policy else None)
    runner: web.AppRunner | None = None
    try:
        host, port = config.metrics_bind_address
        if port:
            runner = await serve_metrics(server, host, port)
        server.node_ip = await node_ip(client, config)
        server.start_informers()
        await server.wait_synced()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(server.sync_loop(ready), name="sync")
            tg.create_task(server.loadbalancer_loop(), name="loadbalancer")
            if policies is not None:
                tg.create_task(policies.run(asyncio.Event()), name="netpol")
    finally:
        await server.stop_informers()
        if policies is not None:
            await policies.remove()
        if runner is not None:
            await runner.cleanup()
        await client.close()


# What ends the process with one `error: ...` line instead of a traceback (also used by `pkube group`).
REPORT: tuple[type[BaseException], ...] = (ConfigError, KubeconfigError, ConnectionFailed, nft.NftError, OSError)


def main(argv: list[str] | None = None) -> int:
    config = build_parser().parse_args(argv)
    setup_logging(config.verbose)
    return run_until_signalled(lambda: run(config, asyncio.Event()),
                               report=REPORT)
