"""Helpers for Job and CronJob tests: bodies, a clock the tests move, and pods finished as a kubelet would."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

from pklib.client import Client
from pklib.controller import Clock
from pklib.resources import PODS

Body = dict[str, Any]


def job_body(name: str, command: list[str] | None = None, image: str = "busybox", **spec: Any) -> Body:
    container = {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                 "command": command or ["true"]}
    pod_spec = {"restartPolicy": spec.pop("restartPolicy", "Never"), "terminationGracePeriodSeconds": 2,
                "containers": [container]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": pod_spec}, **spec}}


def cronjob_body(name: str, schedule: str, **spec: Any) -> Body:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": job_body("x")["spec"]}, **spec}}


class FakeClock(Clock):
    """Real time plus an offset the test advances (controllers compare it with the API's real timestamps)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


async def finish_pod(client: Client, pod: Body, exit_code: int = 0, at: datetime | None = None,
                     conditions: list[Body] | None = None) -> Body:
    """Write what a kubelet writes when a pod's one container exits: phase, the terminated state."""
    body = copy.deepcopy(pod)
    when = (at or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = body["spec"]["containers"][0]["name"]
    body["status"] = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": when},
                       *(conditions or [])],
        "containerStatuses": [{"name": name, "ready": False, "restartCount": 0, "image": "busybox",
                               "state": {"terminated": {"exitCode": exit_code, "finishedAt": when,
                                                        "reason": "Completed" if exit_code == 0 else "Error"}}}]}
    return await client.update_status(PODS, body)


def condition(obj: Body, type_: str) -> Body | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)
