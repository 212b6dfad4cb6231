"""metrics.k8s.io/v1beta1: NodeMetrics and PodMetrics (what `kubectl top` and the HPA controller read).

    GET /apis/metrics.k8s.io/v1beta1/nodes[/{name}]                       ?labelSelector
    GET /apis/metrics.k8s.io/v1beta1[/namespaces/{ns}]/pods[/{name}]      ?labelSelector

Kubernetes serves these from metrics-server, an aggregated API server that scrapes every kubelet's
/stats/summary. pkube serves them from the apiserver itself: it already reaches kubelets with its client
certificate (proxy_pods.py), and a separate component would add a process, an APIService and a proxy hop for a
handful of numbers. Summaries are fetched from all nodes at once and kept for CACHE_SECONDS, so that `top`
and an autoscaler polling together cost one scrape; a node that cannot be reached is left out, as
metrics-server leaves it out. The usage is the kubelet's: CPU as the rate over its last window (nanocores),
memory as the working set. Authorization is the generic one (resource pods/nodes in group metrics.k8s.io).
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

import aiohttp
from aiohttp import web

from pklib import resources
from pklib.api.timefmt import now_rfc3339
from pklib.selectors import SelectorError, parse_label_selector

from .handlers_objects import collection_prefix
from .proxy_pods import kubelet_url
from .status import StatusError, bad_request, json_response
from .watchcache import WatchCache, resource_prefix

log = logging.getLogger("apiserver.metrics_api")
GROUP_VERSION = "metrics.k8s.io/v1beta1"
CACHE_SECONDS = 1.0
FETCH_TIMEOUT = 5.0
WINDOW = "1s"  # the kubelet's shortest rate window (kubelet/summary.py MIN_WINDOW)


def cpu_quantity(nanocores: int) -> str:
    return f"{nanocores}n"


def memory_quantity(nbytes: int) -> str:
    return f"{nbytes // 1024}Ki"


class Summaries:
    """The nodes' /stats/summary answers, fetched together and kept CACHE_SECONDS."""

    def __init__(self, cache: WatchCache, kubelet_tls: ssl.SSLContext) -> None:
        self.cache = cache
        self.kubelet_tls = kubelet_tls
        self._at = 0.0
        self._summaries: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()

    def nodes(self) -> list[dict[str, Any]]:
        return [c.obj for c in self.cache.for_prefix(resource_prefix("", "nodes")).items(
            collection_prefix(resources.NODES, None), None)]

    async def get(self) -> dict[str, dict[str, Any]]:
        async with self._lock:
            if time.monotonic() - self._at > CACHE_SECONDS:
                self._summaries = await self._fetch_all()
                self._at = time.monotonic()
            return self._summaries

    async def _fetch_all(self) -> dict[str, dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=self.kubelet_tls)) as s:
            nodes = [n for n in self.nodes() if kubelet_url(n)]
            answers = await asyncio.gather(*(self._fetch(s, n) for n in nodes))
        return {n["metadata"]["name"]: a for n, a in zip(nodes, answers) if a is not None}

    async def _fetch(self, session: aiohttp.ClientSession, node: dict[str, Any]) -> dict[str, Any] | None:
        try:
            async with session.get(f"{kubelet_url(node)}/stats/summary") as r:
                if r.status == 200:
                    body: dict[str, Any] = await r.json()
                    return body
                log.info("node %s: /stats/summary answered %s", node["metadata"]["name"], r.status)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            log.info("node %s: cannot read /stats/summary: %s", node["metadata"]["name"], e)
        return None


def _usage(stats: dict[str, Any]) -> dict[str, str] | None:
    cpu, memory = stats.get("cpu") or {}, stats.get("memory") or {}
    if "usageNanoCores" not in cpu or "workingSetBytes" not in memory:
        return None
    return {"cpu": cpu_quantity(int(cpu["usageNanoCores"])), "memory": memory_quantity(int(memory["workingSetBytes"]))}


