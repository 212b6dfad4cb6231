"""Scheduler benchmark with hollow nodes (prints one JSON document; never pass/fail).

    .venv/bin/python -m bench.scheduler [--nodes 1000] [--pods 5000] [--replicas 1000] [--kubelets 2]
                                        [--etcd-members N]
    .venv/bin/python -m bench.scheduler --kubelets 0   # nodes as objects only, as kube-scheduler's scheduler_perf

Real etcd + apiserver + controller-manager + scheduler processes and `pkube kubelet --hollow`
processes holding the nodes; with `--etcd-members N` etcd is an N-member cluster started with the flags of
`pkctl cluster up --control-planes N` (client and peer TLS), and the one apiserver is given all N members'
URLs (without the flag: one plain-HTTP etcd, as before). Measures:
- scheduler throughput: PODS pending pods are created while no scheduler runs; then the
  scheduler starts, and we time from its first binding to its last (and from its start), as the bench's own
  watch sees them and as the apiserver answered them (its binding count, sampled every 0.2 s: a watch sees
  them late by as much as the apiserver's watch cache trails etcd);
- time from creating a Deployment of REPLICAS to all its pods Running and Ready;
- peak RSS (VmHWM) of the scheduler, the controller-manager, the apiserver and etcd;
- with `--kubelets 0` the nodes are Node objects the bench writes (Ready, the hollow nodes' capacity) and nothing
  else runs: no kubelet, no controller-manager, no lease renewals or pod status updates, which is how
  kube-scheduler's own benchmark (scheduler_perf, the source of its CI throughput floor) measures; it implies
  `--binding-only`. The figure then shows the scheduler and apiserver alone, not sharing the two cores with the
  hollow nodes;
- for comparison, the decision alone (filter + score + assume) on synthetic nodes in-process,
  and the scheduler's own algorithm time per pod from its /metrics during the run.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

from pklib.client import Client
from pklib.informer import Handler, Informer, Obj
from pklib.resources import Resource, must_lookup
from kubelet.hollow import HollowConfig, HollowMachine
from scheduler.algorithm import DEFAULT_WEIGHTS, schedule
from scheduler.cache import Cache
from scheduler.framework import pod_info
from bench.common import (ControlPlane, cancel_on_sigterm, control_plane, cpu_times, report, start_profiler,
                          status_mib, stop_profiler)
from bench.ha import etcd_leader
from tests.support.controlplane import ROOT, _stop
from tests.util import free_port

PODS = must_lookup("pods")
NODES = must_lookup("nodes")
NAMESPACES = must_lookup("namespaces")
DEPLOYMENTS = must_lookup("deployments")


class Procs:
    def __init__(self, tmp: str, url: str, token: str):
        self.tmp, self.url, self.token = tmp, url, token
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, component: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.tmp, f"{name}.log"), "wb")
        proc = subprocess.Popen([sys.executable, "-m", "launcher", component, "--server", self.url,
                                 "--token", self.token, *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs.values())):
            _stop(proc)


def scrape(port: int, token: str | None = None) -> dict[str, float]:
    """A component's /metrics (the scheduler's, or with `token` the apiserver's) as {series: value}."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def api_requests(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """Apiserver requests served between two scrapes, by `VERB resource`, most frequent first."""
    counts: dict[str, int] = {}
    for series, labels, value in _requests(after):
        key = f"{labels['verb']} {labels['resource']}"
        counts[key] = counts.get(key, 0) + round(value - before.get(series, 0.0))
    return dict(sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: -kv[1]))


def _requests(metrics: dict[str, float]) -> list[tuple[str, dict[str, str], float]]:
    """The apiserver_request_total series of a scrape: (series, its labels, value)."""
    return [(series, {k: v.strip('"') for k, v in (part.split("=", 1)
                                                    for part in series[series.index("{") + 1:-1].split(","))}, value)
            for series, value in metrics.items() if series.startswith("apiserver_request_total{")]


def bindings_made(metrics: dict[str, float]) -> int:
    """Successful POST pods/binding the apiserver has answered (201), from its /metrics."""
    return round(sum(value for _, labels, value in _requests(metrics)
                     if labels["resource"] == "pods/binding" and labels["code"] == "201"))


