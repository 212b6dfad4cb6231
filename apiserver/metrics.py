"""Prometheus metrics of the API server (served as text at /metrics) and the middleware recording them."""
from __future__ import annotations

import re
import time
from typing import Awaitable, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.exposition import CONTENT_TYPE_LATEST

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Request attributes the router fills in, so metrics name the resource and verb like Kubernetes does.
VERB = "pkube.verb"
RESOURCE = "pkube.resource"


# Streams (Kubernetes' long-running requests besides watches): pod logs/exec/attach/port-forward, proxies.
LONG_RUNNING = re.compile(r"/pods/[^/]+/(log|exec|attach|portforward)$|/(nodes|pods|services)/[^/]+/proxy(/|$)")


# (resource, objects, events in the history, JSON bytes of the history) per resource: WatchCache.stats
CacheStats = Callable[[], Iterable[tuple[str, int, int, int]]]


class WatchCacheCollector(Collector):
    """The watch cache's size, read when /metrics is scraped: the objects stored per resource (Kubernetes'
    apiserver_storage_objects) and what each resource's event history holds, in events and in JSON bytes (bounded
    by watchcache.HISTORY and --watch-cache-max-bytes)."""

    def __init__(self, stats: CacheStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        objects = GaugeMetricFamily("apiserver_storage_objects", "Number of stored objects by resource.",
                                    labels=["resource"])
        events = GaugeMetricFamily("pkube_watch_cache_events", "Events the watch cache's history holds by resource.",
                                   labels=["resource"])
        size = GaugeMetricFamily("pkube_watch_cache_bytes",
                                 "JSON bytes of the events the watch cache's history holds by resource.",
                                 labels=["resource"])
        for resource, n_objects, n_events, n_bytes in self.stats():
            objects.add_metric([resource], n_objects)
            events.add_metric([resource], n_events)
            size.add_metric([resource], n_bytes)
        yield from (objects, events, size)


def long_running(request: web.Request) -> bool:
    """Watches and streams: not counted in flight."""
    return str(request.query.get("watch", "")).lower() in ("1", "true") or bool(LONG_RUNNING.search(request.path))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("apiserver_request_total", "API requests by verb, resource and HTTP code.",
                                ["verb", "resource", "code"], registry=self.registry)
        self.duration = Histogram("apiserver_request_duration_seconds", "API request latency (watches excluded).",
                                  ["verb", "resource"], registry=self.registry,
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                           10, 30))
        self.inflight = Gauge("apiserver_current_inflight_requests",
                              "Requests being served, by kind (readOnly or mutating; long-running ones excluded).",
                              ["request_kind"], registry=self.registry)
        self.watchers = Gauge("apiserver_registered_watchers", "Open watches by resource.", ["resource"],
                              registry=self.registry)
        # etcd maintenance (etcdmaintenance.py) and allocator repair (repair.py)
        self.db_size = Gauge("apiserver_storage_db_total_size_in_bytes", "etcd backend file size per member.",
                             ["endpoint"], registry=self.registry)
        self.etcd_compactions = Counter("pkube_etcd_compactions_total", "Compactions this apiserver made.",
                                        registry=self.registry)
        self.etcd_defrags = Counter("pkube_etcd_defragmentations_total", "etcd members this apiserver defragmented.",
                                    registry=self.registry)
        self.etcd_alarm_recoveries = Counter("pkube_etcd_nospace_recoveries_total",
                                             "NOSPACE alarms this apiserver recovered from.", registry=self.registry)
        self.allocator_repairs = Counter("pkube_allocator_repairs_total",
                                         "Allocations released (leaked) or recorded (missing) by the repair loop.",
                                         ["allocator", "action"], registry=self.registry)

    def watch_cache(self, stats: CacheStats) -> None:
        """Export the watch cache's size (WatchCacheCollector), read at each scrape."""
        self.registry.register(WatchCacheCollector(stats))

    def render(self) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            start = time.perf_counter()
            if long_running(request):
                resp = await handler(request)  # the Status middleware inside turns errors into responses
            else:
                with self.inflight.labels("readOnly" if request.method in ("GET", "HEAD") else "mutating")\
                        .track_inprogress():
                    resp = await handler(request)
            verb = request.get(VERB) or request.method
            resource = request.get(RESOURCE) or ""
            self.requests.labels(verb, resource, str(resp.status)).inc()
            if verb != "WATCH":
                self.duration.labels(verb, resource).observe(time.perf_counter() - start)
            return resp
        return record

