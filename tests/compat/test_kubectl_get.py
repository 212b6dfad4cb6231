"""`kubectl get` with server-side Tables: per-kind columns, -o wide, -A, -l, --show-labels, output formats, -w."""
from __future__ import annotations

import json
import re

from tests.support.kubectl import Kubectl

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  containers:
  - {{name: c, image: busybox:1.36, command: [sleep, "3600"]}}
"""


def _pods(kubectl: Kubectl, ns: str, *names: tuple[str, str]) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin="---".join(POD.format(name=n, app=a) for n, a in names))


def _header(out: str) -> list[str]:
    return re.split(r"\s{2,}", out.splitlines()[0].strip())


def test_pod_columns_wide_labels_and_selectors(kubectl: Kubectl, ns: str) -> None:
    _pods(kubectl, ns, ("p1", "web"), ("p2", "db"))
    out = kubectl("get", "pods", "-n", ns).stdout
    assert _header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[:4] for r in rows] == [["p1", "0/1", "Pending", "0"], ["p2", "0/1", "Pending", "0"]]

    wide = kubectl("get", "pods", "-n", ns, "-o", "wide").stdout
    assert _header(wide) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                             "READINESS GATES"]
    assert wide.splitlines()[1].split()[5:] == ["<none>"] * 4

    out = kubectl("get", "pods", "-n", ns, "-l", "app=web", "--show-labels").stdout
    assert _header(out)[-1] == "LABELS"
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["p1"]
    assert out.splitlines()[1].split()[-1] == "app=web"

    everywhere = kubectl("get", "pods", "-A").stdout
    assert _header(everywhere)[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == [ns, "p2"] for line in everywhere.splitlines())


def test_output_formats(kubectl: Kubectl, ns: str) -> None:
    _pods(kubectl, ns, ("p1", "web"))
    assert kubectl("get", "pods", "-n", ns, "-o", "name").stdout.split() == ["pod/p1"]
    as_json = json.loads(kubectl("get", "pod", "p1", "-n", ns, "-o", "json").stdout)
    assert as_json["kind"] == "Pod" and as_json["spec"]["containers"][0]["image"] == "busybox:1.36"
    listed = json.loads(kubectl("get", "pods", "-n", ns, "-o", "json").stdout)
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["p1"]
    assert "kind: Pod" in kubectl("get", "pod", "p1", "-n", ns, "-o", "yaml").stdout
    jp = kubectl("get", "pods", "-n", ns, "-o", "jsonpath={.items[*].spec.containers[0].image}").stdout
    assert jp == "busybox:1.36"
    _pods(kubectl, ns, ("a0", "db"))
    # --sort-by makes kubectl ask for whole objects in the Table rows (includeObject=Object).
    by_name = kubectl("get", "pods", "-n", ns, "--sort-by=.metadata.name", "-L", "app").stdout.splitlines()
    assert [line.split()[0] for line in by_name[1:]] == ["a0", "p1"] and _header(by_name[0])[-1] == "APP"
    assert [line.split()[-1] for line in by_name[1:]] == ["db", "web"]
    empty = kubectl("get", "pods", "-n", ns, "-l", "app=none")
    assert empty.stdout == "" and f"No resources found in {ns} namespace." in empty.stderr


def test_columns_of_other_kinds(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin="""
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: "1", b: "2"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox:1.36}]
""")
    svc = kubectl("get", "svc", "svc", "-n", ns).stdout
    assert _header(svc) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    cells = svc.splitlines()[1].split()
    assert cells[1] == "ClusterIP" and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", cells[2]) and cells[4] == "80/TCP"
    cm = kubectl("get", "cm", "cfg", "-n", ns).stdout
    assert _header(cm) == ["NAME", "DATA", "AGE"] and cm.splitlines()[1].split()[1] == "2"
    deploy = kubectl("get", "deploy", "-n", ns, "-o", "wide").stdout
    assert _header(deploy) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES",
                               "SELECTOR"]
    assert deploy.splitlines()[1].split()[5:] == ["web", "busybox:1.36", "app=web"]
    ns_out = kubectl("get", "ns", ns).stdout
    assert _header(ns_out) == ["NAME", "STATUS", "AGE"] and ns_out.splitlines()[1].split()[1] == "Active"
    lease = kubectl("get", "leases", "-n", ns).stdout  # a kind with its own small table
    assert lease == "" or _header(lease)[0] == "NAME"


def test_get_watch_prints_table_rows_as_objects_change(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w}\ndata: {a: '1'}\n")
    watch = kubectl.stream("get", "configmaps", "-n", ns, "-w")
    try:
        assert _header(watch.wait_line(lambda line: line.startswith("NAME"))) == ["NAME", "DATA", "AGE"]
        assert watch.wait_line(lambda line: line.startswith("w ")).split()[1] == "1"
        kubectl("patch", "cm", "w", "-n", ns, "-p", '{"data":{"b":"2"}}')
        assert watch.wait_line(lambda line: line.startswith("w ")).split()[1] == "2"
        kubectl("apply", "-n", ns, "-f", "-",
                stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w2}\ndata: {}\n")
        assert watch.wait_line(lambda line: line.startswith("w2 ")).split()[1] == "0"
    finally:
        watch.close()


def test_errors_read_like_kubernetes(kubectl: Kubectl, ns: str) -> None:
    r = kubectl("get", "pod", "nope", "-n", ns, ok=False)
    assert r.returncode == 1 and r.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'
    r = kubectl("get", "deploy", "nope", "-n", ns, ok=False)
    assert r.stderr.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'
    bad = POD.format(name="Bad_Name", app="x")
    r = kubectl("apply", "-n", ns, "-f", "-", stdin=bad, ok=False)
    assert r.returncode == 1
    assert 'The Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' in r.stderr
    kubectl("apply", "-n", ns, "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\n")
    r = kubectl("create", "-n", ns, "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\n",
                ok=False)
    assert r.stderr.strip() == 'Error from server (AlreadyExists): error when creating "STDIN": ' \
                               'configmaps "dup" already exists'
    r = kubectl("get", "frobnicators", ok=False)
    assert 'error: the server doesn\'t have a resource type "frobnicators"' in r.stderr
