"""/healthz and /metrics (Prometheus text) for the controller-manager.

Served from start-up on, so a standby (not leading) instance is visible too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from pklib.component import serve_http
from pklib.controller import Controller
from pklib.informer import InformerFactory


@dataclass
class ManagerState:
    leading: bool = False
    controllers: list[Controller] = field(default_factory=list)
    informers: InformerFactory | None = None


def render(state: ManagerState) -> str:
    lines = [
        "# HELP pkube_leader_election_master_status 1 if this instance runs the controllers.",
        "# TYPE pkube_leader_election_master_status gauge",
        f"pkube_leader_election_master_status {1 if state.leading else 0}",
    ]
    series = (
        ("workqueue_depth", "gauge", "Keys waiting in the queue.", lambda c: len(c.queue)),
        ("workqueue_adds_total", "counter", "Keys added.", lambda c: c.queue.adds_total),
        ("workqueue_retries_total", "counter", "Keys requeued after a failed sync.", lambda c: c.queue.retries_total),
        ("workqueue_work_duration_seconds_sum", "counter", "Time spent in sync.",
         lambda c: round(c.queue.work_seconds_total, 6)),
        ("workqueue_work_duration_seconds_count", "counter", "Syncs run.", lambda c: c.queue.work_count),
    )
    for metric, kind, help_text, value in series:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        lines += [f'{metric}{{name="{c.name}"}} {value(c)}' for c in state.controllers]
    lines += ["# HELP pkube_informer_relists_total Full lists done by an informer (start, 410 Gone).",
              "# TYPE pkube_informer_relists_total counter"]
    if state.informers is not None:
        lines += [f'pkube_informer_relists_total{{resource="{inf.resource.plural}"}} {inf.relists}'
                  for inf in state.informers.all()]
    return "\n".join(lines) + "\n"


async def serve(state: ManagerState, host: str, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=render(state), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return await serve_http(app, host, port, what="/metrics")
