"""A real Kubernetes client (kubectl v1.32) against the API server: discovery, apply, get, label, scale, delete.

This kubectl build does not send bearer tokens over plain HTTP, so the test runs its
own API server without --token-auth-file (on the session's etcd, under its own prefix).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Callable, Iterator

import pytest

from pklib import kubeconfig
from tests.support.controlplane import ROOT, Etcd, _stop, _wait_http
from tests.util import free_port, unique

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        env:
        - {name: A, value: "1"}
"""


@pytest.fixture(scope="module")
def kubectl(session_tmp: str, etcd: Etcd) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    port = free_port()
    log = os.path.join(session_tmp, f"apiserver-notoken-{port}.log")
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "apiserver", "--etcd-servers", etcd.url,
                             "--port", str(port), "--etcd-prefix", "/" + unique("kubectl")],
                            cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/readyz", proc, "apiserver", log)
        kc = os.path.join(session_tmp, f"kubeconfig-notoken-{port}")
        kubeconfig.write(kc, kubeconfig.build(url, None))

        def run(*args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
            r = subprocess.run(["kubectl", "--kubeconfig", kc, *args], input=stdin, capture_output=True, text=True,
                               timeout=60)
            if ok:
                assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
            return r

        yield run
    finally:
        _stop(proc)


def test_kubectl_discovery_and_namespaces(kubectl) -> None:
    out = kubectl("api-resources", "-o", "name").stdout.split()
    assert {"pods", "deployments.apps", "leases.coordination.k8s.io"} <= set(out)
    names = kubectl("get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public"} <= set(names)


def test_kubectl_apply_get_scale_label_delete(kubectl) -> None:
    ns = unique("kc")
    # (`kubectl create namespace` sends protobuf, which pkube does not speak: apply sends JSON.)
    kubectl("apply", "--validate=false", "-f", "-", stdin=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
    assert "created" in kubectl("apply", "--validate=false", "-n", ns, "-f", "-", stdin=DEPLOYMENT).stdout
    # Re-applying with a field removed from the manifest removes it from the object (3-way merge, client side).
    changed = DEPLOYMENT.replace('{name: A, value: "1"}', '{name: B, value: "2"}')
    kubectl("apply", "--validate=false", "-n", ns, "-f", "-", stdin=changed)
    deploy = json.loads(kubectl("get", "deployment", "web", "-n", ns, "-o", "json").stdout)
    assert deploy["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}]
    kubectl("scale", "deployment/web", "-n", ns, "--replicas=3")
    kubectl("label", "deployment", "web", "-n", ns, "tier=front")
    deploy = json.loads(kubectl("get", "deploy", "-n", ns, "-l", "tier=front", "-o", "json").stdout)
    assert [d["spec"]["replicas"] for d in deploy["items"]] == [3]
    missing = kubectl("get", "deploy", "nope", "-n", ns, ok=False)
    assert missing.returncode != 0 and 'deployments.apps "nope" not found' in missing.stderr
    kubectl("delete", "deployment", "web", "-n", ns)
    assert kubectl("get", "deploy", "-n", ns, "-o", "name").stdout.strip() == ""


def test_kubectl_prints_pod_security_warnings_and_refusals(kubectl) -> None:
    ns = unique("psa")
    kubectl("apply", "--validate=false", "-f", "-", stdin=(
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n"
        "    pod-security.kubernetes.io/enforce: baseline\n    pod-security.kubernetes.io/warn: restricted\n"))
    plain = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
    r = kubectl("apply", "-n", ns, "-f", "-", stdin=plain.format(name="plain"))
    assert 'Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false ' \
           '(container "c" must set securityContext.allowPrivilegeEscalation=false)' in r.stderr
    assert "pod/plain created" in r.stdout
    host = plain.format(name="host") + "    securityContext:\n      privileged: true\n"
    r = kubectl("apply", "-n", ns, "-f", "-", stdin=host, ok=False)
    assert r.returncode != 0
    assert ('Error from server (Forbidden): error when creating "STDIN": pods "host" is forbidden: violates '
            'PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)'
            ) in r.stderr
    r = kubectl("label", "ns", ns, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    assert (f'Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce level '
            '"restricted:latest"') in r.stderr
    assert "Warning: plain: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, " \
           "seccompProfile" in r.stderr
    kubectl("delete", "ns", ns, "--wait=false")
