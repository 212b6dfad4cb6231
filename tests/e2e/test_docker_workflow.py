"""End to end, the Docker user's commands on a local cluster: `pkctl run -p` publishing a hostPort on the node,
a second pod asking for the same port left Pending by the scheduler, hostNetwork pods in the node's network
namespace, `pkctl run --attach --rm`, and `pkctl expose`.

Its own cluster (module-scoped `cluster`); pods run in a namespace at Pod Security level privileged, as
hostPorts and hostNetwork need (the cluster's default, baseline, refuses them).
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from tests.e2e.helpers import Cluster, run
from tests.support.proxy import fetch_text as fetch
from tests.util import free_port, unique, wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler",
                                                                  "kubelet", "proxy", "dns")),
                       reason="needs every component of the local cluster"),
]

IMAGE = "pkube.local/busybox:latest"


def serve(text: str, port: int) -> list[str]:
    """A container command line: busybox httpd serving `text` on `port`."""
    return ["sh", "-c", f"mkdir -p /tmp/www && echo {text} > /tmp/www/index.html && exec httpd -f -p {port} -h /tmp/www"]


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    name = unique("dock")
    code, body = cluster.api("/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}})
    assert code == 201, body
    yield name


def pk(cluster: Cluster, ns: str, *argv: str, check: bool = True) -> Any:
    return run("--kubeconfig", str(cluster.kubeconfig), "-n", ns, *argv, check=check)


def pod(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    code, body = cluster.api(f"/api/v1/namespaces/{ns}/pods/{name}")
    return body if code == 200 else {}


def test_run_publish_answers_on_localhost_and_node_ip(cluster: Cluster, ns: str) -> None:
    port = free_port()
    out = pk(cluster, ns, "run", "web", "--image", IMAGE, "-p", f"{port}:8080", "-e", "GREETING=hi",
             "--command", "--", *serve("hello-web", 8080))
    assert out.stdout.strip() == "pod/web created"
    assert wait_for_sync(lambda: fetch(f"http://127.0.0.1:{port}/") == "hello-web", timeout=60,
                         message="hostPort on 127.0.0.1")
    host_ip = pod(cluster, ns, "web")["status"]["hostIP"]
    assert fetch(f"http://{host_ip}:{port}/") == "hello-web"
    p = pod(cluster, ns, "web")
    assert p["metadata"]["labels"] == {"run": "web"}
    assert p["spec"]["containers"][0]["env"] == [{"name": "GREETING", "value": "hi"}]

    # The same hostPort again: the scheduler keeps the second pod Pending and says why.
    pk(cluster, ns, "run", "web2", "--image", IMAGE, "-p", f"{port}:8080", "--command", "--", "sleep", "3600")

    def unschedulable() -> str | None:
        conds = {c["type"]: c for c in pod(cluster, ns, "web2").get("status", {}).get("conditions", [])}
        c = conds.get("PodScheduled")
        return c["message"] if c and c["status"] == "False" else None
    message = wait_for_sync(unschedulable, timeout=30, message="web2 unschedulable")
    assert "didn't have free ports for the requested pod ports" in message
    assert pod(cluster, ns, "web2")["status"]["phase"] == "Pending"

    # The pod goes, and so does its published port.
    pk(cluster, ns, "delete", "pod", "web2", "--grace-period", "0")
    # httpd as PID 1 ignores SIGTERM: a short grace period, not 30 s of it.
    pk(cluster, ns, "delete", "pod", "web", "--grace-period", "1")
    wait_for_sync(lambda: fetch(f"http://127.0.0.1:{port}/") is None, timeout=60, message="hostPort closed")


def test_host_network_pod_uses_the_node_network(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    port = free_port()
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostnet"},
                "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": IMAGE, "command": serve("on-host", port),
                                                              "ports": [{"containerPort": port}]}]}}
    (tmp_path / "pod.json").write_text(json.dumps(manifest))
    pk(cluster, ns, "apply", "-f", str(tmp_path / "pod.json"))
    # Listening in the node's own namespace: 127.0.0.1 reaches it without any DNAT.
    assert wait_for_sync(lambda: fetch(f"http://127.0.0.1:{port}/") == "on-host", timeout=60, message="hostNetwork")
    # The kubelet may write the status a moment after the server answers.
    status = wait_for_sync(lambda: (st := pod(cluster, ns, "hostnet").get("status", {})).get("podIP") and st,
                           timeout=30, message="hostnet's podIP")
    assert status["podIP"] == status["hostIP"]
    table = cluster.config()["proxy_table"]
    rules = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True).stdout
    assert f"tcp . {port}" not in rules
    pk(cluster, ns, "delete", "pod", "hostnet", "--grace-period", "1")
    wait_for_sync(lambda: fetch(f"http://127.0.0.1:{port}/") is None, timeout=60, message="hostNetwork pod gone")


def test_run_attach_rm_prints_output_and_exit_code(cluster: Cluster, ns: str) -> None:
    started = time.monotonic()
    out = pk(cluster, ns, "run", "once", "--image", IMAGE, "--restart", "Never", "--attach", "--rm", "--command",
             "--", "sh", "-c", "echo hello from once; exit 3", check=False)
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert "hello from once" in out.stdout and 'pod "once" deleted' in out.stdout
    assert time.monotonic() - started < 60
    wait_for_sync(lambda: not pod(cluster, ns, "once"), timeout=30, message="pod removed")


def test_expose_deployment(cluster: Cluster, ns: str) -> None:
    pk(cluster, ns, "create", "deployment", "exp", "--image", IMAGE, "--port", "8080")
    out = pk(cluster, ns, "expose", "deployment/exp", "--port", "80", "--target-port", "8080", "--type", "NodePort")
    assert out.stdout.strip() == "service/exp exposed"
    code, svc = cluster.api(f"/api/v1/namespaces/{ns}/services/exp")
    assert code == 200 and svc["spec"]["selector"] == {"app": "exp"} and svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == 8080
    bad = pk(cluster, ns, "expose", "deployment/nope", "--port", "80", check=False)
    assert bad.returncode == 1 and "NotFound" in bad.stderr and "Traceback" not in bad.stderr


def test_run_publish_in_a_baseline_namespace_says_why_and_what_to_do(cluster: Cluster) -> None:
    name = unique("base")  # no Pod Security label: the cluster's default level, baseline
    code, body = cluster.api("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": name}})
    assert code == 201, body
    port = free_port()
    p = pk(cluster, name, "run", "web", "--image", IMAGE, "-p", f"{port}:8080", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    refusal, hint = p.stderr.strip().splitlines()
    assert refusal == ('Error from server (Forbidden): pods "web" is forbidden: violates PodSecurity '
                       f'"baseline:latest": hostPort (container "web" uses hostPort {port})')
    assert hint.startswith(f"hint: -p publishes a host port, which the Pod Security level of namespace '{name}' "
                           "forbids")
    assert f"`pkctl expose pod/web --type NodePort --port 8080`" in hint
    assert pod(cluster, name, "web") == {}
    # what the hint says works
    label = hint.split("`")[1].split()[1:]
    assert label[:3] == ["label", "namespace", name], hint
    pk(cluster, name, *label)
    assert pk(cluster, name, "run", "web", "--image", IMAGE, "-p", f"{port}:8080").stdout.strip() == "pod/web created"
    pk(cluster, name, "delete", "namespace", name)
