"""pklib/api: the Kubernetes semantics shared by every component, checked against Kubernetes' own cases
(core/v1 toleration_test.go, component-helpers nodeaffinity_test.go, qos_test.go, resource helpers_test.go)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from pklib.api.nodeaffinity import node_selector_matches, pod_matches_node, requirement_matches
from pklib.api.podresources import pod_amounts
from pklib.api.qos import qos_class
from pklib.api.timefmt import format_micro_time, format_time, parse_time
from pklib.api.tolerations import tolerates, untolerated, with_daemon_tolerations

TAINT = {"key": "foo", "value": "bar", "effect": "NoSchedule"}


@pytest.mark.parametrize("toleration, expected", [
    ({}, False),                                                            # empty key + Equal: values differ
    ({"operator": "Exists"}, True),                                         # empty key + Exists: everything
    ({"key": "foo", "operator": "Exists"}, True),
    ({"key": "foo", "operator": "Exists", "effect": "NoSchedule"}, True),
    ({"key": "foo", "operator": "Exists", "effect": "NoExecute"}, False),   # other effect
    ({"key": "foo", "value": "bar"}, True),                                 # empty operator means Equal
    ({"key": "foo", "operator": "Equal", "value": "bar"}, True),
    ({"key": "foo", "operator": "Equal", "value": "baz"}, False),
    ({"key": "foo", "operator": "Equal"}, False),                           # value "" != "bar"
    ({"key": "other", "operator": "Exists"}, False),
    ({"key": "foo", "operator": "Gt", "value": "bar"}, False),              # unknown operator tolerates nothing
    ({"operator": "Exists", "effect": "NoSchedule"}, True),
])
def test_toleration_matching(toleration: dict[str, Any], expected: bool) -> None:
    assert tolerates(toleration, TAINT) is expected


def test_untolerated_keeps_only_the_asked_effects() -> None:
    taints = [TAINT, {"key": "x", "effect": "NoExecute"}, {"key": "y", "effect": "PreferNoSchedule"}]
    assert untolerated(taints, [], ("NoExecute",)) == [taints[1]]
    assert untolerated(taints, [{"key": "foo", "operator": "Exists"}], ("NoSchedule", "NoExecute")) == [taints[1]]


def test_daemon_pods_tolerate_node_loss_forever_and_keep_their_other_tolerations() -> None:
    own = [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},
           {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 5}]
    got = with_daemon_tolerations(own)
    assert got[0] == own[0]
    lost = [t for t in got if t.get("key") == "node.kubernetes.io/unreachable"]
    assert lost == [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
    taints = [{"key": k, "effect": "NoExecute"} for k in ("node.kubernetes.io/not-ready",
                                                            "node.kubernetes.io/unreachable")]
    assert untolerated(taints, with_daemon_tolerations(None), ("NoExecute",)) == []
    assert untolerated([{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}], got, ("NoSchedule",))


LABELS = {"zone": "a", "cores": "8", "gpu": ""}


@pytest.mark.parametrize("requirement, expected", [
    ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
    ({"key": "zone", "operator": "In", "values": ["b"]}, False),
    ({"key": "missing", "operator": "In", "values": ["a"]}, False),
    ({"key": "zone", "operator": "NotIn", "values": ["b"]}, True),
    ({"key": "missing", "operator": "NotIn", "values": ["b"]}, True),
    ({"key": "gpu", "operator": "Exists"}, True),
    ({"key": "gpu", "operator": "DoesNotExist"}, False),
    ({"key": "missing", "operator": "DoesNotExist"}, True),
    ({"key": "cores", "operator": "Gt", "values": ["4"]}, True),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, False),
    ({"key": "cores", "operator": "Lt", "values": ["9"]}, True),
    ({"key": "cores", "operator": "Gt", "values": ["4", "5"]}, False),      # exactly one value
    ({"key": "zone", "operator": "Gt", "values": ["1"]}, False),            # not an integer
    ({"key": "cores", "operator": "Gt", "values": ["x"]}, False),
    ({"key": "missing", "operator": "Lt", "values": ["1"]}, False),
    ({"key": "zone", "operator": "Bogus", "values": ["a"]}, False),
])
def test_node_selector_requirements(requirement: dict[str, Any], expected: bool) -> None:
    assert requirement_matches(requirement, LABELS) is expected


def test_terms_are_ored_expressions_anded_and_empty_terms_match_nothing() -> None:
    zone_a = {"key": "zone", "operator": "In", "values": ["a"]}
    zone_b = {"key": "zone", "operator": "In", "values": ["b"]}
    assert node_selector_matches({"nodeSelectorTerms": [{"matchExpressions": [zone_b]},
                                                        {"matchExpressions": [zone_a]}]}, LABELS, "n1")
    assert not node_selector_matches({"nodeSelectorTerms": [{"matchExpressions": [zone_a, zone_b]}]}, LABELS, "n1")
    assert not node_selector_matches({"nodeSelectorTerms": [{}]}, LABELS, "n1")
    assert not node_selector_matches({"nodeSelectorTerms": []}, LABELS, "n1")
    assert node_selector_matches(None, LABELS, "n1")
    by_name = {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}
    assert node_selector_matches(by_name, {}, "n1") and not node_selector_matches(by_name, {}, "n2")
    other_field = {"nodeSelectorTerms": [{"matchFields": [{"key": "spec.x", "operator": "Exists"}]}]}
    assert not node_selector_matches(other_field, {}, "n1")


def test_pod_matches_node_needs_selector_and_affinity() -> None:
    spec = {"nodeSelector": {"zone": "a"}, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}
    assert pod_matches_node(spec, LABELS, "n")
    assert not pod_matches_node(spec, {**LABELS, "zone": "b"}, "n")
    assert not pod_matches_node(spec, {**LABELS, "cores": "2"}, "n")
    assert pod_matches_node({}, {}, "n")


def _spec(*resources: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)],
            "initContainers": [{"name": f"i{i}", "resources": r} for i, r in enumerate(init)]}


GUARANTEED = {"limits": {"cpu": "1", "memory": "1Gi"}}


@pytest.mark.parametrize("spec, qos", [
    (_spec({}), "BestEffort"),
    (_spec({"requests": {"nvidia.com/gpu": "1"}}), "BestEffort"),           # only cpu and memory count
    (_spec({"requests": {"cpu": "0"}}), "BestEffort"),                       # zero counts as unset
    (_spec(GUARANTEED), "Guaranteed"),                                       # requests default to limits
    (_spec({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}),
     "Guaranteed"),
    (_spec(GUARANTEED, GUARANTEED), "Guaranteed"),
    (_spec(GUARANTEED, {}), "Burstable"),                                    # one container without limits
    (_spec({"limits": {"cpu": "1"}}), "Burstable"),                          # memory not limited
    (_spec({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}), "Burstable"),
    (_spec({"requests": {"memory": "1Gi"}}), "Burstable"),
    (_spec(GUARANTEED, init=({"requests": {"cpu": "100m"}},)), "Burstable"),  # init containers count
    (_spec(GUARANTEED, init=(GUARANTEED,)), "Guaranteed"),
    ({"containers": ["not a dict", {"resources": {"limits": "bad"}}]}, "BestEffort"),  # not validated yet
])
def test_qos_class(spec: dict[str, Any], qos: str) -> None:
    assert qos_class(spec) == qos


def test_pod_amounts_sum_app_containers_take_the_larger_init_and_add_overhead() -> None:
    spec = _spec({"requests": {"cpu": "100m", "memory": "64Mi"}}, {"requests": {"cpu": "200m"}},
                 init=({"requests": {"cpu": "500m", "memory": "32Mi"}},))
    spec["overhead"] = {"cpu": "10m"}
    got = pod_amounts(spec)
    assert (str(got["cpu"]), str(got["memory"])) == ("510m", "64Mi")
    assert str(pod_amounts(_spec({"limits": {"memory": "64Mi"}}, {"limits": {"memory": "64Mi"}}), "limits")["memory"]) \
        == "128Mi"


def test_pod_amounts_defaults_stand_in_for_missing_requests() -> None:
    from pklib.quantity import parse_quantity
    defaults = {"cpu": parse_quantity("100m"), "memory": parse_quantity("200Mi")}
    got = pod_amounts(_spec({}, {"requests": {"cpu": "1"}}), defaults=defaults)
    assert (got["cpu"].milli_value(), str(got["memory"])) == (1100, "400Mi")


def test_timestamps() -> None:
    t = datetime(2026, 11, 22, 2, 37, 34, 888597, tzinfo=timezone.utc)
    assert format_time(t) == "2026-11-22T02:37:34Z"
    assert format_micro_time(t) == "2026-11-22T02:37:34.888597Z"
    assert parse_time("2026-11-22T02:37:34.888597Z") == t
    assert parse_time("2026-11-22T02:37:34Z") == t.replace(microsecond=0)
    assert parse_time(None) is None and parse_time("") is None and parse_time("yesterday") is None
