"""A successor named by its supervisor takes its dead predecessor's Lease without waiting the Lease out, but only
after PREDECESSOR_SETTLE seconds: the predecessor's last requests may still be landing. Against a fake Lease API."""
from __future__ import annotations

import copy
import time
from datetime import timedelta
from typing import Any

import pytest

from pklib import leaderelection
from pklib.api.timefmt import format_micro_time, now
from pklib.errors import ApiError
from pklib.leaderelection import LeaderElector


class LeaseApi:
    def __init__(self, holder: str) -> None:
        self.lease: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "sched", "namespace": "kube-system", "resourceVersion": "1"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 60, "renewTime": "2026-01-01T00:00:00.000000Z"}}
        self.taken_at: float | None = None

    async def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self.lease)

    async def update(self, res: Any, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise ApiError({"code": 409, "reason": "Conflict", "message": "the object has been modified"})
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        self.taken_at = time.monotonic()
        return copy.deepcopy(self.lease)


async def test_the_successor_takes_the_lease_after_the_settle_time_not_the_lease_duration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaderelection, "PREDECESSOR_SETTLE", 0.5)
    api = LeaseApi("cp_old")
    elector = LeaderElector(api, "sched", identity="cp_new", predecessor="cp_old",  # type: ignore[arg-type]
                            lease_duration=60, renew_deadline=40, retry_period=0.2)
    started = time.monotonic()
    await elector.acquire()
    assert api.lease["spec"]["holderIdentity"] == "cp_new" and elector.is_leader
    assert api.taken_at is not None and 0.5 <= api.taken_at - started < 5


async def test_a_candidate_naming_another_predecessor_waits_for_the_holder() -> None:
    api = LeaseApi("cp_old")
    elector = LeaderElector(api, "sched", identity="cp_new", predecessor="cp_other",  # type: ignore[arg-type]
                            lease_duration=60, renew_deadline=40, retry_period=0.2)
    assert not await elector._try_acquire_or_renew()
    assert api.lease["spec"]["holderIdentity"] == "cp_old"


async def test_the_settle_time_counts_from_the_predecessors_exit_when_the_supervisor_tells_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaderelection, "PREDECESSOR_SETTLE", 3.0)
    api = LeaseApi("cp_old")
    # It died 2.5 s ago (its successor took that long to start): half a second of the settle time is left.
    elector = LeaderElector(api, "sched", identity="cp_new", predecessor="cp_old",  # type: ignore[arg-type]
                            predecessor_exited=time.time() - 2.5, lease_duration=60, renew_deadline=40,
                            retry_period=0.2)
    started = time.monotonic()
    await elector.acquire()
    assert api.taken_at is not None and 0.4 <= api.taken_at - started < 2.0


async def test_a_clock_stepped_back_does_not_make_the_successor_wait_longer_than_the_settle_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaderelection, "PREDECESSOR_SETTLE", 0.5)
    api = LeaseApi("cp_old")
    elector = LeaderElector(api, "sched", identity="cp_new", predecessor="cp_old",  # type: ignore[arg-type]
                            predecessor_exited=time.time() + 3600, lease_duration=60, renew_deadline=40,
                            retry_period=0.2)
    started = time.monotonic()
    await elector.acquire()
    assert api.taken_at is not None and 0.5 <= api.taken_at - started < 3


async def test_the_successor_stands_in_early_only_while_no_other_candidate_could_lead_first() -> None:
    """Its state-only controllers run while it waits (controllers/main.py) only when the predecessor renewed the
    Lease recently enough that nobody else may take it before the settle time is over."""
    def elector(renewed_ago: float, holder: str = "cp_old") -> LeaderElector:
        api = LeaseApi(holder)
        api.lease["spec"]["renewTime"] = format_micro_time(now() - timedelta(seconds=renewed_ago))
        api.lease["spec"]["leaseDurationSeconds"] = 15
        return LeaderElector(api, "sched", identity="cp_new", predecessor="cp_old",  # type: ignore[arg-type]
                             lease_duration=15, renew_deadline=10, retry_period=2)
    assert await elector(1).predecessor_holds()
    assert not await elector(10).predecessor_holds(), "15 s - 10 s left: a standby may take it within the settle"
    assert not await elector(1, holder="cp_other").predecessor_holds()
