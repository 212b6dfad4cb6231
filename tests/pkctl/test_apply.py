"""pkctl apply against the real apiserver: create, unchanged, configured, field removal, many sources, failures."""
from __future__ import annotations

import json
from pathlib import Path

from pklib.client import Client
from tests.support.pkctl import kind, Pkctl
from tests.util import unique

DEPLOYMENTS = kind("deployments")
CONFIGMAPS = kind("configmaps")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def deployment(name: str, *, env: dict[str, str], labels: dict[str, str], replicas: int = 2) -> str:
    env_yaml = "".join(f"        - name: {k}\n          value: \"{v}\"\n" for k, v in env.items())
    labels_yaml = "".join(f"    {k}: {v}\n" for k, v in labels.items())
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
{labels_yaml}spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: main
        image: busybox
        env:
{env_yaml}"""


async def test_apply_round_trip_removes_what_the_file_no_longer_has(
        pkctl: Pkctl, client: Client, namespace: str, tmp_path: Path) -> None:
    f = tmp_path / "web.yaml"
    f.write_text(deployment("web", env={"MODE": "fast", "DEBUG": "1"}, labels={"app": "web", "tier": "front"}))
    first = pkctl("apply", "-f", str(f))
    assert first.returncode == 0, first.stderr
    assert first.stdout == "deployment.apps/web created\n"
    live = await client.get(DEPLOYMENTS, "web", namespace)
    assert live["metadata"]["labels"] == {"app": "web", "tier": "front"}
    recorded = json.loads(live["metadata"]["annotations"][LAST_APPLIED])
    assert recorded["metadata"] == {"annotations": {}, "labels": {"app": "web", "tier": "front"}, "name": "web",
                                    "namespace": namespace}

    again = pkctl("apply", "-f", str(f))
    assert (again.returncode, again.stdout) == (0, "deployment.apps/web unchanged\n")

    # Someone else adds an annotation: apply leaves fields it never set alone.
    await client.patch(DEPLOYMENTS, "web", {"metadata": {"annotations": {"owner": "team-a"}}}, namespace)
    f.write_text(deployment("web", env={"MODE": "fast"}, labels={"app": "web"}))
    third = pkctl("apply", "-f", str(f))
    assert (third.returncode, third.stdout) == (0, "deployment.apps/web configured\n"), third.stderr
    live = await client.get(DEPLOYMENTS, "web", namespace)
    assert live["metadata"]["labels"] == {"app": "web"}
    assert live["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "fast"}]
    assert live["metadata"]["annotations"]["owner"] == "team-a"
    assert pkctl("apply", "-f", str(f)).stdout == "deployment.apps/web unchanged\n"


async def test_apply_directory_recursive_stdin_and_json(pkctl: Pkctl, client: Client, namespace: str,
                                                        tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n"
                                     "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    (tmp_path / "sub" / "c.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]}))
    flat = pkctl("apply", "-f", str(tmp_path))
    assert (flat.returncode, flat.stdout) == (0, "configmap/a created\nconfigmap/b created\n"), flat.stderr
    deep = pkctl("apply", "-R", "-f", str(tmp_path))
    assert deep.stdout == "configmap/a unchanged\nconfigmap/b unchanged\nconfigmap/c created\n"
    piped = pkctl("apply", "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n")
    assert piped.stdout == "configmap/d created\n"
    names = sorted(o["metadata"]["name"] for o in (await client.list(CONFIGMAPS, namespace))["items"])
    assert names == ["a", "b", "c", "d"]


async def test_apply_continues_past_bad_objects_and_reports_each(pkctl: Pkctl, client: Client, namespace: str,
                                                                 tmp_path: Path) -> None:
    f = tmp_path / "mixed.yaml"
    f.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
                 f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: good, namespace: {namespace}}}\n"
                 f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: elsewhere, namespace: {unique('gone')}}}\n")
    # No -n: each object names its own namespace, one of which does not exist.
    out = pkctl("apply", "-f", str(f), ns=None)
    assert out.returncode == 1
    assert out.stdout == "configmap/good created\n"
    errors = out.stderr.splitlines()
    assert errors[0] == (f'error: resource mapping not found for name: "w" namespace: "" from "{f}": '
                         'no matches for kind "Widget" in version "example.com/v1"')
    assert errors[1].startswith(f'Error from server (NotFound): error when creating "{f}": namespaces "gone-')
    assert len(errors) == 2
    assert (await client.get(CONFIGMAPS, "good", namespace))["metadata"]["name"] == "good"


async def test_malformed_yaml_applies_nothing(pkctl: Pkctl, client: Client, namespace: str, tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n---\n"
                 "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n  labels: [oops\n")
    out = pkctl("apply", "-f", str(f))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(f"error: error parsing {f}: yaml: line ")
    assert len(out.stderr.splitlines()) == 1
    assert (await client.list(CONFIGMAPS, namespace))["items"] == []


async def test_server_validation_error_is_reported_with_the_field(pkctl: Pkctl, client: Client, namespace: str,
                                                                  tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_A_Name}\n")
    out = pkctl("apply", "-f", str(f))
    assert out.returncode == 1 and out.stdout == ""
    assert "metadata.name" in out.stderr and len(out.stderr.splitlines()) == 1
    assert (await client.list(CONFIGMAPS, namespace))["items"] == []


def test_namespace_flag_must_agree_with_the_file(pkctl: Pkctl, tmp_path: Path) -> None:
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: other}\n")
    out = pkctl("apply", "-f", str(f))
    assert out.returncode == 1
    assert out.stderr == ('error: the namespace from the provided object "other" does not match the namespace '
                          f'"{out.args[out.args.index("-n") + 1]}". You must pass \'--namespace=other\' to perform '
                          "this operation.\n")
