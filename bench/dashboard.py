"""Dashboard benchmark: the web dashboard in headless Chromium over a control plane with many pods (one JSON document).

    .venv/bin/python -m bench.dashboard [--pods 1000] [--changes 100] [--loads 3] [--sample-interval 10]

Real etcd + apiserver processes; the pods are objects only (Pending, no node runs them). `pkube dashboard` runs as
its own process, Chromium (Debian's, through Selenium) logs in with its link. Measures:
- first paint: from asking the browser for the page to the overview showing the count of all the pods (list +
  watch of nodes, namespaces, four workload kinds, pods and Warning events), and to the Pods page showing all their
  rows; the median of --loads loads each (the first one includes the login);
- status change → page: a pod's status is changed through the API (`status.reason`, shown in the STATUS column)
  and the page's own clock (a MutationObserver, Date.now(): the same clock as ours) says when its row showed it;
  --changes changes one after another on the Pods page with every pod listed; p50/p99 in ms;
- the dashboard process' RSS (now and peak) after all that, with its CPU/memory sampler at work: the node's
  kubelet is a stand-in here (HTTPS with the test PKI's kubelet certificate, reached through the API server's
  nodes/proxy like a real one) answering a Summary of all the pods, sampled every --sample-interval seconds;
- the sampler's series for those pods over a full hour (the rings filled: --pods pods and their containers,
  3600 / --sample-interval samples each), measured in a process of its own (RSS before and after), since the
  benchmark does not run for an hour.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import ssl
import statistics
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from pklib.client import Client
from pklib.resources import must_lookup
from pklib.syncclient import SyncClient
from bench.common import control_plane, parse_flags, report, status_mib
from tests.support.controlplane import make_test_pki
from tests.support.dashboard import base, chromium, chromium_available, serve, until

PODS, NODES, NAMESPACES = must_lookup("pods"), must_lookup("nodes"), must_lookup("namespaces")
NS = "bench"

# Records, in the page, when each pod row's STATUS cell changed (epoch ms).
OBSERVE = """
window.__seen = [];
const body = document.querySelector('main table tbody');
new MutationObserver((records) => {
  const now = Date.now();
  for (const r of records) {
    const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
    const tr = el && el.closest('tr[data-key]');
    if (tr) window.__seen.push([tr.dataset.name, tr.children[3].textContent, now]);
  }
}).observe(body, {subtree: true, childList: true, characterData: true});
"""


def summary(pods: int) -> dict[str, Any]:
    """A kubelet Summary (/stats/summary) of the node and its pods, with made-up current use."""
    def use() -> dict[str, Any]:
        return {"cpu": {"usageNanoCores": random.randrange(10**6, 10**8)},
                "memory": {"workingSetBytes": random.randrange(2**20, 2**26)}}
    return {"node": {"nodeName": "bench-node", **use()},
            "pods": [{"podRef": {"namespace": NS, "name": f"pod-{i:05d}"}, **use(),
                      "containers": [{"name": "c", **use()}]} for i in range(pods)]}


@contextmanager
def stand_in_kubelet(pki_dir: str, pods: int) -> Iterator[int]:
    """The node's kubelet API as far as the sampler needs it: GET /stats/summary over HTTPS with the test PKI's
    kubelet certificate (which the API server's --kubelet-certificate-authority trusts); yields its port."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps(summary(pods)).encode() if self.path.split("?")[0] == "/stats/summary" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass
    pki = make_test_pki(pki_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki.cert("kubelet")), str(pki.key("kubelet")))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _hour_of_series(pods: int, interval: int, answer: Any) -> None:
    """In a process of its own: the RSS an hour of samples of `pods` pods adds (rings filled)."""
    from dashboard.usage import WINDOW, Usage
    usage = Usage(None, interval)  # type: ignore[arg-type]  # no sampling loop: record() only
    sample = summary(pods)
    before = status_mib(os.getpid()) or 0.0
    for i in range(int(WINDOW / interval) + 1):
        usage.record("bench-node", sample, float(i * interval))
    after = status_mib(os.getpid()) or 0.0
    answer.put({"series": len(usage.series), "samples_each": usage.size, "rss_added_mb": round(after - before, 1)})


