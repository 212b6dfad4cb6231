"""kubectl-style JSONPath templates."""
from __future__ import annotations

import pytest

from pkctl.jsonpath import JSONPathError, parse, render

POD_LIST = {"kind": "List", "items": [
    {"metadata": {"name": "a", "labels": {"app": "web", "k8s.io/role": "x"}},
     "spec": {"containers": [{"name": "c1", "image": "busybox"}, {"name": "c2", "image": "nginx"}]},
     "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"restartCount": 2}]}},
    {"metadata": {"name": "b", "labels": {"app": "db"}},
     "spec": {"containers": [{"name": "c", "image": "redis"}]},
     "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"restartCount": 0}]}},
]}


@pytest.mark.parametrize("template, expected", [
    ("{.items[*].metadata.name}", "a b"),
    ("{.items[0].metadata.name}", "a"),
    ("{.items[-1].metadata.name}", "b"),
    ("{$.items[0:1].spec.containers[*].image}", "busybox nginx"),
    ('{range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}', "a\tRunning\nb\tPending\n"),
    ('{.items[?(@.status.phase=="Pending")].metadata.name}', "b"),
    ("{.items[?(@.status.containerStatuses[0].restartCount>1)].metadata.name}", "a"),
    ('{range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}', "True False "),
    ("{.items[0].metadata.labels}", '{"app":"web","k8s.io/role":"x"}'),
    ("{.items[0].metadata.labels['k8s.io/role']}", "x"),
    ("{..image}", "busybox nginx redis"),
    ("{.items[*].metadata.missing}", ""),
    ("names: {.items[1].metadata.name}!", "names: b!"),
    ("{.items[?(@.spec.nodeName)].metadata.name}", ""),
    ("{.kind}", "List"),
])
def test_templates(template: str, expected: str) -> None:
    assert render(parse(template), POD_LIST) == expected


@pytest.mark.parametrize("template", ["{.items[0", "{range .items[*]}{.x}", "{end}", "{.a", "{.items[?(@.x=)]}"])
def test_bad_templates_raise(template: str) -> None:
    with pytest.raises(JSONPathError):
        parse(template)


def test_sort_key_puts_missing_first_and_numbers_by_value() -> None:
    from pkctl.jsonpath import parse_path, sort_key
    path = parse_path(".spec.replicas")
    objs: list[dict[str, dict[str, int]]] = [{"spec": {"replicas": 10}}, {"spec": {}}, {"spec": {"replicas": 9}}]
    assert [o["spec"].get("replicas") for o in sorted(objs, key=lambda o: sort_key(path, o))] == [None, 9, 10]
