"""How the control plane's cost grows with the cluster's size (issue 20, "How cost grows"); one JSON document and a
PNG plot. Figures only: nothing here passes or fails.

    .venv/bin/python -m bench.growth [--pods 1000,5000,10000] [--services 100,1000,5000] [--nodes 100]
                                     [--kubelets 2] [--out DIR]

Real etcd, apiserver, controller-manager and scheduler processes, and `pkube kubelet --hollow` processes holding
`--nodes` nodes (they run no containers, but report their pods Running and Ready as a kubelet does). The cluster
grows in steps: at step k it gets pods up to the k-th of `--pods` (busybox pods the scheduler places) and Services
up to the k-th of `--services` (ClusterIP Services without selectors, each with an EndpointSlice of 3 endpoints,
one in ten a NodePort). At every step, once the new pods are Ready:

- apiserver RSS (and every other component's), after the growth;
- steady state: each component's CPU and the apiserver's requests/s over 10 s of the grown cluster left alone;
- LIST latency, over one keep-alive connection as a client sees it (the whole body read): every pod at once
  (`GET /api/v1/pods`), the first page as kubectl asks it (`?limit=500`), every Service;
- GET of one pod, p50/p99 over 200 sequential requests;
- watch latency: a pod created in a namespace a watch is open on; time from the create request to its ADDED
  event (p50/p99 of 20);
- scheduler throughput: the step's new pods are created with the scheduler running; pods/s from the first to
  the last binding of the step (and the API's creates/s meanwhile), and seconds until all are Ready;
- proxy full sync: the rules for every Service generated and committed with `nft -f` into a new table (the
  in-process Proxier, first apply and a rewrite), and the ruleset's size.

"growth" gives, for each figure, the exponent e of figure ~ size^e between the first and the last step (size: pods,
or Services for the Service figures; for RSS the growth above the cluster's RSS before any pod; for the scheduler
its cost per pod, 1/throughput): e ≈ 0 is constant, 1 linear; above 1.15 it is called worse than linear. The plot
(DIR/growth.png with --out, else in the temp dir) shows each figure against its size. Needs root (nftables).
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pklib.client import Client  # noqa: E402
from pklib.resources import must_lookup  # noqa: E402
from bench.common import (ControlPlane, cancel_on_sigterm, control_plane, cpu_times, report, start_profiler,  # noqa: E402
                          status_mib, stop_profiler)
from bench.scheduler import (PodWatch, Procs, api_requests, create_many, pod, scrape, start_hollow_nodes,  # noqa: E402
                             wait_until)
from bench.services import full_sync, populate  # noqa: E402

PODS = must_lookup("pods")
NAMESPACES = must_lookup("namespaces")
SERVICES = must_lookup("services")
ENDPOINT_SLICES = must_lookup("endpointslices")
NS, SVC_NS, PROBE_NS = "growth", "growth-svc", "growth-probe"


class Http:
    """One keep-alive connection to the apiserver, with the bearer token: what a client's LIST or GET costs."""

    def __init__(self, url: str, token: str):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def get(self, path: str) -> tuple[float, int]:
        """Seconds from the request until the whole body was read, and the body's size."""
        t = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
        return elapsed, len(body)

    def close(self) -> None:
        self.conn.close()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def spread(samples: list[float]) -> dict[str, float]:
    """min/median/max (and p99 where there are enough samples) in milliseconds."""
    ordered = sorted(samples)
    out = {"min_ms": ms(ordered[0]), "median_ms": ms(statistics.median(ordered)), "max_ms": ms(ordered[-1])}
    if len(ordered) >= 20:
        out["p99_ms"] = ms(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))])
    return out


def reads(http: Http, path: str, n: int) -> dict[str, Any]:
    times, size = [], 0
    for _ in range(n):
        t, size = http.get(path)
        times.append(t)
    return {**spread(times), "bytes": size}


