"""kubectl verbs that need controllers: scale, rollout, delete --cascade, wait, describe, label/annotate/patch.

A controller-manager, the scheduler and a hollow node run against the TLS apiserver, so
deployments roll out and their pods become Ready for real (without containers).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.kubectl import Kubectl, Workers

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "busybox:1.36"}]
"""


@pytest.fixture
def deployed(kubectl: Kubectl, workers: Workers, ns: str) -> str:
    kubectl("apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT)
    out = kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90).stdout
    assert 'deployment "web" successfully rolled out' in out
    return ns


def _deploy(kubectl: Kubectl, ns: str) -> dict:
    return json.loads(kubectl("get", "deploy", "web", "-n", ns, "-o", "json").stdout)


def _ready_pods(kubectl: Kubectl, ns: str) -> list[str]:
    return kubectl("get", "pods", "-n", ns, "-l", "app=web", "--field-selector=status.phase=Running",
                   "-o", "name").stdout.split()


def test_rollout_history_undo_restart_pause_resume(kubectl: Kubectl, deployed: str) -> None:
    ns = deployed
    kubectl("set", "image", "deployment/web", "web=busybox:1.37", "-n", ns)
    kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
    history = kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert history.splitlines()[0] == "deployment.apps/web "
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]

    kubectl("rollout", "undo", "deployment/web", "-n", ns)
    kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
    image = _deploy(kubectl, ns)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "busybox:1.36"

    kubectl("rollout", "pause", "deployment/web", "-n", ns)
    assert _deploy(kubectl, ns)["spec"]["paused"] is True
    r = kubectl("rollout", "undo", "deployment/web", "-n", ns, ok=False)
    assert r.returncode != 0 and "paused" in r.stderr  # kubectl refuses to undo a paused deployment
    kubectl("rollout", "resume", "deployment/web", "-n", ns)
    assert not _deploy(kubectl, ns)["spec"].get("paused")

    out = kubectl("rollout", "restart", "deployment/web", "-n", ns).stdout
    assert out.strip() == "deployment.apps/web restarted"
    annotations = _deploy(kubectl, ns)["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)


def test_scale_both_paths_and_wait(kubectl: Kubectl, deployed: str) -> None:
    ns = deployed
    assert kubectl("scale", "deployment/web", "-n", ns, "--replicas=3").stdout.strip() == "deployment.apps/web scaled"
    kubectl("wait", "--for=jsonpath={.status.readyReplicas}=3", "deployment/web", "-n", ns, "--timeout=60s",
            timeout=90)
    # --current-replicas makes kubectl read the Scale and PUT it back with a precondition.
    r = kubectl("scale", "deployment/web", "-n", ns, "--current-replicas=2", "--replicas=1", ok=False)
    assert r.returncode != 0 and r.stderr.strip() == "error: Expected replicas to be 2, was 3"
    kubectl("scale", "deployment/web", "-n", ns, "--current-replicas=3", "--replicas=1")
    kubectl("wait", "--for=jsonpath={.status.replicas}=1", "deployment/web", "-n", ns, "--timeout=60s", timeout=90)
    assert len(_ready_pods(kubectl, ns)) == 1
    pod = _ready_pods(kubectl, ns)[0]
    out = kubectl("wait", "--for=condition=Ready", pod, "-n", ns, "--timeout=30s", timeout=60).stdout
    assert out.strip() == f"{pod} condition met"
    r = kubectl("wait", "--for=condition=Nonexistent", pod, "-n", ns, "--timeout=1s", ok=False)
    assert r.returncode != 0 and "timed out waiting for the condition" in r.stderr


def test_describe_shows_state_and_events(kubectl: Kubectl, workers: Workers, deployed: str) -> None:
    ns = deployed
    out = kubectl("describe", "deployment", "web", "-n", ns).stdout
    assert re.search(r"^Name:\s+web$", out, re.M)
    assert re.search(r"^Replicas:\s+2 desired \| 2 updated \| 2 total \| 2 available \| 0 unavailable$", out, re.M)
    assert "ScalingReplicaSet" in out  # the controller's Events are listed
    events = kubectl("get", "events", "-n", ns).stdout.splitlines()
    assert re.split(r"\s{2,}", events[0].strip()) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any("deployment/web" in line and "ScalingReplicaSet" in line for line in events[1:])
    pod = _ready_pods(kubectl, ns)[0].split("/")[1]
    out = kubectl("describe", "pod", pod, "-n", ns).stdout
    assert re.search(rf"^Name:\s+{pod}$", out, re.M) and re.search(r"^Status:\s+Running$", out, re.M)
    assert "Scheduled" in out and f"Successfully assigned {ns}/{pod} to {workers.node}" in out
    nodes = kubectl("get", "node", workers.node, "-o", "wide").stdout.splitlines()
    assert re.split(r"\s{2,}", nodes[0].strip()) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP",
                                                      "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert nodes[1].split()[:2] == [workers.node, "Ready"]
    rs = kubectl("get", "rs", "-n", ns).stdout.splitlines()
    assert re.split(r"\s{2,}", rs[0].strip()) == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert rs[1].split()[1:4] == ["2", "2", "2"]
    out = kubectl("describe", "node", workers.node).stdout
    assert re.search(rf"^Name:\s+{workers.node}$", out, re.M) and re.search(r"^\s+Ready\s+True", out, re.M)
    kubectl("apply", "-n", ns, "-f", "-", stdin="apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
                                                "spec:\n  selector: {app: web}\n  ports: [{port: 80}]\n")
    out = kubectl("describe", "service", "web", "-n", ns).stdout
    ep = kubectl("get", "endpoints", "web", "-n", ns).stdout.splitlines()
    assert re.split(r"\s{2,}", ep[0].strip()) == ["NAME", "ENDPOINTS", "AGE"]
    assert re.search(r"^Selector:\s+app=web$", out, re.M) and re.search(r"^Port:\s+<unset>\s+80/TCP$", out, re.M)


def test_label_annotate_patch_edit(kubectl: Kubectl, deployed: str, tmp_path: Path) -> None:
    ns = deployed
    assert kubectl("label", "deploy/web", "-n", ns, "tier=front").stdout.strip() == "deployment.apps/web labeled"
    r = kubectl("label", "deploy/web", "-n", ns, "tier=back", ok=False)
    assert r.returncode != 0 and "'tier' already has a value (front), and --overwrite is false" in r.stderr
    kubectl("label", "deploy/web", "-n", ns, "tier-")
    kubectl("annotate", "deploy/web", "-n", ns, "note=hello")
    kubectl("patch", "deploy/web", "-n", ns, "--type=json", "-p", '[{"op":"replace","path":"/spec/replicas","value":3}]')
    d = _deploy(kubectl, ns)
    assert "tier" not in d["metadata"].get("labels", {}) and d["metadata"]["annotations"]["note"] == "hello"
    assert d["spec"]["replicas"] == 3
    # kubectl edit: the "editor" rewrites the YAML; kubectl sends the difference as a patch.
    # A full object read back (status, managedFields, server defaults) replaces cleanly under Strict.
    for ref in ("deploy/web", _ready_pods(kubectl, ns)[0]):
        live = kubectl("get", ref, "-n", ns, "-o", "yaml").stdout
        assert kubectl("replace", "-n", ns, "-f", "-", stdin=live).stdout.strip().endswith(" replaced")
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/note: hello/note: edited/' \"$1\"\n")
    editor.chmod(0o755)
    out = kubectl("edit", "deploy/web", "-n", ns, env={"KUBE_EDITOR": str(editor)})
    assert out.stdout.strip() == "deployment.apps/web edited"
    assert _deploy(kubectl, ns)["metadata"]["annotations"]["note"] == "edited"
    r = kubectl("patch", "deploy/web", "-n", ns, "--type=merge", "-p", '{"spec":{"replicas":"x"}}', ok=False)
    assert r.returncode != 0 and "spec.replicas" in r.stderr


def test_delete_cascade_orphan_and_foreground(kubectl: Kubectl, deployed: str) -> None:
    ns = deployed
    rs = kubectl("get", "rs", "-n", ns, "-o", "name").stdout.split()
    assert len(rs) == 1
    out = kubectl("delete", "deployment", "web", "-n", ns, "--cascade=orphan").stdout
    assert out.strip() == 'deployment.apps "web" deleted'
    # The ReplicaSet and its pods stay, without an owner.
    orphan = json.loads(kubectl("get", rs[0], "-n", ns, "-o", "json").stdout)
    assert not orphan["metadata"].get("ownerReferences")
    assert len(_ready_pods(kubectl, ns)) == 2
    # Foreground: kubectl waits until the ReplicaSet is gone, which needs its pods deleted first.
    kubectl("delete", rs[0], "-n", ns, "--cascade=foreground", "--timeout=60s", timeout=90)
    assert kubectl("get", "rs", "-n", ns, "-o", "name").stdout.strip() == ""
    r = kubectl("delete", "deployment", "web", "-n", ns, ok=False)
    assert r.stderr.strip() == 'Error from server (NotFound): deployments.apps "web" not found'