async def count_bindings(port: int, token: str, out: list[tuple[float, int]]) -> None:
    """Append (time, bindings made) every 0.2 s: when the apiserver answered them, whatever its watches' lag."""
    while True:
        out.append((time.monotonic(), bindings_made(await asyncio.to_thread(scrape, port, token))))
        await asyncio.sleep(0.2)


def algorithm_only(nodes: int, pods: int) -> float:
    """Pods/s of the filter+score decision alone (with assume), in this process, on synthetic nodes."""
    cache = Cache()
    for i in range(nodes):
        cache.set_node({"metadata": {"name": f"n{i}", "labels": {"kubernetes.io/hostname": f"n{i}"}},
                        "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}})
    infos = []
    for i in range(pods):
        body = pod(i)
        body["metadata"].update(namespace="bench", uid=f"uid-{i}")
        infos.append(pod_info(body))
    node_list, start = cache.nodes(), 0
    t0 = time.perf_counter()
    for info in infos:
        decision = schedule(info, node_list, DEFAULT_WEIGHTS, start)
        start = (start + decision.evaluated) % len(node_list)
        assert decision.node is not None
        cache.assume(info, decision.node)
    return pods / (time.perf_counter() - t0)


async def scheduler_startup(port: int, started: float, timeout: float = 60) -> dict[str, float]:
    """Seconds from the scheduler's start until its /healthz answers and until its queue holds the pods."""
    out: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            series = await asyncio.to_thread(scrape, port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        out.setdefault("http_up_after_start_s", round(time.monotonic() - started, 2))
        if any(k.startswith("scheduler_pending_pods") and v for k, v in series.items()) or any(
                k.startswith("scheduler_schedule_attempts_total") and v for k, v in series.items()):
            out["pods_queued_after_start_s"] = round(time.monotonic() - started, 2)
            return out
        await asyncio.sleep(0.01)
    return out


async def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def pod(i: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{i}", "labels": {"bench": "sched"}},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def node_object(i: int) -> Obj:
    """A Ready node with a hollow node's labels and capacity (kubelet/hollow.py), for `--kubelets 0`."""
    machine = HollowMachine(f"node-{i}", HollowConfig())
    capacity, allocatable = machine.capacity()
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": machine.name, "labels": machine.labels()},
            "status": {"capacity": capacity, "allocatable": allocatable,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


async def create_many(client: Client, ns: str | None, bodies: list[Obj], resource: Resource = PODS,
                      parallel: int = 32) -> None:
    sem = asyncio.Semaphore(parallel)

    async def one(body: Obj) -> None:
        async with sem:
            await client.create(resource, body, ns)

    await asyncio.gather(*(one(b) for b in bodies))


class PodWatch:
    """Times when pods of a namespace get bound and become Ready, from a real informer."""

    def __init__(self, client: Client, ns: str):
        self.bound: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.informer = Informer(client, PODS, ns)
        self.informer.add_handler(Handler(self._seen, lambda old, new: self._seen(new)))

    def _seen(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        now = time.monotonic()
        if pod["spec"].get("nodeName"):
            self.bound.setdefault(name, now)
        if any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or []):
            self.ready.setdefault(name, now)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    cancel_on_sigterm()
    with control_plane("pkbench-", keep=args.keep_logs, etcd_members=args.etcd_members) as cp:
        return await _bench(args, cp)


async def _bench(args: argparse.Namespace, cp: ControlPlane) -> dict[str, Any]:
    tmp, etcd, api = cp.tmp, cp.etcd, cp.api
    procs = Procs(tmp, api.url, api.token)
    client = Client(api.url, api.token)
    etcds = {f"etcd-{name}": e.proc.pid for name, e in cp.members.items()} if cp.members else {"etcd": etcd.proc.pid}
    result: dict[str, Any] = {"nodes": args.nodes, "pods": args.pods, "replicas": args.replicas,
                              "etcd_members": len(etcds), "etcd_tls": bool(cp.members),
                              "hollow_kubelet_processes": args.kubelets, "cpus": os.cpu_count(),
                              "algorithm_only_pods_per_s": round(algorithm_only(args.nodes, args.pods), 1)}
    try:
        started = time.monotonic()
        cm = None
        if args.kubelets:
            cm = procs.start("controller-manager", "controller-manager", "--cluster-cidr", "10.128.0.0/12")
            await start_hollow_nodes(procs, client, args.nodes, args.kubelets, str(tmp), interval=2)
        else:
            await create_many(client, None, [node_object(i) for i in range(args.nodes)], NODES)
        result["nodes_registered_s"] = round(time.monotonic() - started, 1)

        ns = "bench"
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        watch = PodWatch(client, ns)
        watch_task = asyncio.create_task(watch.informer.run())
        await watch.informer.synced.wait()
        t0 = time.monotonic()
        await create_many(client, ns, [pod(i) for i in range(args.pods)])
        result["create_pods_s"] = round(time.monotonic() - t0, 1)

        if cp.home and cp.cluster and len(etcds) > 1:
            result["etcd_leader"] = f"etcd-{etcd_leader(cp.home, cp.cluster)}"
        pids = {"apiserver": api.proc.pid, **etcds, **({"controller_manager": cm.pid} if cm else {}),
                **{name: proc.pid for name, proc in procs.procs.items() if name.startswith("hollow-")}}
        cpu_before = {name: cpu_times(pid)[0] for name, pid in pids.items()}
        api_port = int(api.url.rsplit(":", 1)[1])
        api_before = scrape(api_port, api.token)
        profiler = start_profiler(args.profile, api.proc.pid)
        counted: list[tuple[float, int]] = []
        counter = asyncio.create_task(count_bindings(api_port, api.token, counted))
        sched_start = time.monotonic()
        metrics_port = free_port()
        sched = procs.start("scheduler", "scheduler", "--port", str(metrics_port))
        pids["scheduler"] = sched.pid
        sched_profiler = start_profiler(args.profile_scheduler, sched.pid)
        cpu_before["scheduler"] = 0.0
        startup = await scheduler_startup(metrics_port, sched_start)
        await wait_until(lambda: _done(len(watch.bound), args.pods), 900, f"{args.pods} pods bound", interval=0.2)
        first, last = min(watch.bound.values()), max(watch.bound.values())
        counter.cancel()
        base = counted[0][1] if counted else 0
        made = [(t, n - base) for t, n in counted]
        answered_first = next((t for t, n in made if n > 0), last)
        answered_all = next((t for t, n in made if n >= args.pods), last)
        result["scheduling"] = {
            "pods_per_s_first_to_last_binding": round(args.pods / max(last - first, 1e-6), 1),
            "pods_per_s_including_scheduler_start": round(args.pods / (last - sched_start), 1),
            "first_binding_after_start_s": round(first - sched_start, 2),
            # The same from the apiserver's count of bindings it answered (sampled every 0.2 s): the figures above
            # are when the bench's own watch saw them, late by as much as the watch cache trails etcd.
            "pods_per_s_first_to_last_binding_answered": round(args.pods / max(answered_all - answered_first, 0.2), 1),
            "first_binding_answered_after_start_s": round(answered_first - sched_start, 2),
            # Where the time to the first binding goes: process start and imports (until /healthz answers),
            # then the informers' lists (until the pending pods are in the queue).
            **startup,
            "all_bound_s": round(last - sched_start, 2),
            # Where the time went: CPU seconds each process used while the pods were being bound
            # (two cores are shared by all of them, and by anything else on the machine).
            "cpu_s_while_binding": {name: round(cpu_times(pid)[0] - cpu_before[name], 1)
                                    for name, pid in pids.items()},
        }
        # What the apiserver's CPU above was spent on (leases and node status keep coming meanwhile).
        result["scheduling"]["apiserver_requests_while_binding"] = api_requests(api_before,
                                                                                 scrape(api_port, api.token))
        # Per request served meanwhile: robust to how long the binding took (leases keep renewing all along).
        served_n = sum(result["scheduling"]["apiserver_requests_while_binding"].values())
        result["scheduling"]["apiserver_cpu_ms_per_request"] = round(
            1000 * result["scheduling"]["cpu_s_while_binding"]["apiserver"] / max(served_n, 1), 3)
        if profiler:
            result["scheduling"]["apiserver_profile"] = stop_profiler(profiler, args.profile)
        if sched_profiler:
            result["scheduling"]["scheduler_profile"] = stop_profiler(sched_profiler, args.profile_scheduler)
        algo = scrape(metrics_port)
        runs = algo.get("scheduler_scheduling_algorithm_duration_seconds_count") or 1
        result["scheduling"]["algorithm_ms_per_pod"] = round(
            1000 * algo.get("scheduler_scheduling_algorithm_duration_seconds_sum", 0) / runs, 3)
        if args.binding_only or cm is None:
            return result
        await wait_until(lambda: _done(len(watch.ready), args.pods), 900, f"{args.pods} pods Ready", interval=0.5)
        result["scheduling"]["all_running_after_start_s"] = round(max(watch.ready.values()) - sched_start, 2)
        watch_task.cancel()

        ns2 = "bench-deploy"
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns2}})
        watch2 = PodWatch(client, ns2)
        watch2_task = asyncio.create_task(watch2.informer.run())
        await watch2.informer.synced.wait()
        labels = {"app": "bench"}
        t0 = time.monotonic()
        await client.create(DEPLOYMENTS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
            "spec": {"replicas": args.replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod(0)["spec"]}}}, ns2)
        try:
            await wait_until(lambda: _done(len(watch2.ready), args.replicas), args.deployment_timeout,
                             f"{args.replicas} deployment pods Ready", interval=0.2)
            result["deployment"] = {"replicas_running_s": round(max(watch2.ready.values()) - t0, 2),
                                    "all_bound_s": round(max(watch2.bound.values()) - t0, 2)}
        except TimeoutError as e:
            result["deployment"] = {"error": str(e), "pods_created": len(watch2.informer.store),
                                    "pods_ready": len(watch2.ready)}
        watch2_task.cancel()
        peaks = {"scheduler": sched.pid, "controller_manager": cm.pid, "apiserver": api.proc.pid, **etcds,
                 **{name: proc.pid for name, proc in procs.procs.items() if name.startswith("hollow-")}}
        result["peak_rss_mib"] = {name: status_mib(pid, "VmHWM") for name, pid in peaks.items()}
        result["rss_mib_at_end"] = {name: status_mib(pid) for name, pid in etcds.items()}
        # etcd's CPU over the whole run (nodes joining, pods created, bound, Ready, the Deployment)
        result["etcd_cpu_s_total"] = {name: round(cpu_times(pid)[0], 1) for name, pid in etcds.items()}
        return result
    finally:
        await client.close()
        procs.stop_all()


