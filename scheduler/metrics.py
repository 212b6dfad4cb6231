"""/healthz and /metrics (Prometheus text) for the scheduler."""
from __future__ import annotations

from aiohttp import web

from .scheduler import Scheduler


def render(scheduler: Scheduler, leading: bool) -> str:
    lines = ["# HELP pkube_leader_election_master_status 1 if this instance leads (or runs without election).",
             "# TYPE pkube_leader_election_master_status gauge",
             f"pkube_leader_election_master_status {1 if leading else 0}",
             "# HELP scheduler_pending_pods Pending pods by queue.",
             "# TYPE scheduler_pending_pods gauge"]
    lines += [f'scheduler_pending_pods{{queue="{q}"}} {n}' for q, n in scheduler.queue.pending().items()]
    lines += ["# HELP scheduler_schedule_attempts_total Scheduling attempts by result.",
              "# TYPE scheduler_schedule_attempts_total counter"]
    lines += [f'scheduler_schedule_attempts_total{{result="{r}"}} {scheduler.attempts[r]}'
              for r in ("scheduled", "unschedulable", "error")]
    lines += ["# HELP scheduler_preemption_attempts_total Preemptions that nominated a node.",
              "# TYPE scheduler_preemption_attempts_total counter",
              f"scheduler_preemption_attempts_total {scheduler.preemption_attempts}",
              "# HELP scheduler_preemption_victims_total Pods evicted by preemption.",
              "# TYPE scheduler_preemption_victims_total counter",
              f"scheduler_preemption_victims_total {scheduler.preemption_victims}"]
    lines += ["# HELP scheduler_scheduling_algorithm_duration_seconds Time spent filtering and scoring.",
              "# TYPE scheduler_scheduling_algorithm_duration_seconds summary",
              f"scheduler_scheduling_algorithm_duration_seconds_sum {scheduler.algorithm_seconds:.6f}",
              f"scheduler_scheduling_algorithm_duration_seconds_count {scheduler.algorithm_runs}",
              "# HELP scheduler_cache_nodes Nodes in the scheduler cache.",
              "# TYPE scheduler_cache_nodes gauge",
              f"scheduler_cache_nodes {len(scheduler.cache.nodes())}",
              "# HELP scheduler_assumed_pods Pods placed whose binding is not confirmed yet.",
              "# TYPE scheduler_assumed_pods gauge",
              f"scheduler_assumed_pods {len(scheduler.cache.assumed)}"]
    return "\n".join(lines) + "\n"


def app(scheduler: Scheduler, leading: "LeadingFlag") -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=render(scheduler, leading.value), content_type="text/plain", charset="utf-8")

    a = web.Application()
    a.router.add_get("/healthz", healthz)
    a.router.add_get("/metrics", metrics)
    return a


class LeadingFlag:
    """Whether this instance schedules now; shared with the HTTP handlers."""

    def __init__(self, value: bool) -> None:
        self.value = value
