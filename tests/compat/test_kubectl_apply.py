"""`kubectl apply` against pkube with kubectl's defaults (validation on), client-side and server-side."""
from __future__ import annotations

import json

from tests.support.kubectl import Kubectl

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
  finalizers: [example.com/a, example.com/b]
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
      - name: side
        image: busybox:1.36
"""


def _get(kubectl: Kubectl, ns: str, what: str = "deployment/web") -> dict:
    # (kubectl hides managedFields unless asked)
    return json.loads(kubectl("get", what, "-n", ns, "-o", "json", "--show-managed-fields").stdout)


def test_client_side_apply_three_way_merge(kubectl: Kubectl, ns: str) -> None:
    out = kubectl("apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT).stdout
    assert out.strip() == "deployment.apps/web created"
    d = _get(kubectl, ns)
    last = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["replicas"] == 1 and last["metadata"]["name"] == "web"

    assert kubectl("apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT).stdout.strip() == "deployment.apps/web unchanged"

    # Someone else adds a label and an env var; apply must keep both (3-way: they were never in the file).
    kubectl("label", "deployment/web", "-n", ns, "owner=ops")
    kubectl("patch", "deployment/web", "-n", ns, "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"EXTRA","value":"x"}]}]}}}}')

    changed = (DEPLOYMENT
               .replace('        - {name: A, value: "1"}\n', "")  # $patch: delete of a keyed list item
               .replace("      - name: side\n        image: busybox:1.36\n", "")  # a container removed
               .replace("    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1}\n", "    type: Recreate\n")
               .replace("finalizers: [example.com/a, example.com/b]", "finalizers: [example.com/b]")
               .replace("replicas: 1", "replicas: 2"))
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=changed).stdout.strip() == "deployment.apps/web configured"
    d = _get(kubectl, ns)
    containers = d["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web"]
    assert {e["name"] for e in containers[0]["env"]} == {"B", "EXTRA"}
    # $retainKeys: switching the strategy to Recreate drops rollingUpdate instead of failing validation.
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    assert d["metadata"]["finalizers"] == ["example.com/b"]  # $deleteFromPrimitiveList
    assert d["spec"]["replicas"] == 2
    assert d["metadata"]["labels"] == {"app": "web", "owner": "ops"}

    # Removing a field from the file removes it from the object; what others added stays.
    kubectl("apply", "-n", ns, "-f", "-", stdin=changed.replace("  labels: {app: web}\n  finalizers",
                                                                 "  labels: {tier: web}\n  finalizers"))
    assert _get(kubectl, ns)["metadata"]["labels"] == {"tier": "web", "owner": "ops"}
    kubectl("patch", "deployment/web", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


def test_apply_validation_errors_name_the_field(kubectl: Kubectl, ns: str) -> None:
    bad = DEPLOYMENT.replace("replicas: 1", "replicas: many")
    r = kubectl("apply", "-n", ns, "-f", "-", stdin=bad, ok=False)
    assert r.returncode != 0
    assert "spec.replicas" in r.stderr
    assert kubectl("get", "deploy", "-n", ns, "-o", "name").stdout.strip() == ""  # nothing half-written


def test_server_side_apply_ownership_and_conflicts(kubectl: Kubectl, ns: str) -> None:
    manifest = DEPLOYMENT.replace("  finalizers: [example.com/a, example.com/b]\n", "")
    out = kubectl("apply", "--server-side", "-n", ns, "-f", "-", stdin=manifest).stdout
    assert out.strip() == "deployment.apps/web serverside-applied"
    d = _get(kubectl, ns)
    managers = {m["manager"]: m for m in d["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:replicas" in managers["kubectl"]["fieldsV1"]["f:spec"]

    # A second manager changing a field the first owns is refused, with the field named ...
    other = manifest.replace("replicas: 1", "replicas: 3")
    r = kubectl("apply", "--server-side", "--field-manager=ci", "-n", ns, "-f", "-", stdin=other, ok=False)
    assert r.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas' in r.stderr
    assert _get(kubectl, ns)["spec"]["replicas"] == 1
    # ... unless it forces, which moves ownership.
    kubectl("apply", "--server-side", "--field-manager=ci", "--force-conflicts", "-n", ns, "-f", "-", stdin=other)
    d = _get(kubectl, ns)
    assert d["spec"]["replicas"] == 3
    owners = {m["manager"]: m["fieldsV1"] for m in d["metadata"]["managedFields"]}
    assert "f:replicas" in owners["ci"]["f:spec"] and "f:replicas" not in owners["kubectl"].get("f:spec", {})

    # A field only "kubectl" set, dropped from its manifest, is removed; co-owned fields stay.
    kubectl("apply", "--server-side", "--field-manager=ci", "-n", ns, "-f", "-",
            stdin=other.replace('        - {name: B, value: "2"}\n', ""))
    kubectl("apply", "--server-side", "-n", ns, "-f", "-",
            stdin=manifest.replace('        - {name: B, value: "2"}\n', "").replace("  replicas: 1\n", ""))
    env = _get(kubectl, ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}]
    assert _get(kubectl, ns)["spec"]["replicas"] == 3  # still ci's


def test_apply_of_many_kinds_from_one_file(kubectl: Kubectl, ns: str) -> None:
    docs = "\n---\n".join([
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1'}",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: sec}\ndata: {p: czE=}",
        "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec:\n  selector: {app: web}\n"
        "  ports: [{port: 80, targetPort: 8080}]",
    ])
    out = kubectl("apply", "-n", ns, "-f", "-", stdin=docs).stdout.splitlines()
    assert out == ["configmap/cfg created", "secret/sec created", "service/svc created"]
    out = kubectl("apply", "-n", ns, "-f", "-", stdin=docs).stdout.splitlines()
    assert out == ["configmap/cfg unchanged", "secret/sec unchanged", "service/svc unchanged"]


def test_explain_reads_the_openapi_schema(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployment.spec.template.spec.containers").stdout
    assert "GROUP:      apps\nKIND:       Deployment\nVERSION:    v1" in out
    assert "image\t<string>" in out and "env\t<[]EnvVar>" in out


def test_unknown_fields_strict_by_default_warned_on_request(kubectl: Kubectl, ns: str) -> None:
    typo = DEPLOYMENT.replace("  replicas: 1\n", "  replicaz: 1\n").replace("        image: busybox:1.36\n        env",
                                                                          "        imagez: x\n        image: busybox:1.36\n        env")
    r = kubectl("apply", "-n", ns, "-f", "-", stdin=typo, ok=False)
    assert r.returncode == 1
    assert ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
            'unknown field "spec.replicaz", unknown field "spec.template.spec.containers[0].imagez"') in r.stderr
    assert kubectl("get", "deploy", "-n", ns, "-o", "name").stdout == ""
    r = kubectl("apply", "--validate=warn", "-n", ns, "-f", "-", stdin=typo)
    assert 'Warning: unknown field "spec.replicaz"' in r.stderr


def test_apply_of_a_kind_list(kubectl: Kubectl, ns: str) -> None:
    # kubectl validates `kind: List` files through OpenAPI v2 (not v3): that document must parse.
    items = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        f"- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: l{i}}}\n  data: {{i: '{i}'}}\n" for i in range(2))
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=items).stdout.splitlines() == ["configmap/l0 created",
                                                                                       "configmap/l1 created"]


def test_kubernetes_fields_pkube_ignores_pass_with_a_warning(kubectl: Kubectl, ns: str) -> None:
    # A real Kubernetes field that pkube does not act on passes Strict, with a warning saying so.
    nfs = ("apiVersion: v1\nkind: Pod\nmetadata: {name: nfs}\nspec:\n  containers: [{name: c, image: busybox}]\n"
           "  volumes: [{name: v, nfs: {server: example.invalid, path: /}}]\n")
    r = kubectl("apply", "-n", ns, "-f", "-", stdin=nfs)
    assert r.stdout.strip() == "pod/nfs created"
    assert 'Warning: field "spec.volumes[0].nfs" is not supported by pkube' in r.stderr


def test_diff_and_server_dry_run_change_nothing(kubectl: Kubectl, ns: str) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: '1'}\n"
    kubectl("apply", "-n", ns, "-f", "-", stdin=cm)
    r = kubectl("diff", "-n", ns, "-f", "-", stdin=cm.replace("'1'", "'2'"), ok=False)
    assert r.returncode == 1  # kubectl diff: 1 means "there are differences"
    assert '-  x: "1"\n+  x: "2"' in r.stdout
    assert kubectl("diff", "-n", ns, "-f", "-", stdin=cm).returncode == 0
    out = kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", stdin=cm.replace("'1'", "'3'")).stdout
    assert out.strip() == "configmap/a configured (server dry run)"
    out = kubectl("apply", "--server-side", "--dry-run=server", "-n", ns, "-f", "-",
                  stdin=cm.replace("'1'", "'4'")).stdout
    assert out.strip() == "configmap/a serverside-applied (server dry run)"
    assert kubectl("get", "cm", "a", "-n", ns, "-o", "jsonpath={.data.x}").stdout == "1"