async def start_hollow_nodes(procs: Procs, client: Client, nodes: int, kubelets: int, root: str,
                             interval: float = 1) -> None:
    """`nodes` hollow nodes shared by `kubelets` processes (named hollow-K in `procs`); returns once every one of
    them is registered with a podCIDR (the controller-manager gives those)."""
    per = -(-nodes // kubelets)
    for k in range(kubelets):
        procs.start(f"hollow-{k}", "kubelet", "--hollow", "--count", str(min(per, nodes - k * per)),
                    "--name-prefix", f"hollow-{k}", "--root-dir", root)

    async def registered() -> bool:
        items = (await client.list_all(NODES)).get("items") or []
        return sum(1 for n in items if (n.get("spec") or {}).get("podCIDR")) >= nodes

    await wait_until(registered, 600, f"{nodes} nodes with a podCIDR", interval=interval)


async def _done(have: int, want: int) -> bool:
    return have >= want


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=5000)
    p.add_argument("--replicas", type=int, default=1000)
    p.add_argument("--kubelets", type=int, default=2, help="hollow kubelet processes sharing the nodes; 0: the "
                   "nodes are objects only, no kubelet or controller-manager runs (scheduler_perf's way; implies "
                   "--binding-only)")
    p.add_argument("--deployment-timeout", type=float, default=300)
    p.add_argument("--etcd-members", type=int, default=0, metavar="N",
                   help="an etcd cluster of N members with TLS (as `pkctl cluster up --control-planes N`), the "
                   "apiserver given every member; 0 (default): one plain-HTTP etcd")
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--binding-only", action="store_true", help="stop once the pods are bound (no Ready wait, no "
                   "Deployment): for comparing the binding phase alone")
    p.add_argument("--profile-scheduler", metavar="FILE", help="py-spy the scheduler from its start until the last "
                   "binding into FILE (formats as --profile)")
    p.add_argument("--profile", metavar="FILE", help="py-spy the apiserver while binding into FILE (.svg flame "
                   "graph, .json speedscope, else raw collapsed stacks); needs the `bench` extra (py-spy)")
    args = p.parse_args()
    try:
        report(asyncio.run(bench(args)))
    except asyncio.CancelledError:
        sys.exit("bench.scheduler: terminated (everything it started is stopped)")


if __name__ == "__main__":
    main()
