"""In-cluster API access on `pkctl cluster up`: a pod's mounted ServiceAccount token and CA let the official Python
client's in-cluster loader reach the API through the `kubernetes` Service IP over verified TLS, from the pod's
own network namespace; RBAC answers 403 until a RoleBinding grants the ServiceAccount `view`.

The client runs on the host inside the pod's network namespace, with the token and ca.crt read out of the
container: the bundled busybox image has no Python, and busybox's wget cannot do TLS with a modern server (it
offers no signature algorithm OpenSSL 3 accepts, and verifies no certificate anyway).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.helpers import Cluster, kubectl, local_cluster, make_namespace
from tests.util import unique

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CLIENT = """
import sys
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.config.incluster_config import InClusterConfigLoader
host, port, token, ca, namespace = sys.argv[1:6]
cfg = client.Configuration()
InClusterConfigLoader(token_filename=token, cert_filename=ca,
                      environ={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}).load_and_set(cfg)
try:
    pods = client.CoreV1Api(client.ApiClient(cfg)).list_namespaced_pod(namespace)
    print(200, *sorted(p.metadata.name for p in pods.items))
except ApiException as e:
    print(e.status)
"""


@pytest.fixture(scope="module", params=[1, 2], ids=["one-node", "worker-node"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """One node (the API reached at the node's address), and two with the pod on the worker (the API reached at
    the cluster network's gateway, from inside the worker's netns)."""
    with local_cluster(*(["--nodes", "2"] if request.param == 2 else [])) as c:
        yield c


def _pod_netns(c: Cluster, pod_ip: str) -> str:
    prefix = c.config()["netns_prefix"][:-1]  # the workers' pods: <prefix without "-">w<N>-
    for name in sorted(p.name for p in Path("/run/netns").iterdir() if p.name.startswith(prefix)):
        out = subprocess.run(["ip", "-n", name, "-4", "-o", "addr"], capture_output=True, text=True).stdout
        if f" {pod_ip}/" in out:
            return name
    raise AssertionError(f"no network namespace holds {pod_ip}")


def _in_pod_netns(netns: str, *args: str) -> str:
    p = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, *args], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_pod_lists_pods_with_its_token_once_rbac_allows(cluster: Cluster, tmp_path: Path) -> None:
    ns = make_namespace(cluster)
    name = unique("client")
    workers = cluster.config()["workers"]
    on_worker = ["--overrides", json.dumps({"spec": {"nodeName": workers[0]["name"]}})] if workers else []
    run = kubectl(cluster, "run", name, "-n", ns, "--image", "pkube.local/busybox:latest", "--restart", "Never",
                  *on_worker, "--command", "--", "sleep", "3600")
    assert run.returncode == 0, run.stderr
    wait = kubectl(cluster, "wait", "-n", ns, f"pod/{name}", "--for", "condition=Ready", "--timeout", "25s")
    assert wait.returncode == 0, wait.stderr
    node = kubectl(cluster, "get", "pod", "-n", ns, name, "-o", "jsonpath={.spec.nodeName}").stdout
    assert node == (workers[0]["name"] if workers else cluster.config()["node_name"])
    env = kubectl(cluster, "exec", "-n", ns, name, "--", "env").stdout.splitlines()
    host = next(line.split("=", 1)[1] for line in env if line.startswith("KUBERNETES_SERVICE_HOST="))
    port = next(line.split("=", 1)[1] for line in env if line.startswith("KUBERNETES_SERVICE_PORT="))
    code, svc = cluster.api("/api/v1/namespaces/default/services/kubernetes")
    assert code == 200 and host == svc["spec"]["clusterIP"] and port == "443"
    for f in ("token", "ca.crt", "namespace"):
        (tmp_path / f).write_text(kubectl(cluster, "exec", "-n", ns, name, "--", "cat", f"{SA_DIR}/{f}").stdout)
    assert (tmp_path / "namespace").read_text() == ns
    assert (tmp_path / "ca.crt").read_text() == (cluster.home / "pki" / "ca.crt").read_text()
    pod_ip = kubectl(cluster, "get", "pod", "-n", ns, name, "-o", "jsonpath={.status.podIP}").stdout
    netns = _pod_netns(cluster, pod_ip)
    args = (host, port, str(tmp_path / "token"), str(tmp_path / "ca.crt"), ns)
    assert _in_pod_netns(netns, *args) == "403"
    bind = kubectl(cluster, "create", "rolebinding", "default-view", "-n", ns, "--clusterrole", "view",
                   "--serviceaccount", f"{ns}:default")
    assert bind.returncode == 0, bind.stderr
    deadline = time.monotonic() + 10
    out = _in_pod_netns(netns, *args)
    while out == "403" and time.monotonic() < deadline:  # the authorizer's cache catches up with the binding
        out = _in_pod_netns(netns, *args)
    assert out == f"200 {name}"
