"""A real operator written with kopf (the Kubernetes Operator Pythonic Framework, from PyPI) runs against pkube:
it discovers the custom kind, watches it, and reacts to a new object by creating a ConfigMap and writing the
object's status; an update of the object reaches it too."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.crds import widget_crd
from tests.support.kubectl import Kubectl
from tests.util import wait_for_sync

OPERATOR = textwrap.dedent('''
    import kopf

    @kopf.on.startup()
    def configure(settings, **_):
        settings.posting.enabled = False  # no Events: the test reads the objects themselves
        settings.watching.server_timeout = 60

    @kopf.on.create("{group}", "v1", "widgets")
    def created(spec, name, namespace, patch, logger, **_):
        body = {{"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {{"name": f"{{name}}-config", "namespace": namespace}},
                "data": {{"size": spec["size"], "replicas": str(spec.get("replicas"))}}}}
        import kubernetes
        kubernetes.config.load_kube_config()
        kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, body)
        patch.status["phase"] = "Ready"

    @kopf.on.update("{group}", "v1", "widgets", field="spec.size")
    def resized(new, name, namespace, patch, **_):
        patch.status["phase"] = f"Resized to {{new}}"
''')


def _json(kubectl: Kubectl, *args: str) -> Any:
    r = kubectl(*args, "-o", "json", ok=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


@pytest.fixture
def group(kubectl: Kubectl) -> Iterator[str]:
    crd = widget_crd()
    kubectl("apply", "-f", "-", stdin=json.dumps(crd))
    kubectl("wait", "--for", "condition=established", "--timeout=20s", f"crd/{crd['metadata']['name']}")
    yield crd["spec"]["group"]
    kubectl("delete", "crd", crd["metadata"]["name"], "--timeout=30s", ok=False)


def test_kopf_operator_reacts_to_custom_resources(kubectl: Kubectl, ns: str, group: str, tmp_path: Path) -> None:
    operator = tmp_path / "widget_operator.py"  # not operator.py: run from its folder, that shadows the stdlib's
    operator.write_text(OPERATOR.format(group=group))
    log = tmp_path / "kopf.log"
    proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone", "-n", ns, str(operator)],
                            env={**os.environ, "KUBECONFIG": kubectl.kubeconfig}, cwd=tmp_path,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        kubectl("apply", "-n", ns, "-f", "-", stdin=f"apiVersion: {group}/v1\nkind: Widget\nmetadata:\n"
                                                      f"  name: w\nspec:\n  size: large\n  replicas: 3\n")

        def configured() -> Any:
            return _json(kubectl, "get", "configmap", "w-config", "-n", ns)

        cm = wait_for_sync(configured, 60, message=f"the operator's ConfigMap; log: {log}")
        assert cm["data"] == {"size": "large", "replicas": "3"}

        def phase() -> str:
            widget = _json(kubectl, "get", f"widgets.{group}", "w", "-n", ns) or {}
            return str((widget.get("status") or {}).get("phase") or "")

        wait_for_sync(lambda: phase() == "Ready", 30, message=f"status written by the operator; log: {log}")
        widget = _json(kubectl, "get", f"widgets.{group}", "w", "-n", ns)
        # kopf keeps its own bookkeeping on the object: it went through our merge patches and the schema's pruning
        # leaves metadata alone.
        assert "kopf.zalando.org/last-handled-configuration" in widget["metadata"]["annotations"]

        kubectl("patch", f"widgets.{group}", "w", "-n", ns, "--type=merge", "-p", '{"spec":{"size":"small"}}')
        wait_for_sync(lambda: phase() == "Resized to small", 30, message=f"the update handler; log: {log}")
        assert proc.poll() is None, log.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
