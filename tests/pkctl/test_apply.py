"""pkctl apply against the real apiserver: create, unchanged, configured, field removal, many sources, failures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pklib.client import Client
from tests.support.controlplane import ROOT, ApiServer
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


async def test_apply_dry_runs_store_nothing_and_say_what_would_happen(
        pkctl: Pkctl, client: Client, namespace: str, tmp_path: Path) -> None:
    f = tmp_path / "two.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n---\n"
                 "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {k: v}\n")

    async def stored() -> dict[str, str]:
        listed = await client.list(CONFIGMAPS, namespace)
        return {i["metadata"]["name"]: i["data"]["k"] for i in listed["items"] if i["metadata"]["name"] in ("a", "b")}

    client_run = pkctl("apply", "-f", str(f), "--dry-run=client")
    assert (client_run.returncode, client_run.stdout) == (0, "configmap/a created (dry run)\n"
                                                             "configmap/b created (dry run)\n"), client_run.stderr
    server_run = pkctl("apply", "-f", str(f), "--dry-run=server", "-o", "name")
    assert (server_run.returncode, server_run.stdout) == (0, "configmap/a\nconfigmap/b\n"), server_run.stderr
    assert await stored() == {}

    assert pkctl("apply", "-f", str(f)).returncode == 0
    f.write_text(f.read_text().replace("{k: v}", "{k: w}"))
    # the server's dry run returns the patched objects (as one List with -o yaml/json) and keeps the stored ones
    preview = pkctl("apply", "-f", str(f), "--dry-run=server", "-o", "json")
    assert preview.returncode == 0, preview.stderr
    listed = json.loads(preview.stdout)
    assert listed["kind"] == "List" and [i["data"]["k"] for i in listed["items"]] == ["w", "w"]
    assert await stored() == {"a": "v", "b": "v"}
    # kubectl's words: a client dry run of an existing object says configured (no patch is computed)
    assert pkctl("apply", "-f", str(f), "--dry-run=client").stdout == ("configmap/a configured (dry run)\n"
                                                                       "configmap/b configured (dry run)\n")
    server_changes = pkctl("apply", "-f", str(f), "--dry-run=server")
    assert server_changes.stdout == "configmap/a configured (server dry run)\nconfigmap/b configured (server dry run)\n"
    assert pkctl("apply", "-f", str(f)).stdout == "configmap/a configured\nconfigmap/b configured\n"
    assert await stored() == {"a": "w", "b": "w"}
    one = tmp_path / "one.yaml"
    one.write_text(f.read_text().split("---\n")[0])
    single = pkctl("apply", "-f", str(one), "--dry-run=server", "-o", "yaml")
    assert single.returncode == 0 and single.stdout.startswith("apiVersion: v1\ndata:\n  k: w\nkind: ConfigMap\n")
    assert pkctl("apply", "-f", str(one), "--dry-run=server").stdout == "configmap/a unchanged (server dry run)\n"


def test_reapplying_a_changed_file_loads_neither_orjson_nor_dataclasses(
        apiserver: ApiServer, namespace: str, tmp_path: Path) -> None:
    """The edit-apply loop: an update (three-way patch) costs no more imports than a create."""
    f = tmp_path / "cm.yaml"
    probe = ("import sys\nfrom pkctl.main import main\ncode = main(sys.argv[1:])\n"
             "print('exit', code, ' '.join(sorted(m for m in ('orjson', 'dataclasses', 'inspect', 'shutil') "
             "if m in sys.modules)) or '-')\n")
    for value, verb in (("a", "created"), ("b", "configured")):
        f.write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: lean}}\ndata: {{k: {value}}}\n")
        r = subprocess.run([sys.executable, "-c", probe, "--kubeconfig", apiserver.kubeconfig, "-n", namespace,
                            "apply", "-f", str(f)], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.stdout.splitlines() == [f"configmap/lean {verb}", "exit 0 -"], r
