"""Ingress benchmark: requests through pkube's ingress (nginx) vs straight to the ClusterIP, and how long a new
Ingress takes to be served with many Ingresses in place (one JSON document).

    .venv/bin/python -m bench.ingress [--replicas 2] [--requests 3000] [--concurrency 8] [--ingresses 200]
                                      [--reloads 5]

Needs root (a local cluster: `pkctl cluster up` in a temporary home, `down --purge` after). A Deployment of busybox
httpd pods behind a ClusterIP Service and an Ingress (the default `pkube` class). Load: one asyncio client on
loopback with --concurrency requests in flight and --requests in all per target, a new connection per request for
both targets (busybox httpd closes every connection, so the ClusterIP path cannot keep one alive; the client
shares the 2 cores with nginx, the pods and the proxy): requests/s, p50/p99 latency and errors, through
http://127.0.0.1:<ingress port> with the rule's Host, then to the ClusterIP, in the same run. Reload: with
--ingresses Ingresses (one host each) in place, the time from creating one more to nginx answering for its host
(watch delivery, render, `nginx -t`, SIGHUP, new workers), --reloads times.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from bench.common import local_cluster, parse_flags, pkctl, report  # noqa: E402
from pklib.client import Client  # noqa: E402
from pklib.resources import DEPLOYMENTS, INGRESSES, NAMESPACES, SERVICES  # noqa: E402

HTTPD = ("mkdir -p /www && echo hello from $HOSTNAME > /www/index.html; trap 'exit 0' TERM; "
         "httpd -f -p 8080 -h /www & wait")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)


async def one_request(host: str, port: int, header_host: str) -> bool:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {header_host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
        return data.startswith(b"HTTP/1.") and data[9:12] == b"200"
    finally:
        writer.close()


async def load(host: str, port: int, header_host: str, requests: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    remaining = requests

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            began = time.perf_counter()
            try:
                ok = await one_request(host, port, header_host)
            except (OSError, asyncio.TimeoutError):
                ok = False
            latencies.append(time.perf_counter() - began)
            errors += not ok
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {"requests": requests, "errors": errors, "requests_per_s": round(requests / elapsed, 1),
            "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99), "max_ms": pct(latencies, 100)}


def ingress_body(name: str, host: str) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": "web", "port": {"number": 80}}}}]}}]}}


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def measure(kubeconfig: str, http_port: int, args: Any) -> dict[str, Any]:
    ns = "bench-ingress"
    async with Client.from_kubeconfig(kubeconfig) as c:
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        labels = {"app": "web"}
        await c.create(DEPLOYMENTS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": args.replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                         "name": "httpd", "image": "pkube.local/busybox:latest", "command": ["sh", "-c", HTTPD],
                         "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}]}}}}, ns)
        svc = await c.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
                             ns)
        await c.create(INGRESSES, ingress_body("web", "web.bench.test"), ns)

        async def ready() -> bool:
            d = await c.get(DEPLOYMENTS, "web", ns)
            return (d.get("status") or {}).get("readyReplicas") == args.replicas

        async def answers(host: str, port: int, header: str) -> bool:
            try:
                return await one_request(host, port, header)
            except OSError:
                return False
        await until(ready, 120, "the web pods Ready")
        cluster_ip = svc["spec"]["clusterIP"]
        await until(lambda: answers("127.0.0.1", http_port, "web.bench.test"), 30, "the ingress answering")
        await until(lambda: answers(cluster_ip, 80, "web"), 30, "the ClusterIP answering")
        result: dict[str, Any] = {
            "through_ingress": await load("127.0.0.1", http_port, "web.bench.test", args.requests, args.concurrency),
            "cluster_ip": await load(cluster_ip, 80, "web", args.requests, args.concurrency)}
        for i in range(args.ingresses):
            await c.create(INGRESSES, ingress_body(f"many-{i}", f"many-{i}.bench.test"), ns)
        await until(lambda: answers("127.0.0.1", http_port, f"many-{args.ingresses - 1}.bench.test"), 60,
                    f"{args.ingresses} Ingresses served")
        times = []
        for i in range(args.reloads):
            host = f"new-{i}.bench.test"
            began = time.monotonic()
            await c.create(INGRESSES, ingress_body(f"new-{i}", host), ns)
            await until(lambda: answers("127.0.0.1", http_port, host), 30, f"{host} served")
            times.append(time.monotonic() - began)
        result["new_ingress_served_with_many_s"] = {
            "ingresses": args.ingresses + 1, "median": round(statistics.median(times), 3),
            "max": round(max(times), 3), "samples": [round(t, 3) for t in times]}
        return result


def main() -> int:
    args = parse_flags(__doc__, replicas=2, requests=3000, concurrency=8, ingresses=200, reloads=5)
    result: dict[str, Any] = {"replicas": args.replicas, "concurrency": args.concurrency}
    with local_cluster("pkbench-ingress-") as home:
        pkctl("cluster", "up", "--home", str(home.root), "--wait-timeout", "180")
        cfg = home.load_config()
        result.update(asyncio.run(measure(str(home.kubeconfig), cfg.ingress_http_port, args)))
    return report(result)


if __name__ == "__main__":
    sys.exit(main())
