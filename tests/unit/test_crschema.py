"""Structural schemas of CRDs: the structural rules, pruning, defaulting and validation of custom resources."""
from __future__ import annotations

from typing import Any

from apiserver.kinds import crschema
from apiserver.kinds.fields import Path
from pklib.api.customresources import served_versions, version_priority

EMBEDDED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {
            "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                         "x-kubernetes-preserve-unknown-fields": True},
            "nick": {"type": "string", "nullable": True},
            "count": {"type": "integer", "default": 2},
            "modes": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "on": {"type": "boolean", "default": True}}}},
            "limits": {"type": "object", "additionalProperties": {"x-kubernetes-int-or-string": True}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"known": {"type": "integer", "default": 1}}},
        }},
    },
}


def _fields(causes: list[dict[str, str]]) -> dict[str, str]:
    return {c["field"]: c["message"] for c in causes}


def test_structural_rules_name_the_schema_fields() -> None:
    schema = {"type": "object", "properties": {
        "spec": {"properties": {"a": {"type": "string"}}},
        "list": {"type": "array"},
        "both": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
        "keep": {"type": "object", "x-kubernetes-preserve-unknown-fields": False},
        "ios": {"x-kubernetes-int-or-string": True, "type": "string"},
        "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
    }}
    causes = _fields(crschema.structural_errors(schema, Path("s")))
    assert causes["s.properties[spec].type"] == "Required value: must not be empty for specified object fields"
    assert causes["s.properties[list].items"] == "Required value: must be specified"
    assert causes["s.properties[both].additionalProperties"] == \
        "Forbidden: additionalProperties and properties are mutual exclusive"
    assert causes["s.properties[keep].x-kubernetes-preserve-unknown-fields"] == \
        "Invalid value: false: must be true or undefined"
    assert causes["s.properties[ios].type"].endswith("must be empty if x-kubernetes-int-or-string is true")
    assert causes["s.properties[metadata]"].startswith("Forbidden: must not specify anything other than name")
    assert _fields(crschema.structural_errors({"properties": {}}, Path("s"))) == {
        "s.type": "Required value: must not be empty at the root"}
    assert crschema.structural_errors(EMBEDDED, Path("s")) == []


def test_pruning_keeps_what_the_schema_knows_or_preserves() -> None:
    obj = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "junk": 1,
           "spec": {"nick": None, "count": None, "gone": True,
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "anything": [1]},
                    "modes": [{"name": "a", "extra": 1}], "limits": {"cpu": "1", "mem": 5},
                    "free": {"whatever": {"deep": 1}, "known": 3}}}
    crschema.prune(obj, EMBEDDED)
    assert "junk" not in obj and obj["metadata"] == {"name": "n"}
    spec = obj["spec"]
    assert spec["nick"] is None and "count" not in spec and "gone" not in spec  # nulls only where nullable
    assert spec["template"]["anything"] == [1] and spec["modes"] == [{"name": "a"}]
    assert spec["limits"] == {"cpu": "1", "mem": 5} and spec["free"] == {"whatever": {"deep": 1}, "known": 3}


def test_defaults_fill_absent_fields_top_down() -> None:
    obj: dict[str, Any] = {"spec": {"modes": [{"name": "a"}, {"name": "b", "on": False}], "free": {}}}
    crschema.apply_defaults(obj, EMBEDDED)
    assert obj["spec"]["count"] == 2
    assert obj["spec"]["modes"] == [{"name": "a", "on": True}, {"name": "b", "on": False}]
    assert obj["spec"]["free"] == {"known": 1}


def test_validation_with_kubernetes_extensions() -> None:
    v = crschema.validator(EMBEDDED)
    ok = {"spec": {"nick": None, "limits": {"cpu": 1, "mem": "1Gi"},
                   "template": {"apiVersion": "v1", "kind": "Pod"}}}
    assert crschema.validate(v, ok) == []
    bad = {"spec": {"count": "x", "limits": {"cpu": 1.5}, "template": {"kind": "Pod"}}}
    assert _fields(crschema.validate(v, bad)) == {
        "spec.count": 'Invalid value: "x": spec.count in body must be of type integer: "x"',
        "spec.limits.cpu": "Invalid value: 1.5: spec.limits.cpu in body must be of type integer or string: 1.5",
        "spec.template.apiVersion": "Required value",
    }


def test_version_priority_orders_like_kubernetes() -> None:
    names = ["v1alpha1", "foo", "v2beta1", "v1", "v1beta2", "v2", "v1beta1", "v11alpha2"]
    assert sorted(names, key=version_priority) == ["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v11alpha2",
                                                   "v1alpha1", "foo"]
    crd = {"spec": {"versions": [{"name": "v1beta1", "served": True}, {"name": "v1", "served": True},
                                 {"name": "v2", "served": False}]}}
    assert [v["name"] for v in served_versions(crd)] == ["v1", "v1beta1"]
