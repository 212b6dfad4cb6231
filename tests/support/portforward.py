"""A web pod with a loopback-only server, and the checks port-forward tests (pkctl's, kubectl's, the bench's) share."""
from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import aiohttp

from pklib.client import Client
from tests.support.node import PODS, ctr, pod, res, running, wait_pod
from tests.util import wait_for


# an httpd on all addresses (port 80, named "http") and one on the pod's loopback only (8081); /big is ~590 kB
WEB_SCRIPT = ("mkdir -p /www /lo && echo hello-from-$(hostname) > /www/index.html && echo loopback-only > "
              "/lo/index.html && seq 1 100000 > /www/big && httpd -p 127.0.0.1:8081 -h /lo && "
              "exec httpd -f -p 80 -h /www")


BIG = "".join(f"{i}\n" for i in range(1, 100001))


FORWARDING = re.compile(r"^Forwarding from (127\.0\.0\.1|\[::1\]):(\d+) -> (\d+)$")


def web_pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return pod(name, ctr("web", WEB_SCRIPT, ports=[{"name": "http", "containerPort": 80}]), labels=labels)


async def start_web(c: Client, ns: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    await c.create(PODS, web_pod(name, labels), ns)
    return await wait_pod(c, ns, name, running, what=f"{name} Running")


async def start_site(c: Client, ns: str) -> None:
    """Deployment "site" (label app=site) of one web pod, returned once that pod runs (as a user would wait)."""
    await c.create(res("deployments"), {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "site"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "site"}},
                 "template": {"metadata": {"labels": {"app": "site"}}, "spec": web_pod("x")["spec"]}}}, ns)

    async def site_running() -> bool:
        pods = (await c.list(PODS, ns, label_selector="app=site")).get("items") or []
        return any(running(p) for p in pods)
    await wait_for(site_running, 60, 0.2, message="the pod of deployment site Running")


async def http_get(port: int, path: str = "/", timeout: float = 20) -> str:
    """GET through the forwarded port, retried until the pod's httpd answers (it may still be starting)."""
    async def attempt() -> str | None:
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                async with s.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    return await r.text() if r.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None
    result: str = await wait_for(attempt, timeout, 0.2, message=f"an answer on local port {port}{path}")
    return result


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
