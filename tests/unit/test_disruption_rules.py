"""pklib.api.disruption: which pods a budget covers, which count, and its DisruptionAllowed condition."""
from __future__ import annotations

from typing import Any

from pklib.api.disruption import SYNC_FAILED, ignores_budget, selects, set_allowed_condition


def test_selector_semantics_of_policy_v1() -> None:
    assert selects({"spec": {"selector": {}}}, {"any": "thing"})  # empty: every pod of the namespace
    assert not selects({"spec": {}}, {"app": "web"})  # missing: none
    assert selects({"spec": {"selector": {"matchLabels": {"app": "web"}}}}, {"app": "web", "x": "y"})
    assert not selects({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}}, {"a": "b"})


def test_pods_that_need_no_budget() -> None:
    def pod(phase: str, deleting: bool = False) -> dict[str, Any]:
        return {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {},
                "status": {"phase": phase}}
    assert [ignores_budget(pod(p)) for p in ("Pending", "Running", "Succeeded", "Failed")] == [True, False, True, True]
    assert ignores_budget(pod("Running", deleting=True))


def test_condition_moves_its_transition_time_only_when_it_flips() -> None:
    pdb = {"metadata": {"generation": 3}}
    status: dict[str, Any] = {"disruptionsAllowed": 1}
    set_allowed_condition(pdb, status, "", "", "t1")
    assert status["conditions"] == [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                                     "message": "", "observedGeneration": 3, "lastTransitionTime": "t1"}]
    set_allowed_condition(pdb, status, "", "", "t2")
    assert status["conditions"][0]["lastTransitionTime"] == "t1"
    status["disruptionsAllowed"] = 0
    set_allowed_condition(pdb, status, "", "", "t3")
    assert (status["conditions"][0]["status"], status["conditions"][0]["reason"],
            status["conditions"][0]["lastTransitionTime"]) == ("False", "InsufficientPods", "t3")
    status["disruptionsAllowed"] = 2
    set_allowed_condition(pdb, status, SYNC_FAILED, "found no controller ref for pod \"x\"", "t4")
    assert (status["conditions"][0]["status"], status["conditions"][0]["reason"],
            status["conditions"][0]["lastTransitionTime"]) == ("False", "SyncFailed", "t3")