async def watch_latency(client: Client, samples: int) -> dict[str, float]:
    """Create → ADDED on an open watch, for pods that nothing else acts on (a scheduler name nobody serves)."""
    seen: dict[str, float] = {}
    opened = asyncio.Event()
    rv = (await client.list(PODS, PROBE_NS))["metadata"]["resourceVersion"]

    async def follow() -> None:
        opened.set()
        async for event in client.watch(PODS, PROBE_NS, resource_version=rv):
            if event["type"] == "ADDED":
                seen.setdefault(event["object"]["metadata"]["name"], time.perf_counter())

    task = asyncio.create_task(follow())
    await opened.wait()
    latencies = []
    try:
        for i in range(samples):
            name = f"probe-{int(time.time() * 1000)}-{i}"
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "busybox"}]}}
            t = time.perf_counter()
            await client.create(PODS, body, PROBE_NS)
            await wait_until(lambda: _has(seen, name), 30, f"the watch event of {name}", interval=0.001)
            latencies.append(seen[name] - t)
            await client.delete(PODS, name, PROBE_NS, grace_period_seconds=0)
    finally:
        task.cancel()
    return spread(latencies)


async def _has(seen: dict[str, float], name: str) -> bool:
    return name in seen


async def add_services(client: Client, have: int, want: int) -> None:
    if want > have:
        await populate(client, SVC_NS, want, 3, first=have)


async def add_pods(client: Client, watch: PodWatch, api_pid: int, have: int, want: int) -> dict[str, Any]:
    """The step's new pods, created with the scheduler running: creates/s, binding throughput, all Ready."""
    if want <= have:
        return {}
    names = {f"p-{i}" for i in range(have, want)}
    cpu0 = cpu_times(api_pid)[0]
    t0 = time.monotonic()
    await create_many(client, NS, [pod(i) for i in range(have, want)])
    created = time.monotonic() - t0
    api_cpu = cpu_times(api_pid)[0] - cpu0
    await wait_until(lambda: _done(watch.bound, names), 900, f"{want} pods bound", interval=0.1)
    await wait_until(lambda: _done(watch.ready, names), 900, f"{want} pods Ready", interval=0.2)
    bound = [watch.bound[n] for n in names]
    n = len(names)
    return {"added": n, "creates_per_s": round(n / created, 1),
            "apiserver_cpu_ms_per_create": round(1000 * api_cpu / n, 3),
            "scheduler_pods_per_s": round(n / max(max(bound) - min(bound), 1e-6), 1),
            "all_ready_after_first_create_s": round(max(watch.ready[n] for n in names) - t0, 2)}


async def _done(times: dict[str, float], names: set[str]) -> bool:
    return all(n in times for n in names)


