"""pkctl get against the real apiserver: tables, output formats, selectors, namespaces, watch."""
from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading

import yaml

from pklib.client import Client
from tests.support.controlplane import ApiServer
from tests.support.pkctl import kind, ROOT, Pkctl
from tests.util import wait_for_sync

CONFIGMAPS = kind("configmaps")


async def make_configmaps(client: Client, namespace: str) -> None:
    for name, labels, keys in (("alpha", {"app": "web", "tier": "front"}, 2), ("beta", {"app": "web"}, 0),
                               ("gamma", {"app": "db"}, 1)):
        await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": name, "labels": labels},
                                         "data": {f"k{i}": "v" for i in range(keys)}}, namespace)


def table(text: str) -> list[list[str]]:
    """Cells of an aligned table (no cell here contains spaces)."""
    return [line.split() for line in text.splitlines()]


async def test_table_selectors_and_labels(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await make_configmaps(client, namespace)
    out = pkctl("get", "configmaps")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("NAME    DATA   AGE")  # columns padded to the widest cell + 3
    assert [row[:2] for row in table(out.stdout)] == [["NAME", "DATA"], ["alpha", "2"], ["beta", "0"], ["gamma", "1"]]
    assert all(row[2].endswith("s") for row in table(out.stdout)[1:]), "a fresh object's age is in seconds"

    by_label = pkctl("get", "cm", "-l", "app=web,tier!=front", "--show-labels")
    assert [[r[0], r[-1]] for r in table(by_label.stdout)] == [["NAME", "LABELS"], ["beta", "app=web"]]
    by_set = pkctl("get", "configmap", "-l", "app in (db)", "-o", "name")
    assert by_set.stdout == "configmap/gamma\n"
    by_field = pkctl("get", "ConfigMap", "--field-selector", "metadata.name=alpha", "-o", "name")
    assert by_field.stdout == "configmap/alpha\n"
    label_columns = pkctl("get", "cm", "-L", "app", "--sort-by", ".metadata.labels.app")
    assert [[r[0], r[-1]] for r in table(label_columns.stdout)] == [
        ["NAME", "APP"], ["gamma", "db"], ["alpha", "web"], ["beta", "web"]]


async def test_all_namespaces_adds_the_namespace_column(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await make_configmaps(client, namespace)
    out = pkctl("get", "cm", "-A", "-l", "app=db")
    rows = table(out.stdout)
    assert rows[0][:3] == ["NAMESPACE", "NAME", "DATA"]
    assert [namespace, "gamma", "1"] in [r[:3] for r in rows]


async def test_yaml_json_and_name_output(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await make_configmaps(client, namespace)
    one = yaml.safe_load(pkctl("get", "cm", "alpha", "-o", "yaml").stdout)
    assert (one["kind"], one["apiVersion"], one["metadata"]["name"]) == ("ConfigMap", "v1", "alpha")
    assert one["data"] == {"k0": "v", "k1": "v"}
    many = yaml.safe_load(pkctl("get", "cm", "-o", "yaml").stdout)
    assert many["kind"] == "List"
    assert [(i["kind"], i["metadata"]["name"]) for i in many["items"]] == [
        ("ConfigMap", "alpha"), ("ConfigMap", "beta"), ("ConfigMap", "gamma")]
    two = json.loads(pkctl("get", "cm/alpha", "cm/gamma", "-o", "json").stdout)
    assert two["kind"] == "List" and [i["metadata"]["name"] for i in two["items"]] == ["alpha", "gamma"]
    assert pkctl("get", "cm", "beta", "alpha", "-o", "name").stdout == "configmap/beta\nconfigmap/alpha\n"
    template = '{range .items[*]}{.metadata.name}={.metadata.labels.app}{"\\n"}{end}'
    assert pkctl("get", "cm", "-o", f"jsonpath={template}").stdout == "alpha=web\nbeta=web\ngamma=db\n"
    assert pkctl("get", "cm", "alpha", "-o", "jsonpath={.data.k1}").stdout == "v"
    columns = pkctl("get", "cm", "-o", "custom-columns=NAME:.metadata.name,TIER:.metadata.labels.tier")
    assert table(columns.stdout) == [["NAME", "TIER"], ["alpha", "front"], ["beta", "<none>"], ["gamma", "<none>"]]


async def test_several_kinds_prefix_names_and_wide(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await make_configmaps(client, namespace)
    await client.create(kind("services"), {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
                        namespace)
    out = pkctl("get", "svc,cm", "-o", "wide")
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.split("\n\n")
    head = first.splitlines()[0].split()
    assert head == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    row = first.splitlines()[1].split()
    assert (row[0], row[1], row[4], row[6]) == ("service/web", "ClusterIP", "80/TCP", "app=web")
    assert [r[0] for r in table(second)] == ["NAME", "configmap/alpha", "configmap/beta", "configmap/gamma"]


def test_empty_and_missing(pkctl: Pkctl, namespace: str) -> None:
    empty = pkctl("get", "pods")
    assert (empty.returncode, empty.stdout) == (0, "")
    assert empty.stderr == f"No resources found in {namespace} namespace.\n"
    assert yaml.safe_load(pkctl("get", "pods", "-o", "yaml").stdout) == {
        "apiVersion": "v1", "kind": "List", "items": [], "metadata": {"resourceVersion": ""}}
    missing = pkctl("get", "cm", "nope")
    assert missing.returncode == 1
    assert missing.stderr == 'Error from server (NotFound): configmaps "nope" not found\n'
    unknown = pkctl("get", "widgets")
    assert (unknown.returncode, unknown.stderr) == (1, 'error: the server doesn\'t have a resource type "widgets"\n')
    bad_format = pkctl("get", "pods", "-o", "xml")
    assert bad_format.returncode == 1 and 'output format "xml"' in bad_format.stderr


async def test_watch_streams_new_rows_until_interrupted(apiserver: ApiServer, client: Client, namespace: str) -> None:
    await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "before"}},
                        namespace)
    proc = subprocess.Popen([sys.executable, "-m", "pkctl.main", "--kubeconfig", apiserver.kubeconfig, "-n", namespace,
                             "get", "cm", "-w"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def saw(word: str) -> bool:
        while not lines.empty():
            seen.append(lines.get())
        return any(line.split() and line.split()[0] == word for line in seen)

    try:
        wait_for_sync(lambda: saw("before"), timeout=20, message="the initial table")
        assert seen[0].split() == ["NAME", "DATA", "AGE"]
        await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"},
                                         "data": {"a": "b"}}, namespace)
        wait_for_sync(lambda: saw("after"), timeout=20, message="the new object's row")
        assert [line.split()[:2] for line in seen if line.split()[0] == "after"][0] == ["after", "1"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()
    proc.stderr.close()


def test_pdb_table_and_describe(pkctl: Pkctl) -> None:
    manifest = ("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n"
                "spec: {maxUnavailable: 25%, selector: {matchLabels: {app: web}}}\n")
    assert pkctl("apply", "-f", "-", stdin=manifest).stdout == "poddisruptionbudget.policy/web created\n"
    lines = pkctl("get", "pdb").stdout.splitlines()
    assert lines[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert lines[1].split()[:4] == ["web", "N/A", "25%", "0"]
    described = pkctl("describe", "pdb", "web").stdout
    for line in ("Max unavailable:  25%", "Selector:         app=web", "Status:", "    Allowed disruptions:  0",
                 "    Total:                0"):
        assert line in described.splitlines(), described
