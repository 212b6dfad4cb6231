"""Reading -f sources and resolving objects to resources/namespaces, and the apply annotation."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pklib.api.wellknown import LAST_APPLIED_ANNOTATION as LAST_APPLIED
from pkctl.commands.apply import last_applied_of, with_last_applied
from pkctl.errors import CommandError
from pkctl.manifests import ManifestError, parse, place, read_all
from pkctl.targets import parse_targets

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
"""


def test_multi_document_yaml_skips_empty_documents() -> None:
    docs = parse("---\n" + DEPLOY + "---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", "f.yaml")
    assert [(m.obj["kind"], m.name, m.source) for m in docs] == [("Deployment", "web", "f.yaml"),
                                                                 ("ConfigMap", "c", "f.yaml")]


def test_lists_are_flattened_and_typed_lists_give_their_items_a_kind() -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "PodList", "items": [{"metadata": {"name": "p"}}]}]}
    docs = parse(json.dumps(doc), "list.json")
    assert [(m.obj["apiVersion"], m.obj["kind"], m.name) for m in docs] == [("v1", "ConfigMap", "a"),
                                                                             ("v1", "Pod", "p")]


@pytest.mark.parametrize("text, message", [
    ("kind: Pod\nmetadata:\n  name: x\n  labels: [a\n", "error parsing f.yaml: yaml: line 5:"),
    ("apiVersion: v1\nmetadata: {}\n", "kind not set"),
    ("- a\n- b\n", "expected an object"),
    ('{"apiVersion": "v1",\n "kind": }', "error parsing f.yaml: invalid JSON: line 2"),
])
def test_bad_documents_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        parse(text, "f.yaml")
    assert message in str(e.value)


def test_directories_recursion_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DEPLOY)
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text('{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}')
    assert [m.name for m in read_all([str(tmp_path)])] == ["web"]
    assert [m.name for m in read_all([str(tmp_path)], recursive=True)] == ["web", "n"]
    assert [m.source for m in read_all(["-"], stdin=io.StringIO(DEPLOY))] == ["STDIN"]
    with pytest.raises(ManifestError, match='the path "nope.yaml" does not exist'):
        read_all(["nope.yaml"])


def test_place_fills_the_namespace_and_rejects_unknown_kinds_and_conflicts() -> None:
    [m] = parse(DEPLOY, "f.yaml")
    p = place(m, "team", namespace_given=False)
    assert p.res.plural == "deployments" and p.namespace == "team" and p.obj["metadata"]["namespace"] == "team"
    assert "namespace" not in m.obj["metadata"], "the parsed manifest itself stays untouched"
    [ns] = parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n", "f.yaml")
    assert place(ns, "team", namespace_given=True).namespace is None
    [other] = parse(DEPLOY.replace("name: web", "name: web\n  namespace: prod"), "f.yaml")
    assert place(other, "team", namespace_given=False).namespace == "prod"
    with pytest.raises(ManifestError, match="does not match the namespace"):
        place(other, "team", namespace_given=True)
    [widget] = parse("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", "w.yaml")
    with pytest.raises(ManifestError, match='from "w.yaml": no matches for kind "Widget" in version "example.com/v1"'):
        place(widget, "default", namespace_given=False)


def test_last_applied_annotation_is_the_object_without_itself() -> None:
    obj: dict[str, Any] = {"kind": "ConfigMap", "apiVersion": "v1",
                           "metadata": {"name": "c", "annotations": {LAST_APPLIED: "old"}}, "data": {"k": "v"}}
    modified = with_last_applied(obj)
    recorded = modified["metadata"]["annotations"][LAST_APPLIED]
    assert recorded == ('{"apiVersion":"v1","data":{"k":"v"},"kind":"ConfigMap",'
                        '"metadata":{"annotations":{},"name":"c"}}\n')
    assert last_applied_of(modified) == {**obj, "metadata": {"name": "c", "annotations": {}}}
    assert obj["metadata"]["annotations"][LAST_APPLIED] == "old", "the input is not modified"
    assert last_applied_of({"metadata": {"annotations": {LAST_APPLIED: "{broken"}}}) is None


def test_targets_forms() -> None:
    [t] = parse_targets(["po", "a", "b"])
    assert t.res.kind == "Pod" and t.names == ["a", "b"]
    kinds = parse_targets(["deploy,svc"])
    assert [t.res.kind for t in kinds] == ["Deployment", "Service"] and kinds[0].names == []
    slash = parse_targets(["pod/a", "deployment.apps/w", "pods/b"])
    assert [(t.res.kind, t.names) for t in slash] == [("Pod", ["a", "b"]), ("Deployment", ["w"])]
    with pytest.raises(CommandError, match='resource type "widgets"'):
        parse_targets(["widgets"])
    with pytest.raises(CommandError, match="no need to specify a resource type"):
        parse_targets(["pods", "pod/a"])


def test_the_all_category_expands_to_the_workload_kinds() -> None:
    kinds = [t.res.kind for t in parse_targets(["all"])]
    assert kinds[:2] == ["Pod", "Service"] and "Deployment" in kinds and "ConfigMap" not in kinds
