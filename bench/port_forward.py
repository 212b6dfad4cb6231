"""Port-forward benchmark: kubectl (SPDY/3.1 over WebSocket) and pkctl (v4 channels, one WebSocket per
connection) through a TLS apiserver to a real kubelet and a busybox httpd in a runc pod.

For each client: latency of small HTTP GETs made one after the other, each a new forwarded connection
(p50/p99), and the throughput of downloading a large file through the tunnel. Prints one JSON document and
cleans up. Figures only: nothing here passes or fails on time. Needs root.

    .venv/bin/python -m bench.port_forward [--requests 50] [--megabytes 64]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp  # noqa: E402

from pklib.client import Client  # noqa: E402
from bench.common import control_plane, parse_flags, report  # noqa: E402
from tests.support.controlplane import ROOT  # noqa: E402
from tests.support.kubectl import Stream  # noqa: E402
from tests.support.node import NAMESPACES, PODS, ctr, pod, private_node, running, wait_pod  # noqa: E402
from tests.support.portforward import FORWARDING, http_get  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def measure(port: int, requests: int, megabytes: int) -> dict[str, Any]:
    await http_get(port)  # the httpd answers
    latencies = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for _ in range(requests):
            start = time.perf_counter()
            async with s.get(f"http://127.0.0.1:{port}/") as r:
                await r.read()
            latencies.append(time.perf_counter() - start)
        start = time.perf_counter()
        size = 0
        async with s.get(f"http://127.0.0.1:{port}/blob") as r:
            async for chunk in r.content.iter_chunked(1 << 16):
                size += len(chunk)
        seconds = time.perf_counter() - start
    assert size == megabytes << 20, size
    return {"get_ms_p50": pct(latencies, 0.5), "get_ms_p99": pct(latencies, 0.99),
            "download_MiB_per_s": round(megabytes / seconds, 1)}


def start_forward(argv: list[str]) -> tuple[Stream, int]:
    stream = Stream(subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    line = stream.wait_line(lambda line: bool(FORWARDING.match(line)) and "127.0.0.1" in line, timeout=30)
    m = FORWARDING.match(line)
    assert m is not None
    return stream, int(m.group(2))


async def run(args: argparse.Namespace, kubeconfig: str) -> dict[str, Any]:
    c = Client.from_kubeconfig(kubeconfig)
    try:
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        script = (f"mkdir -p /www && echo hi > /www/index.html && dd if=/dev/zero of=/www/blob bs=1048576 "
                  f"count={args.megabytes} 2>/dev/null && exec httpd -f -p 80 -h /www")
        await c.create(PODS, pod("web", ctr("web", script)), "bench")
        await wait_pod(c, "bench", "web", running, timeout=60)
        out: dict[str, Any] = {"requests": args.requests, "megabytes": args.megabytes}
        clients = {"kubectl": ["kubectl", "--kubeconfig", kubeconfig],
                   "pkctl": [sys.executable, "-m", "pkctl.main", "--kubeconfig", kubeconfig]}
        for name, base in clients.items():
            stream, port = start_forward([*base, "-n", "bench", "port-forward", "pod/web", ":80",
                                          "--address", "127.0.0.1"])
            try:
                out[name] = await measure(port, args.requests, args.megabytes)
            finally:
                stream.close()
        return out
    finally:
        await c.close()


def main() -> None:
    args = parse_flags(__doc__, requests=50, megabytes=64)
    with control_plane("pkt-bench-pf-", start_api=False) as cp, private_node(cp.etcd, tls=True) as node:
        result = asyncio.run(run(args, node.api.kubeconfig))
    result["loadavg"] = os.getloadavg()[0]
    report(result)


if __name__ == "__main__":
    main()