def proxy_sync(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> dict[str, Any]:
    out = full_sync(services, slices)
    return {k: out[k] for k in ("chains", "ruleset_bytes", "generate_ms", "first_full_sync_ms",
                                "full_resync_ms_median")}


async def steady(cp: ControlPlane, pids: dict[str, int], seconds: float, profile: str | None = None) -> dict[str, Any]:
    """Each component's CPU (% of one core) and the apiserver's requests/s over `seconds` of the grown cluster
    left alone: the cost of its size when nothing changes (leases, node status, resyncs)."""
    port = int(cp.api.url.rsplit(":", 1)[1])
    before = {n: cpu_times(p)[0] for n, p in pids.items()}
    scraped = await asyncio.to_thread(scrape, port, cp.api.token)
    profiler = start_profiler(profile, cp.api.proc.pid)
    t = time.monotonic()
    await asyncio.sleep(seconds)
    after = await asyncio.to_thread(scrape, port, cp.api.token)
    elapsed = time.monotonic() - t
    requests = api_requests(scraped, after)
    return {"seconds": round(elapsed, 1), **({"apiserver_profile": stop_profiler(profiler, profile)}
                                             if profiler and profile else {}),
            "cpu_percent": {n: round(100 * (cpu_times(p)[0] - before[n]) / elapsed, 1) for n, p in pids.items()},
            "apiserver_requests_per_s": {k: round(v / elapsed, 1) for k, v in requests.items()}}


async def measure(cp: ControlPlane, client: Client, procs: Procs, pids: dict[str, int],
                  profile: str | None = None) -> dict[str, Any]:
    quiet = await steady(cp, pids, 10, profile)
    http = Http(cp.api.url, cp.api.token)
    try:
        lists = {
            "list_all_pods": await asyncio.to_thread(reads, http, "/api/v1/pods", 5),
            "list_pods_first_page_500": await asyncio.to_thread(reads, http, "/api/v1/pods?limit=500", 10),
            "list_all_services": await asyncio.to_thread(reads, http, "/api/v1/services", 5),
        }
        one = await asyncio.to_thread(reads, http, f"/api/v1/namespaces/{NS}/pods/p-0", 200)
    finally:
        http.close()
    services = (await client.list_all(SERVICES, SVC_NS))["items"]
    slices = (await client.list_all(ENDPOINT_SLICES, SVC_NS))["items"]
    return {"rss_mib": {name: status_mib(pid) for name, pid in pids.items()}, "steady": quiet,
            **lists, "get_one_pod": one,
            "watch_create_to_event": await watch_latency(client, 20),
            "proxy_full_sync": await asyncio.to_thread(proxy_sync, services, slices)}


def exponent(sizes: list[int], values: list[float]) -> float | None:
    if len(sizes) < 2 or values[0] <= 0 or values[-1] <= 0 or sizes[0] == sizes[-1]:
        return None
    return round(math.log(values[-1] / values[0]) / math.log(sizes[-1] / sizes[0]), 2)


def verdict(e: float | None) -> str:
    if e is None:
        return "n/a"
    return "constant" if e < 0.2 else "sublinear" if e < 0.85 else "linear" if e <= 1.15 else "worse than linear"


def series(steps: list[dict[str, Any]]) -> dict[str, tuple[str, list[float]]]:
    """Each figure per step, with what it is measured against."""
    base = steps[0]["rss_mib"]["apiserver"]
    rows = steps[1:]  # the first entry is the empty cluster
    return {
        "apiserver_rss_growth_mib": ("pods", [s["rss_mib"]["apiserver"] - base for s in rows]),
        "list_all_pods_ms": ("pods", [s["list_all_pods"]["median_ms"] for s in rows]),
        "list_pods_first_page_500_ms": ("pods", [s["list_pods_first_page_500"]["median_ms"] for s in rows]),
        "list_all_services_ms": ("services", [s["list_all_services"]["median_ms"] for s in rows]),
        "get_one_pod_p50_ms": ("pods", [s["get_one_pod"]["median_ms"] for s in rows]),
        "watch_create_to_event_p50_ms": ("pods", [s["watch_create_to_event"]["median_ms"] for s in rows]),
        "scheduler_ms_per_pod": ("pods", [1000 / s["pods_step"]["scheduler_pods_per_s"] for s in rows]),
        "apiserver_cpu_ms_per_create": ("pods", [s["pods_step"]["apiserver_cpu_ms_per_create"] for s in rows]),
        "proxy_full_sync_ms": ("services", [s["proxy_full_sync"]["first_full_sync_ms"] for s in rows]),
    }


def growth(steps: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name, (against, values) in series(steps).items():
        sizes = [s[against] for s in steps[1:]]
        e = exponent(sizes, values)
        out[name] = {"against": against, "values": [round(v, 3) for v in values], "exponent": e,
                     "verdict": verdict(e)}
    return out


def plot(steps: list[dict[str, Any]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt
    figures = series(steps)
    fig, axes = plt.subplots(3, 3, figsize=(14, 11))
    for ax, (name, (against, values)) in zip(axes.flat, figures.items()):
        ax.plot([s[against] for s in steps[1:]], values, marker="o")
        ax.set_title(name.replace("_", " "), fontsize="medium")
        ax.set_xlabel(against)
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    fig.suptitle("pkube control plane: cost against cluster size (bench.growth)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    cancel_on_sigterm()
    pod_sizes = [int(x) for x in args.pods.split(",")]
    svc_sizes = [int(x) for x in args.services.split(",")]
    if len(pod_sizes) != len(svc_sizes) or pod_sizes != sorted(pod_sizes) or svc_sizes != sorted(svc_sizes):
        raise SystemExit("bench.growth: --pods and --services need as many sizes each, in increasing order")
    with control_plane("pkgrowth-", keep=args.keep_logs) as cp:
        procs = Procs(cp.tmp, cp.api.url, cp.api.token)
        client = Client(cp.api.url, cp.api.token)
        try:
            return await _bench(args, cp, procs, client, pod_sizes, svc_sizes)
        finally:
            await client.close()
            procs.stop_all()


async def _bench(args: argparse.Namespace, cp: ControlPlane, procs: Procs, client: Client,
                 pod_sizes: list[int], svc_sizes: list[int]) -> dict[str, Any]:
    cm = procs.start("controller-manager", "controller-manager", "--cluster-cidr", "10.128.0.0/12")
    sched = procs.start("scheduler", "scheduler")
    await start_hollow_nodes(procs, client, args.nodes, args.kubelets, cp.tmp)
    for ns in (NS, PROBE_NS):
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await client.create(PODS, pod(0), NS)  # GET's target from the first step on; counted in the first step
    pids = {"apiserver": cp.api.proc.pid, "etcd": cp.etcd.proc.pid, "controller_manager": cm.pid,
            "scheduler": sched.pid, **{n: p.pid for n, p in procs.procs.items() if n.startswith("hollow-")}}
    watch = PodWatch(client, NS)
    watch_task = asyncio.create_task(watch.informer.run())
    await watch.informer.synced.wait()
    await wait_until(lambda: _done(watch.ready, {"p-0"}), 120, "the first pod Ready", interval=0.1)
    steps: list[dict[str, Any]] = [{"pods": 1, "services": 0, "rss_mib": {n: status_mib(p) for n, p in pids.items()}}]
    have_pods, have_svcs = 1, 0
    try:
        for want_pods, want_svcs in zip(pod_sizes, svc_sizes):
            print(f"bench.growth: growing to {want_pods} pods and {want_svcs} Services", file=sys.stderr)
            step: dict[str, Any] = {"pods": want_pods, "services": want_svcs}
            step["pods_step"] = await add_pods(client, watch, cp.api.proc.pid, have_pods, want_pods)
            t = time.monotonic()
            await add_services(client, have_svcs, want_svcs)
            step["services_step_s"] = round(time.monotonic() - t, 2)
            have_pods, have_svcs = want_pods, want_svcs
            last = want_pods == pod_sizes[-1]
            step.update(await measure(cp, client, procs, pids, args.profile if last else None))
            steps.append(step)
            print(f"bench.growth: {json.dumps(step)}", file=sys.stderr)
    finally:
        watch_task.cancel()
    plot_path = str(Path(args.out) / "growth.png") if args.out else os.path.join(
        tempfile.gettempdir(), f"pkube-growth-{int(time.time())}.png")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    plot(steps, plot_path)
    result = {"nodes": args.nodes, "hollow_kubelet_processes": args.kubelets, "cpus": os.cpu_count(),
              "growth": growth(steps), "steps": steps, "plot": plot_path}
    if args.out:
        (Path(args.out) / "growth.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", default="1000,5000,10000", help="pod counts of the steps, comma-separated")
    p.add_argument("--services", default="100,1000,5000", help="Service counts of the steps, as many as --pods")
    p.add_argument("--nodes", type=int, default=100, help="hollow nodes (110 pods each at most)")
    p.add_argument("--kubelets", type=int, default=2, help="hollow kubelet processes sharing the nodes")
    p.add_argument("--out", help="directory for growth.json and growth.png")
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--profile", metavar="FILE", help="py-spy the apiserver during the last step's steady window "
                   "into FILE (.svg flame graph, .json speedscope, else raw collapsed stacks; the `bench` extra)")
    args = p.parse_args()
    try:
        report(asyncio.run(bench(args)))
    except asyncio.CancelledError:
        sys.exit("bench.growth: terminated (everything it started is stopped)")


if __name__ == "__main__":
    main()
