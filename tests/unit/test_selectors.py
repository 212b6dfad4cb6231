from __future__ import annotations

import pytest

from pklib.selectors import (SelectorError, field_value, parse_field_selector, parse_label_selector,
                             selector_from_match)

LABELS = {"app": "web", "tier": "front", "example.com/team": "a"}


@pytest.mark.parametrize("text,expected", [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),  # != matches objects without the label, as in Kubernetes
    ("app in (web, db)", True),
    ("app in (db)", False),
    ("app notin (db,cache)", True),
    ("app notin (web)", False),
    ("missing notin (x)", True),
    ("tier", True),
    ("missing", False),
    ("!missing", True),
    ("!tier", False),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    ("example.com/team=a", True),
    ("app in (web,db),!missing,tier", True),
])
def test_label_selector_matches(text: str, expected: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is expected


@pytest.mark.parametrize("text", ["app=(", "a b", "=x", "app in (a", "app=web,", "bad key!=x", "app=has space"])
def test_label_selector_syntax_errors(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_label_selector_round_trips_to_string() -> None:
    sel = parse_label_selector("app=web,tier in (b,a),!x,y")
    assert parse_label_selector(str(sel)) == sel


def test_selector_from_match_labels_and_expressions() -> None:
    sel = selector_from_match({"matchLabels": {"app": "web"},
                               "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]},
                                                    {"key": "gone", "operator": "DoesNotExist"}]})
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "web"})
    with pytest.raises(SelectorError):
        selector_from_match({"matchExpressions": [{"key": "a", "operator": "Near"}]})


def test_field_selector() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1", "hostNetwork": True},
           "status": {"phase": "Running"}}
    fields = lambda sel: {f: field_value(pod, f) for f in sel.fields()}  # noqa: E731
    sel = parse_field_selector("spec.nodeName=n1,status.phase!=Pending")
    assert sel.matches(fields(sel))
    sel = parse_field_selector("spec.nodeName==n2")
    assert not sel.matches(fields(sel))
    sel = parse_field_selector("spec.nodeName=")  # unscheduled pods
    assert not sel.matches(fields(sel))
    assert field_value(pod, "spec.hostNetwork") == "true"
    assert parse_field_selector("metadata.namespace=ns").value_of("metadata.namespace") == "ns"
    with pytest.raises(SelectorError):
        parse_field_selector("spec.nodeName")
