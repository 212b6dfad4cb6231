"""Pure rollout arithmetic of the Deployment controller and the ReplicaSet's choices."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from controllers import deploymentutil as du
from controllers.replicaset import compute_status, deletion_rank
from controllers.util import int_or_percent, template_hash
from pklib.api.podtemplate import HASH_LABEL, same_template


def deploy(replicas: int, surge: Any = "25%", unavailable: Any = "25%", kind: str = "RollingUpdate",
           **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "d", "generation": 2},
            "spec": {"replicas": replicas, "strategy": {"type": kind, "rollingUpdate": {
                "maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"image": "a"}]}}, **spec}}


def rs(name: str, replicas: int, available: int = 0, status_replicas: int | None = None, revision: int = 1,
       created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "annotations": {du.REVISION: str(revision)}},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas if status_replicas is None else status_replicas,
                       "availableReplicas": available}}


@pytest.mark.parametrize("value,total,up,expected", [
    (2, 10, True, 2), ("25%", 10, True, 3), ("25%", 10, False, 2), ("100%", 3, False, 3), ("0%", 5, True, 0),
])
def test_int_or_percent(value: Any, total: int, up: bool, expected: int) -> None:
    assert int_or_percent(value, total, up) == expected


def test_fenceposts_round_surge_up_unavailable_down_and_never_both_zero() -> None:
    assert du.fenceposts(deploy(10)) == (3, 2)
    assert du.fenceposts(deploy(3, surge=0, unavailable=0)) == (0, 1)
    assert du.fenceposts(deploy(3, kind="Recreate")) == (0, 0)


def test_new_rs_grows_only_within_surge() -> None:
    d = deploy(4, surge=1, unavailable=1)
    old, new = rs("old", 4, 4), rs("new", 0)
    assert du.new_rs_replicas(d, [old, new], new) == 1  # 4 + 1 surge = 5 total
    old2 = rs("old", 3, 3, status_replicas=4)  # scaled down, but its 4th pod still exists
    assert du.new_rs_replicas(d, [old2, rs("new", 1)], rs("new", 1)) == 1, "pods still present count"
    old3 = rs("old", 3, 3)
    assert du.new_rs_replicas(d, [old3, rs("new", 1)], rs("new", 1)) == 2
    assert du.new_rs_replicas(d, [rs("new", 6)], rs("new", 6)) == 4, "never above replicas once all new"


def test_old_scale_down_keeps_minimum_available() -> None:
    d = deploy(4, surge=1, unavailable=1)
    new = rs("new", 1, available=0)
    # total 5, min available 3, one new replica not available: 5 - 3 - 1 = 1
    assert du.max_old_scale_down(d, [rs("old", 4, 4), new], new) == 1
    ready_new = rs("new", 2, available=2)
    assert du.max_old_scale_down(d, [rs("old", 3, 3), ready_new], ready_new) == 2


def test_status_and_conditions() -> None:
    d = deploy(3, surge=1, unavailable=1)
    new = rs("new", 3, available=3)
    new["status"]["readyReplicas"] = 3
    status = du.calculate_status(d, [rs("old", 0), new], new)
    assert status["updatedReplicas"] == 3 and status["availableReplicas"] == 3
    assert status["unavailableReplicas"] == 0 and status["observedGeneration"] == 2
    assert du.get_condition(status, "Available")["status"] == "True"
    assert du.is_complete(d, status)
    low = du.calculate_status(d, [rs("new", 3, available=1)], rs("new", 3, available=1))
    assert du.get_condition(low, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert not du.is_complete(d, low)


def test_set_condition_keeps_transition_time_while_status_holds() -> None:
    status: dict[str, Any] = {"conditions": [{"type": "Progressing", "status": "True", "reason": "A", "message": "m",
                                              "lastTransitionTime": "2020-01-01T00:00:00Z",
                                              "lastUpdateTime": "2020-01-01T00:00:00Z"}]}
    du.set_condition(status, "Progressing", "True", "B", "n")
    cond = du.get_condition(status, "Progressing")
    assert cond["lastTransitionTime"] == "2020-01-01T00:00:00Z" and cond["lastUpdateTime"] != cond["lastTransitionTime"]
    du.set_condition(status, "Progressing", "False", "C", "o")
    assert du.get_condition(status, "Progressing")["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_new_rs_is_found_ignoring_the_hash_label() -> None:
    d = deploy(1)
    same = rs("same", 1)
    same["spec"]["template"] = {"metadata": {"labels": {"app": "d", HASH_LABEL: "x"}},
                                "spec": {"containers": [{"image": "a"}]}}
    other = rs("other", 1)
    other["spec"]["template"] = {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"image": "b"}]}}
    assert du.find_new_rs(d, [other, same]) is same


# A pod template as the apiserver stores it (defaulted), and the same template as `kubectl rollout undo`
# sends it back: Go's encoder writes empty structs and null timestamps, which are no change at all.
STORED: dict[str, Any] = {
    "metadata": {"labels": {"app": "d", HASH_LABEL: "5d8f7c9b4x"}},
    "spec": {"containers": [{"name": "c", "image": "a", "terminationMessagePolicy": "File"}],
             "securityContext": {}, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30}}
FROM_KUBECTL: dict[str, Any] = {
    "metadata": {"creationTimestamp": None, "labels": {"app": "d"}},
    "spec": {"containers": [{"name": "c", "image": "a", "terminationMessagePolicy": "File",
                             "resources": {}, "args": [], "env": None}],
             "securityContext": {}, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30}}


def test_templates_differing_only_by_empty_fields_and_hash_label_are_the_same() -> None:
    assert same_template(STORED, FROM_KUBECTL) and same_template(FROM_KUBECTL, STORED)
    nested = copy.deepcopy(FROM_KUBECTL)
    nested["spec"]["containers"][0]["resources"] = {"limits": {}, "requests": None}
    assert same_template(STORED, nested), "a map holding only empty maps is empty too"
    assert STORED["metadata"]["labels"][HASH_LABEL] == "5d8f7c9b4x", "the inputs are not changed"
    assert "resources" in FROM_KUBECTL["spec"]["containers"][0]


@pytest.mark.parametrize("change", [
    lambda t: t["spec"]["containers"][0].update(image="b"),
    lambda t: t["spec"]["containers"][0].update(resources={"limits": {"cpu": "1"}}),
    lambda t: t["spec"]["containers"][0].update(args=[""]),
    lambda t: t["spec"].update(terminationGracePeriodSeconds=0),
    lambda t: t["spec"]["containers"].append({"name": "d", "image": "a"}),
    lambda t: t["spec"].update(volumes=[{"name": "v", "emptyDir": {}}]),
    lambda t: t["metadata"]["labels"].update(app="e"),
])
def test_real_template_changes_still_count(change: Any) -> None:
    changed = copy.deepcopy(FROM_KUBECTL)
    change(changed)
    assert not same_template(STORED, changed)


def test_kubectl_undo_template_finds_the_replicaset_it_came_from() -> None:
    d = deploy(1)
    d["spec"]["template"] = copy.deepcopy(FROM_KUBECTL)
    newer, old = rs("newer", 1, revision=2, created="2026-01-02T00:00:00Z"), rs("old", 0, revision=1)
    newer["spec"]["template"] = {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"image": "z"}]}}
    old["spec"]["template"] = copy.deepcopy(STORED)
    assert du.find_new_rs(d, [newer, old]) is old


def test_replicaset_names_keep_their_hash() -> None:
    """The hash names ReplicaSets that already exist: it must not change between versions of pkube, or a
    restarted controller-manager would no longer recognise its own ReplicaSets by name (collisions)."""
    assert template_hash(STORED) == template_hash(copy.deepcopy(STORED))
    defaulted = {"metadata": {"labels": {"app": "web"}},
                 "spec": {"containers": [{"name": "c", "image": "busybox:1", "imagePullPolicy": "IfNotPresent",
                                          "terminationMessagePath": "/dev/termination-log",
                                          "terminationMessagePolicy": "File"}],
                          "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                          "securityContext": {}, "schedulerName": "default-scheduler", "enableServiceLinks": True}}
    # Values computed by the hash as it was before empty fields stopped counting in comparisons.
    assert (template_hash(defaulted), template_hash(defaulted, 1)) == ("969cr6kmfx", "wbgwz5444l")


def test_new_replicaset_gets_the_deployment_annotations_but_not_its_bookkeeping() -> None:
    d = deploy(1)
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "image a", "team": "web",
                                    du.REVISION: "7", du.DESIRED_REPLICAS: "9", du.MAX_REPLICAS: "9",
                                    du.REVISION_HISTORY: "1,2", "deprecated.deployment.rollback.to": "1",
                                    "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert du.new_rs_annotations(d, {}, 3) == {"kubernetes.io/change-cause": "image a", "team": "web",
                                               du.REVISION: "3"}
    current = {du.REVISION: "3", "kubernetes.io/change-cause": "image a", "only-on-rs": "x", du.DESIRED_REPLICAS: "1"}
    d["metadata"]["annotations"]["kubernetes.io/change-cause"] = "image b"
    assert du.new_rs_annotations(d, current, 3) == {**current, "kubernetes.io/change-cause": "image b",
                                                    "team": "web"}, "synced, nothing removed, revision kept"
    assert du.new_rs_annotations(d, {**current, du.REVISION: "5"}, 3)[du.REVISION] == "5", "never lowered"


def test_a_replicaset_brought_back_remembers_its_earlier_revisions() -> None:
    d = deploy(1)
    back = du.new_rs_annotations(d, {du.REVISION: "1"}, 3)
    assert (back[du.REVISION], back[du.REVISION_HISTORY]) == ("3", "1")
    again = du.new_rs_annotations(d, back, 5)
    assert (again[du.REVISION], again[du.REVISION_HISTORY]) == ("5", "1,3")
    long = ",".join(str(n) for n in range(1000, 1400))  # 1999 characters
    trimmed = du.new_rs_annotations(d, {du.REVISION: "1400", du.REVISION_HISTORY: long}, 1401)[du.REVISION_HISTORY]
    assert len(trimmed) <= du.MAX_REVISION_HISTORY_CHARS
    assert trimmed.endswith(",1399,1400") and not trimmed.startswith("1000,"), "the oldest entries go first"


def test_history_cleanup_deletes_oldest_idle_revisions() -> None:
    d = deploy(1, revisionHistoryLimit=1)
    olds = [rs("r1", 0, revision=1), rs("r2", 0, revision=2), rs("r3", 0, revision=3), rs("busy", 1, revision=0)]
    assert [r["metadata"]["name"] for r in du.history_to_delete(d, olds)] == ["r1", "r2"]


def test_proportional_scaling_spreads_and_sums() -> None:
    d = deploy(10)
    shares = du.proportions(d, [rs("a", 6, created="2026-01-01T00:00:00Z"), rs("b", 3)], 4)
    assert sum(shares.values()) == 4 and shares["a"] >= shares.get("b", 0)
    down = du.proportions(d, [rs("a", 6), rs("b", 3)], -3)
    assert sum(down.values()) == -3


def test_template_hash_is_stable_and_label_safe() -> None:
    t = {"spec": {"containers": [{"image": "a", "name": "c"}]}}
    h = template_hash(t)
    assert h == template_hash({"spec": {"containers": [{"name": "c", "image": "a"}]}}), "key order does not matter"
    assert h != template_hash(t, collision_count=1)
    assert len(h) == 10 and h.isalnum() and h.islower()


def _pod(name: str, node: str | None, phase: str, ready: bool, created: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created, "labels": {"app": "d"}},
            "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                       "lastTransitionTime": created}]}}


def test_scale_down_prefers_unscheduled_then_not_ready_then_newest() -> None:
    pods = [
        _pod("old-ready", "n1", "Running", True, "2026-01-01T00:00:00Z"),
        _pod("new-ready", "n1", "Running", True, "2026-01-02T00:00:00Z"),
        _pod("not-ready", "n1", "Running", False, "2026-01-01T00:00:00Z"),
        _pod("pending", "n1", "Pending", False, "2026-01-01T00:00:00Z"),
        _pod("unscheduled", None, "Pending", False, "2026-01-01T00:00:00Z"),
    ]
    order = [p["metadata"]["name"] for p in sorted(pods, key=deletion_rank)]
    assert order == ["unscheduled", "pending", "not-ready", "new-ready", "old-ready"]


def test_replicaset_status_counts() -> None:
    rs_obj = {"metadata": {"generation": 4}, "spec": {"minReadySeconds": 0,
                                                      "template": {"metadata": {"labels": {"app": "d", "v": "1"}}}}}
    pods = [_pod("a", "n", "Running", True, "2026-01-01T00:00:00Z"), _pod("b", "n", "Running", False,
                                                                            "2026-01-01T00:00:00Z")]
    pods[0]["metadata"]["labels"]["v"] = "1"
    assert compute_status(rs_obj, pods) == {"replicas": 2, "fullyLabeledReplicas": 1, "readyReplicas": 1,
                                            "availableReplicas": 1, "observedGeneration": 4}
