"""Structural schemas of CRDs: the structural rules, pruning, defaulting and validation of custom resources."""
from __future__ import annotations

from typing import Any

from apiserver.kinds import crcel as crschema_cel, crschema
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
    assert v.causes(ok) == []
    bad = {"spec": {"count": "x", "limits": {"cpu": 1.5}, "template": {"kind": "Pod"}}}
    assert _fields(v.causes(bad)) == {
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


CEL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "messageExpression": "'min ' + string(self.min) + ' > max'"},
                {"rule": "self.lowerAscii() == self"},  # a Kubernetes library function cel-python lacks
            ],
            "properties": {
                "min": {"type": "integer"}, "max": {"type": "integer"},
                "id": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "id is immutable"}]},
                "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {
                              "name": {"type": "string"},
                              "number": {"type": "integer", "x-kubernetes-validations": [
                                  {"rule": "self >= oldSelf", "reason": "FieldValueForbidden",
                                   "message": "may only grow"}]}}}},
                "tags": {"type": "object", "additionalProperties": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self.startsWith('t-')", "fieldPath": ""}]}},
            },
        },
    },
}


def test_cel_rules_with_transitions_and_messages() -> None:
    obj = {"spec": {"min": 1, "max": 2, "id": "a", "ports": [{"name": "http", "number": 80}],
                    "tags": {"x": "t-1"}}}
    assert crschema_cel.check(CEL, obj) == []
    bad = {"spec": {"min": 3, "max": 2, "id": "b", "ports": [{"name": "web", "number": 1}, {"name": "http",
                                                                                         "number": 79}],
                    "tags": {"x": "y"}}}
    assert _fields(crschema_cel.check(CEL, bad, obj)) == {
        "spec": 'Invalid value: "object": min 3 > max',
        "spec.id": 'Invalid value: "string": id is immutable',
        "spec.ports[1].number": "Forbidden: may only grow",  # correlated by name: the new "web" item has no old
        "spec.tags[x]": "Invalid value: \"string\": failed rule: self.startsWith('t-')",
    }
    # Transition rules wait for an old object: a create is not judged by them.
    assert _fields(crschema_cel.check(CEL, bad)).keys() == {"spec", "spec.tags[x]"}


def test_cel_rules_compile_when_the_crd_is_written() -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self."}, {"rule": "self.a > 1"}]}
    causes = crschema_cel.rule_errors(schema, Path("s"))
    assert [c["field"] for c in causes] == ["s.x-kubernetes-validations[0].rule"]
    assert causes[0]["message"].startswith('Invalid value: "self.": compilation failed:')


def test_list_types_set_and_map_hold_no_duplicates() -> None:
    schema = {"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}}}},
        "free": {"type": "array", "items": {"type": "string"}}}}
    obj = {"tags": ["a", "b", "a"], "ports": [{"name": "x", "n": 1}, {"name": "x", "n": 2}], "free": ["a", "a"]}
    assert _fields(crschema.list_errors(schema, obj)) == {"tags[2]": 'Duplicate value: "a"',
                                                        "ports[1]": 'Duplicate value: {"name":"x"}'}
