"""CPU and memory over the last hour, per node, pod and container, for the page's plots.

The dashboard samples every node's kubelet Summary (`/api/v1/nodes/{name}/proxy/stats/summary`, with the user's
credentials: one who may not get nodes/proxy sees no plots) every `interval` seconds, and keeps one ring per series
holding an hour of samples, so memory stays bounded however long it runs; a series with no sample for an hour
(a deleted pod) is dropped. The page reads them as JSON:

    GET /usage/nodes                → {"interval": s, "series": {node: Series}}
    GET /usage/pods/{ns}/{name}     → {"interval": s, "pod": Series | null, "containers": {name: Series}}

where a Series is {"t": [unix seconds], "cpu": [cores], "memory": [bytes]} (CPU the kubelet's rate in nanocores /
1e9, memory the working set).
"""
from __future__ import annotations

import asyncio
import logging
import time
from array import array
from typing import Any

from aiohttp import web

from pklib.client import Client
from pklib.errors import ApiError, ConnectionFailed
from pklib.resources import NODES

log = logging.getLogger("dashboard.usage")
WINDOW = 3600.0  # seconds of history kept
FETCH_TIMEOUT = 8.0  # per node and sample


class Series:
    """A ring of the last `size` (time, CPU cores, memory bytes) samples, in flat arrays: a few kB per series
    rather than a Python object per number (a thousand pods keep two thousand series)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.t, self.cpu, self.memory = array("d"), array("f"), array("d")
        self.head = 0  # where the oldest sample is once the ring is full

    def add(self, t: float, stats: dict[str, Any]) -> None:
        cpu = (stats.get("cpu") or {}).get("usageNanoCores")
        memory = (stats.get("memory") or {}).get("workingSetBytes")
        if cpu is None or memory is None:
            return  # no rate yet (a new container)
        if len(self.t) < self.size:
            self.t.append(t)
            self.cpu.append(int(cpu) / 1e9)
            self.memory.append(int(memory))
            return
        self.t[self.head], self.cpu[self.head], self.memory[self.head] = t, int(cpu) / 1e9, int(memory)
        self.head = (self.head + 1) % self.size

    def last(self) -> float:
        return self.t[self.head - 1] if self.t else 0.0

    def json(self) -> dict[str, list[float]]:
        def ordered(a: array[float]) -> list[float]:
            return list(a[self.head:]) + list(a[:self.head])
        return {"t": ordered(self.t), "cpu": [round(c, 6) for c in ordered(self.cpu)], "memory": ordered(self.memory)}


class Usage:
    """The series, and the loop that samples them."""

    def __init__(self, client: Client, interval: float) -> None:
        self.client = client
        self.interval = interval
        self.size = int(WINDOW / interval) + 1
        self.series: dict[tuple[str, ...], Series] = {}
        self._refused: set[str] = set()  # nodes (or "" for the node list) whose refusal was logged (once each)

    def _series(self, key: tuple[str, ...]) -> Series:
        if key not in self.series:
            self.series[key] = Series(self.size)
        return self.series[key]

    def record(self, node: str, summary: dict[str, Any], now: float) -> None:
        """One node's Summary, sampled at `now`."""
        self._series(("node", node)).add(now, summary.get("node") or {})
        for pod in summary.get("pods") or []:
            ref = pod.get("podRef") or {}
            ns, name = ref.get("namespace", ""), ref.get("name", "")
            self._series(("pod", ns, name)).add(now, pod)
            for c in pod.get("containers") or []:
                self._series(("container", ns, name, c.get("name", ""))).add(now, c)

    def prune(self, now: float) -> None:
        for key in [k for k, s in self.series.items() if s.last() < now - WINDOW]:
            del self.series[key]

    async def sample(self) -> None:
        try:
            nodes = (await self.client.list(NODES)).get("items") or []
        except (ApiError, ConnectionFailed, asyncio.TimeoutError) as e:
            if "" not in self._refused:
                self._refused.add("")
                log.warning("no usage plots: cannot list nodes: %s", e)
            return
        names = [n["metadata"]["name"] for n in nodes]
        answers = await asyncio.gather(*(self._summary(n) for n in names))
        now = time.time()
        for name, summary in zip(names, answers):
            if summary is not None:
                self.record(name, summary, now)
        self.prune(now)

    async def _summary(self, node: str) -> dict[str, Any] | None:
        try:
            body = await self.client.request("GET", f"/api/v1/nodes/{node}/proxy/stats/summary",
                                             timeout=FETCH_TIMEOUT)
            if not isinstance(body, dict):
                raise ValueError(f"the kubelet's summary is not JSON: {str(body)[:80]!r}")
            return body
        except (ApiError, ConnectionFailed, ValueError, asyncio.TimeoutError) as e:
            if node not in self._refused:
                self._refused.add(node)
                log.warning("no usage plots for node %s: %s", node, e)
            return None

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample()
            except Exception:  # a malformed answer must not end the sampling for the dashboard's lifetime
                log.exception("sampling CPU and memory use failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def nodes_json(self) -> dict[str, Any]:
        return {"interval": self.interval,
                "series": {k[1]: s.json() for k, s in self.series.items() if k[0] == "node"}}

    def pod_json(self, ns: str, name: str) -> dict[str, Any]:
        pod = self.series.get(("pod", ns, name))
        return {"interval": self.interval, "pod": pod.json() if pod else None,
                "containers": {k[3]: s.json() for k, s in self.series.items()
                               if k[0] == "container" and k[1] == ns and k[2] == name}}


USAGE = web.AppKey("usage", Usage)


async def nodes(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[USAGE].nodes_json(), headers={"Cache-Control": "no-store"})


async def pod(request: web.Request) -> web.StreamResponse:
    body = request.app[USAGE].pod_json(request.match_info["namespace"], request.match_info["name"])
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, usage: Usage) -> None:
    """The JSON endpoints, and the sampling loop for as long as the app runs."""
    app[USAGE] = usage
    app.router.add_get("/usage/nodes", nodes)
    app.router.add_get("/usage/pods/{namespace}/{name}", pod)

    async def sampling(app: web.Application) -> Any:
        task = asyncio.create_task(usage.run())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    app.cleanup_ctx.append(sampling)