def node_metrics(node: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any] | None:
    usage = _usage(summary.get("node") or {})
    if usage is None:
        return None
    meta = node["metadata"]
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": meta["name"], "creationTimestamp": now_rfc3339(), "labels": meta.get("labels", {})},
            "timestamp": (summary["node"].get("cpu") or {}).get("time") or now_rfc3339(), "window": WINDOW,
            "usage": usage}


def pod_metrics(pod: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any] | None:
    containers = []
    for c in stats.get("containers") or []:
        usage = _usage(c)
        if usage is None:
            return None  # metrics-server leaves out a pod with a container it has no rate for
        containers.append({"name": c["name"], "usage": usage})
    meta = pod["metadata"]
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "creationTimestamp": now_rfc3339(),
                         "labels": meta.get("labels", {})},
            "timestamp": (stats.get("cpu") or {}).get("time") or now_rfc3339(), "window": WINDOW,
            "containers": containers}


def _selector(request: web.Request) -> Any:
    try:
        return parse_label_selector(request.query.get("labelSelector"))
    except SelectorError as e:
        raise bad_request(f"unable to parse requirement: {e}") from None


def _list(kind: str, items: list[dict[str, Any]]) -> web.Response:
    return json_response({"kind": kind + "List", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})


def _not_found(plural: str, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{plural}.metrics.k8s.io "{name}" not found',
                       {"name": name, "group": "metrics.k8s.io", "kind": plural})


def routes(cache: WatchCache, kubelet_tls: ssl.SSLContext) -> list[web.RouteDef]:
    summaries = Summaries(cache, kubelet_tls)
    base = "/apis/metrics.k8s.io/v1beta1"

    async def all_node_metrics(request: web.Request, name: str | None) -> list[dict[str, Any]]:
        selector = _selector(request)
        got = await summaries.get()
        out = []
        for node in summaries.nodes():
            meta = node["metadata"]
            if (name is not None and meta["name"] != name) or not selector.matches(meta.get("labels") or {}):
                continue
            m = node_metrics(node, got[meta["name"]]) if meta["name"] in got else None
            if m is not None:
                out.append(m)
        return out

    async def all_pod_metrics(request: web.Request, namespace: str | None,
                              name: str | None) -> list[dict[str, Any]]:
        selector = _selector(request)
        got = await summaries.get()
        stats = {(p["podRef"]["namespace"], p["podRef"]["name"], p["podRef"]["uid"]): p
                 for s in got.values() for p in s.get("pods") or []}
        pods = cache.for_prefix(resource_prefix("", "pods")).items(collection_prefix(resources.PODS, namespace), None)
        out = []
        for cached in pods:
            meta = cached.obj["metadata"]
            if (name is not None and meta["name"] != name) or not selector.matches(meta.get("labels") or {}):
                continue
            found = stats.get((meta["namespace"], meta["name"], meta["uid"]))
            m = pod_metrics(cached.obj, found) if found is not None else None
            if m is not None:
                out.append(m)
        return out

    async def list_nodes(request: web.Request) -> web.Response:
        return _list("NodeMetrics", await all_node_metrics(request, None))

    async def get_node(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = await all_node_metrics(request, name)
        if not found:
            raise _not_found("nodes", name)
        return json_response(found[0])

    async def list_pods(request: web.Request) -> web.Response:
        return _list("PodMetrics", await all_pod_metrics(request, request.match_info.get("namespace"), None))

    async def get_pod(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = await all_pod_metrics(request, request.match_info["namespace"], name)
        if not found:
            raise _not_found("pods", name)
        return json_response(found[0])

    async def read_only(request: web.Request) -> web.Response:
        raise StatusError(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                                                   f"resource: {request.method} is not supported by metrics.k8s.io")

    reads = {base + "/nodes": list_nodes, base + "/nodes/{name}": get_node, base + "/pods": list_pods,
             base + "/namespaces/{namespace}/pods": list_pods, base + "/namespaces/{namespace}/pods/{name}": get_pod}
    return [web.get(path, handler) for path, handler in reads.items()] + [
        web.route(method, path, read_only) for path in reads for method in ("POST", "PUT", "PATCH", "DELETE")]
