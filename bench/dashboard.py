"""Dashboard benchmark: the web dashboard in headless Chromium over a control plane with many pods (one JSON document).

    .venv/bin/python -m bench.dashboard [--pods 1000] [--changes 100] [--loads 3]

Real etcd + apiserver processes; the pods are objects only (Pending, no node runs them). `pkube dashboard` runs as
its own process, Chromium (Debian's, through Selenium) logs in with its link. Measures:
- first paint: from asking the browser for the page to the overview showing the count of all the pods (list +
  watch of nodes, namespaces, four workload kinds, pods and Warning events), and to the Pods page showing all their
  rows; the median of --loads loads each (the first one includes the login);
- status change → page: a pod's status is changed through the API (`status.reason`, shown in the STATUS column)
  and the page's own clock (a MutationObserver, Date.now(): the same clock as ours) says when its row showed it;
  --changes changes one after another on the Pods page with every pod listed; p50/p99 in ms;
- the dashboard process' RSS (now and peak) after all that.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from pklib.client import Client
from pklib.resources import must_lookup
from pklib.syncclient import SyncClient
from bench.common import control_plane, parse_flags, report, status_mib
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


async def populate(api_kubeconfig: str, pods: int) -> None:
    async with Client.from_kubeconfig(api_kubeconfig) as c:
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await c.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bench-node"},
                               "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}}})
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
    with control_plane("pkb-dash-") as cp:
        asyncio.run(populate(cp.api.kubeconfig, args.pods))
        api = SyncClient.from_kubeconfig(cp.api.kubeconfig)
        with serve(cp.api.kubeconfig, via_pkctl=False) as (login, proc), chromium() as driver:
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
            rss, peak = status_mib(proc.pid), status_mib(proc.pid, "VmHWM")
        api.close()
    return {
        "pods": args.pods,
        "overview_first_paint_ms": {"median": round(statistics.median(overview), 1), "each": overview},
        "pods_page_first_paint_ms": {"median": round(statistics.median(pods_page), 1), "each": pods_page},
        "status_change_to_page_ms": {"changes": len(latencies), "p50": pct(latencies, 50), "p99": pct(latencies, 99),
                                     "max": round(max(latencies), 1)},
        "dashboard_rss_mb": rss, "dashboard_peak_rss_mb": peak,
    }


def main() -> None:
    args = parse_flags(__doc__, pods=1000, changes=100, loads=3)
    report(run(args))


if __name__ == "__main__":
    main()
