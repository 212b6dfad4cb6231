"""kubectl with CustomResourceDefinitions: apply a CRD and its objects, get them by plural, short name, category
and `plural.group` with the CRD's printer columns, validation errors, scale, explain, delete."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.crds import widget_crd
from tests.support.kubectl import Kubectl, Stream

WIDGET = """
apiVersion: {group}/v1
kind: Widget
metadata:
  name: {name}
spec:
  size: {size}
  replicas: {replicas}
"""


def _header(out: str) -> list[str]:
    return re.split(r"\s{2,}", out.splitlines()[0].strip())


class CachedKubectl(Kubectl):
    """kubectl with a discovery cache of its own: the session's other tests' Widget CRDs (same plural, other
    groups, deleted since) are not remembered, so `get widgets` means this test's."""

    def __init__(self, kubectl: Kubectl, cache: Path):
        super().__init__(kubectl.kubeconfig)
        self.cache = cache

    def __call__(self, *args: str, **kw: Any) -> Any:
        return super().__call__(f"--cache-dir={self.cache}", *args, **kw)

    def stream(self, *args: str) -> Stream:
        return super().stream(f"--cache-dir={self.cache}", *args)


@pytest.fixture
def k(kubectl: Kubectl, tmp_path: Path) -> CachedKubectl:
    return CachedKubectl(kubectl, tmp_path / "kubectl-cache")


@pytest.fixture
def group(k: CachedKubectl) -> Iterator[str]:
    """A Widget CRD applied with kubectl and waited for; deleted (with its objects) afterwards."""
    crd = widget_crd()
    k("apply", "-f", "-", stdin=json.dumps(crd))
    k("wait", "--for", "condition=established", "--timeout=20s", f"crd/{crd['metadata']['name']}")
    yield crd["spec"]["group"]
    k("delete", "crd", crd["metadata"]["name"], "--timeout=30s", ok=False)


def test_apply_get_printer_columns_short_names_and_categories(k: CachedKubectl, ns: str, group: str) -> None:
    out = k("apply", "-n", ns, "-f", "-", stdin="---".join(
        WIDGET.format(group=group, name=n, size=s, replicas=r) for n, s, r in (("w1", "small", 1),
                                                                             ("w2", "large", 3)))).stdout
    assert out.split("\n")[0] == f"widget.{group}/w1 created"
    table = k("get", "widgets", "-n", ns).stdout
    assert _header(table) == ["NAME", "SIZE", "REPLICAS", "AGE"]
    assert [line.split()[:3] for line in table.splitlines()[1:]] == [["w1", "small", "1"], ["w2", "large", "3"]]
    wide = k("get", "wd", "-n", ns, "-o", "wide").stdout
    assert _header(wide) == ["NAME", "SIZE", "REPLICAS", "PHASE", "AGE"]
    assert len(wide.splitlines()[1].split()) == 4  # no status.phase: kubectl prints an empty cell
    by_group = k("get", f"widgets.{group}", "w2", "-n", ns, "-o", "jsonpath={.spec.color}").stdout
    assert by_group == "blue"  # the schema's default
    category = k("get", "pktest", "-n", ns, "-o", "name").stdout.split()
    assert category == [f"widget.{group}/w1", f"widget.{group}/w2"]

    # Applying a change patches the object (a JSON merge patch: custom kinds have no strategic merge).
    changed = k("apply", "-n", ns, "-f", "-", stdin=WIDGET.format(group=group, name="w1", size="large",
                                                                        replicas=2)).stdout
    assert changed.strip() == f"widget.{group}/w1 configured"
    assert k("get", "widget", "w1", "-n", ns, "-o", "jsonpath={.spec.size}/{.spec.replicas}").stdout == \
        "large/2"
    k("scale", f"widget.{group}/w1", "-n", ns, "--replicas=4")
    assert k("get", "wd", "w1", "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout == "4"
    described = k("describe", "widget", "w2", "-n", ns).stdout
    assert re.search(r"^Kind:\s+Widget$", described, re.M) and re.search(r"^\s+Size:\s+large$", described, re.M)
    assert k("delete", "widget", "w1", "-n", ns).stdout.strip() == f'widget.{group} "w1" deleted'
    assert k("get", "widgets", "-n", ns, "-o", "name").stdout.split() == [f"widget.{group}/w2"]


def test_invalid_object_is_refused_with_field_paths(k: CachedKubectl, ns: str, group: str) -> None:
    r = k("apply", "-n", ns, "-f", "-", stdin=WIDGET.format(group=group, name="bad", size="huge",
                                                                 replicas=20), ok=False)
    assert r.returncode != 0
    assert 'spec.size: Unsupported value: "huge": supported values: "small", "large"' in r.stderr
    assert "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10" in r.stderr
    typo = k("apply", "-n", ns, "-f", "-", ok=False, stdin=WIDGET.format(
        group=group, name="typo", size="small", replicas=1) + "  colour: red\n")
    assert typo.returncode != 0 and 'unknown field "spec.colour"' in typo.stderr


def test_server_side_apply_and_crd_table(k: CachedKubectl, ns: str, group: str) -> None:
    manifest = WIDGET.format(group=group, name="ssa", size="small", replicas=1)
    assert k("apply", "--server-side", "-n", ns, "-f", "-", stdin=manifest).stdout.strip() == \
        f"widget.{group}/ssa serverside-applied"
    k("apply", "--server-side", "-n", ns, "-f", "-", stdin=manifest.replace("replicas: 1", "replicas: 6"))
    got = json.loads(k("get", "widget", "ssa", "-n", ns, "-o", "json", "--show-managed-fields").stdout)
    assert got["spec"]["replicas"] == 6 and got["spec"]["color"] == "blue"
    assert [m["manager"] for m in got["metadata"]["managedFields"]] == ["kubectl"]
    resources = k("api-resources", f"--api-group={group}").stdout.splitlines()
    assert _header("\n".join(resources)) == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert resources[1].split() == ["widgets", "wd", f"{group}/v1", "true", "Widget"]
    crds = k("get", "crd", f"widgets.{group}").stdout
    assert _header(crds) == ["NAME", "CREATED AT"] and crds.splitlines()[1].split()[0] == f"widgets.{group}"


def test_watch_prints_rows_with_printer_columns(k: CachedKubectl, ns: str, group: str) -> None:
    watch = k.stream("get", "widgets", "-n", ns, "-w")
    try:
        k("apply", "-n", ns, "-f", "-", stdin=WIDGET.format(group=group, name="seen", size="large", replicas=7))
        line = watch.wait_line(lambda line: line.startswith("seen"))  # from the first list or the watch
        assert line.split()[:3] == ["seen", "large", "7"]
        k("patch", "widget", "seen", "-n", ns, "--type=json", "-p",
          '[{"op": "replace", "path": "/spec/replicas", "value": 8}]')
        assert watch.wait_line(lambda line: line.startswith("seen") and " 8 " in line).split()[:3] == \
            ["seen", "large", "8"]
    finally:
        watch.close()


def test_explain_reads_the_crd_schema(k: CachedKubectl, group: str) -> None:
    out = k("explain", "widgets.spec").stdout
    assert f"GROUP:      {group}" in out and "size" in out and "replicas" in out