def hour_of_series(pods: int, interval: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    answer = ctx.Queue()
    proc = ctx.Process(target=_hour_of_series, args=(pods, interval, answer))
    proc.start()
    result: dict[str, Any] = answer.get(timeout=300)
    proc.join()
    return result


async def populate(api_kubeconfig: str, pods: int, kubelet_port: int) -> None:
    async with Client.from_kubeconfig(api_kubeconfig) as c:
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        node = await c.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bench-node"}})
        node["status"] = {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                          "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                          "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}
        await c.update(NODES, node, subresource="status")
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await c.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i:05d}"},
                                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, NS)
        await asyncio.gather(*(one(i) for i in range(pods)))


def timed_load(driver: Any, url: str, ready: str, timeout: float = 120) -> float:
    began = time.monotonic()
    driver.get(url)
    until(lambda: driver.execute_script(ready), timeout, f"{url} ready")
    return round((time.monotonic() - began) * 1000, 1)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not chromium_available():
        raise SystemExit("bench.dashboard: needs Debian's chromium and chromium-driver (scripts/install-deps.sh)")
    interval = int(args.sample_interval)
    with control_plane("pkb-dash-") as cp, stand_in_kubelet(cp.tmp, args.pods) as kubelet_port:
        asyncio.run(populate(cp.api.kubeconfig, args.pods, kubelet_port))
        api = SyncClient.from_kubeconfig(cp.api.kubeconfig)
        with serve(cp.api.kubeconfig, via_pkctl=False, env={"PKUBE_DASHBOARD_SAMPLE_SECONDS": str(interval)}) \
                as (login, proc), chromium() as driver:
            root = base(login)
            overview_ready = (f"return document.querySelector('.card[data-kind=pods] .n')?.textContent"
                              f".endsWith('/ {args.pods}')")
            pods_ready = f"return document.querySelectorAll('main tbody tr[data-key]').length === {args.pods}"
            overview = [timed_load(driver, login, overview_ready)]
            overview += [timed_load(driver, f"{root}/?{i}#/", overview_ready) for i in range(1, args.loads)]
            pods_page = [timed_load(driver, f"{root}/?{i}#/pods", pods_ready) for i in range(args.loads)]

            driver.execute_script(OBSERVE)
            latencies: list[float] = []
            for i in range(args.changes):
                name, reason = f"pod-{i % args.pods:05d}", f"Bench{i}"
                sent = time.time() * 1000
                api.patch(PODS, name, {"status": {"reason": reason}}, NS, subresource="status")
                seen = until(lambda: driver.execute_script(
                    "return window.__seen.find(s => s[0] === arguments[0] && s[1] === arguments[1])", name, reason),
                    30, f"{name} showing {reason}")
                latencies.append(seen[2] - sent)
            # the sampler has kept every pod's series meanwhile (from the stand-in kubelet)
            samples = until(lambda: driver.execute_script(
                "return fetch('/usage/pods/' + arguments[0] + '/pod-00000').then(r => r.json())"
                ".then(b => b.pod && b.pod.t.length)", NS), 60, "samples of the pods")
            rss, peak = status_mib(proc.pid), status_mib(proc.pid, "VmHWM")
        api.close()
    hour = hour_of_series(args.pods, interval)
    return {
        "pods": args.pods,
        "overview_first_paint_ms": {"median": round(statistics.median(overview), 1), "each": overview},
        "pods_page_first_paint_ms": {"median": round(statistics.median(pods_page), 1), "each": pods_page},
        "status_change_to_page_ms": {"changes": len(latencies), "p50": pct(latencies, 50), "p99": pct(latencies, 99),
                                     "max": round(max(latencies), 1)},
        "dashboard_rss_mb": rss, "dashboard_peak_rss_mb": peak,
        "sampler": {"interval_s": interval, "samples_per_pod_at_rss": samples, "full_hour_series": hour,
                    "dashboard_rss_after_an_hour_mb_estimate": round((rss or 0) + hour["rss_added_mb"], 1)},
    }


def main() -> None:
    args = parse_flags(__doc__, pods=1000, changes=100, loads=3, sample_interval=10)
    report(run(args))


if __name__ == "__main__":
    main()
