"""End to end: nodes added to and removed from a running local cluster (`pkctl cluster node add|remove|list`), as
kind-style nodes (a network namespace each on the cluster bridge). One cluster made with one node: a node added
becomes Ready, runs a Deployment's pod that the host node's pod reaches by its IP, and shows in `cluster status`
and `cluster node list`; removing it drains it (the pod moves to the host node), and leaves nothing of it: no Node,
netns, veth, route, cgroup, state dir or token. Neither touches the control plane: etcd and the apiserver keep their
processes, writes through the API never fail and a watch opened before stays open. A node added survives a power cut
(every process of the cluster SIGKILLed): `cluster up` brings it back. The host node and unknown names are refused
with one-line errors; `cluster down --purge` at the end leaves nothing (local_cluster checks)."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from tests.e2e.helpers import Cluster, local_cluster, make_namespace, no_traceback, run, workers_left
from tests.e2e.test_incluster import SA_DIR, _in_pod_netns, _pod_netns
from tests.util import wait_for_sync as wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler")),
                       reason="the control plane has not landed in this build"),
]

SERVER = "mkdir -p /www && echo hello-from-worker > /www/index.html && exec httpd -f -p 8080 -h /www"


@pytest.fixture(scope="module")
def one() -> Iterator[Cluster]:
    with local_cluster("--nodes", "1") as c:
        yield c


def pkctl(c: Cluster, *argv: str, check: bool = True) -> Any:
    return run("--kubeconfig", str(c.kubeconfig), *argv, check=check)


def node_cmd(c: Cluster, *argv: str) -> Any:
    p = run("cluster", "node", *argv, "--home", str(c.home), check=False, timeout=240)
    assert no_traceback(p), p.stdout + p.stderr
    return p


def pods(c: Cluster, ns: str) -> list[dict[str, Any]]:
    code, body = c.api(f"/api/v1/namespaces/{ns}/pods")
    assert code == 200, body
    return list(body["items"])


def running_on(c: Cluster, ns: str, label: str, node: str) -> dict[str, Any] | None:
    return next((p for p in pods(c, ns) if p["metadata"].get("labels", {}).get("app") == label
                 and p["spec"].get("nodeName") == node and p["status"].get("phase") == "Running"
                 and "deletionTimestamp" not in p["metadata"] and p["status"].get("podIP")), None)


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


@contextmanager
def control_plane_untouched(c: Cluster, ns: str) -> Iterator[None]:
    """While the body adds or removes a node: etcd and the apiserver keep their processes, a client creating
    ConfigMaps through the API one after the other sees no failure, and a watch opened before is not ended (it
    sees the ConfigMap created last)."""
    pids = {name: c.record(name) for name in ("etcd", "apiserver")}
    assert all(r is not None and r.alive() for r in pids.values()), pids
    cfg = c.config()
    tls = ssl.create_default_context(cafile=str(c.home / "pki" / "ca.crt")) if cfg["tls"] else None
    conn = (http.client.HTTPSConnection("127.0.0.1", cfg["api_port"], context=tls, timeout=600) if tls else
            http.client.HTTPConnection("127.0.0.1", cfg["api_port"], timeout=600))
    conn.request("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=1800",
                 headers={"Authorization": f"Bearer {c.token()}"})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    seen: list[str] = []
    ended: list[str] = []

    def watch() -> None:
        try:
            while line := response.readline():
                event = json.loads(line)
                seen.append(event["object"]["metadata"].get("name", "") if event["type"] == "ADDED" else "")
        except Exception as e:  # noqa: BLE001 - also how http.client fails once the socket is shut at the end
            ended.append(repr(e))
        else:
            ended.append("end of stream")

    writes: list[int] = []
    failures: list[str] = []
    done = threading.Event()

    def write() -> None:
        while not done.is_set():
            try:
                code, body = c.api(f"/api/v1/namespaces/{ns}/configmaps", configmap(f"w{len(writes)}"))
            except OSError as e:
                code, body = 0, {"error": repr(e)}
            writes.append(code)
            if code != 201:
                failures.append(f"{code}: {body}")
            done.wait(0.1)

    threads = [threading.Thread(target=watch, daemon=True), threading.Thread(target=write, daemon=True)]
    for t in threads:
        t.start()
    try:
        yield
        done.set()
        threads[1].join(10)
        assert not failures and len(writes) > 10, (failures, len(writes))
        assert {name: c.record(name) for name in pids} == pids
        code, body = c.api(f"/api/v1/namespaces/{ns}/configmaps", configmap("last"))
        assert code == 201, body
        wait_for(lambda: "last" in seen or ended, timeout=10)
        ours = [n for n in seen if n == "last" or n.startswith("w")]  # not the namespace's kube-root-ca.crt
        assert not ended and "last" in ours and len(ours) == len(writes) + 1, (ended, len(ours), len(writes))
    finally:
        done.set()
        if conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()


def test_the_host_node_and_unknown_nodes_cannot_be_removed(one: Cluster) -> None:
    host = one.config()["node_name"]
    p = node_cmd(one, "remove", host)
    assert p.returncode == 1 and "first node" in p.stderr and "cannot be removed" in p.stderr, p.stderr
    p = node_cmd(one, "remove", "no-such-node")
    assert p.returncode == 1 and "'no-such-node' is not a node of the cluster" in p.stderr and host in p.stderr
    p = node_cmd(one, "add", "--count", "0")
    assert p.returncode == 2 and "number of nodes to add" in p.stderr
    p = node_cmd(one, "add", "--wait", "soon")
    assert p.returncode == 2 and "--wait" in p.stderr
    for argv in (("add",), ("remove", "x"), ("list",)):
        p = run("cluster", "node", *argv, "--home", "/nonexistent-pkube-home", check=False)
        assert p.returncode == 1 and p.stderr.startswith("error: no pkube cluster at") and no_traceback(p)
    assert one.config()["workers"] == []


def test_add_a_node_run_a_pod_there_then_remove_it(one: Cluster, tmp_path: Path) -> None:
    host = one.config()["node_name"]
    ns = make_namespace(one)
    with control_plane_untouched(one, ns):
        add = node_cmd(one, "add")
        assert add.returncode == 0, add.stdout + add.stderr
    assert "restarting the cluster's components" not in add.stdout and "supervisor" in add.stdout, add.stdout
    worker = one.config()["workers"][0]
    name = worker["name"]
    assert worker["index"] == 2 and name.endswith("-worker") and f"node {name} Ready" in add.stdout
    code, node = one.api(f"/api/v1/nodes/{name}")
    assert code == 200 and {"type": "InternalIP", "address": worker["ip"]} in node["status"]["addresses"]
    assert node["spec"]["podCIDR"] != one.api(f"/api/v1/nodes/{host}")[1]["spec"]["podCIDR"]
    status = run("cluster", "status", "--home", str(one.home)).stdout
    assert f"kubelet-{name}" in status and f"{name} Ready" in status, status
    listed = node_cmd(one, "list").stdout
    assert any(name in line and worker["ip"] in line and "Ready" in line for line in listed.splitlines()), listed
    assert os.path.exists(f"/run/netns/{worker['netns']}")

    # a Deployment's pod on the new node (the host node cordoned meanwhile), reached from a pod on the host node
    pkctl(one, "cordon", host)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
                      "metadata": {"labels": {"app": "web"}},
                      "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                          {"name": "web", "image": "pkube.local/busybox:latest", "command": ["sh", "-c", SERVER]}]}}}}
    code, body = one.api(f"/apis/apps/v1/namespaces/{ns}/deployments", deployment)
    assert code == 201, body
    server = wait_for(lambda: running_on(one, ns, "web", name), timeout=90)
    pkctl(one, "uncordon", host)
    # it reaches the API through the `kubernetes` Service: the apiserver, started before the cluster had a second
    # node, still advertises the address it was started with (the host's), which the new node's pods reach too
    svc = one.api("/api/v1/namespaces/default/services/kubernetes")[1]["spec"]
    token = pkctl(one, "-n", ns, "exec", server["metadata"]["name"], "--", "cat", f"{SA_DIR}/token").stdout
    (tmp_path / "token").write_text(token)
    shutil.copy(one.home / "pki" / "ca.crt", tmp_path / "ca.crt")
    assert _in_pod_netns(_pod_netns(one, server["status"]["podIP"]), svc["clusterIP"], "443",
                         str(tmp_path / "token"), str(tmp_path / "ca.crt"), ns) == "403"  # authenticated, not allowed
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"app": "client"}},
              "spec": {"nodeName": host, "terminationGracePeriodSeconds": 1, "containers": [
                  {"name": "c", "image": "pkube.local/busybox:latest", "command": ["sleep", "3600"]}]}}
    code, body = one.api(f"/api/v1/namespaces/{ns}/pods", client)
    assert code == 201, body
    wait_for(lambda: running_on(one, ns, "client", host), timeout=60)

    def fetch() -> str | None:
        request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {server['status']['podIP']} 8080"
        p = pkctl(one, "-n", ns, "exec", "client", "--", "sh", "-c", request, check=False)
        return p.stdout if "hello-from-worker" in p.stdout else None
    assert wait_for(fetch, timeout=30)

    # remove it: drained (the Deployment's pod comes back on the host node), then nothing of it is left
    before = one.config()
    with control_plane_untouched(one, make_namespace(one)):
        remove = node_cmd(one, "remove", name)
        assert remove.returncode == 0, remove.stdout + remove.stderr
    assert f"node/{name} drained" in remove.stdout and f"node {name} removed" in remove.stdout, remove.stdout
    assert one.api(f"/api/v1/nodes/{name}")[0] == 404
    assert one.config()["workers"] == []
    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert workers_left(before, netns) == []
    assert not Path(one.home, "nodes", name).exists()
    assert f"system:node:{name}" not in (one.home / "tokens.csv").read_text()
    assert wait_for(lambda: running_on(one, ns, "web", host), timeout=90)
    assert name not in node_cmd(one, "list").stdout
    assert node_cmd(one, "remove", name).returncode == 1  # gone: an unknown node now


def test_a_node_added_comes_back_after_a_power_cut(one: Cluster) -> None:
    add = node_cmd(one, "add")
    assert add.returncode == 0, add.stdout + add.stderr
    name = one.config()["workers"][-1]["name"]
    # every process of the cluster dies at once: the supervisor first frozen, so that it restarts nothing, and its
    # components SIGKILLed before it (they would get SIGTERM when it dies, see supervisor.py)
    supervisor = one.record("supervisor")
    assert supervisor is not None
    components = [r for p in sorted((one.home / "run").glob("*.json")) if p.stem != "supervisor"
                  and (r := one.record(p.stem)) is not None and r.alive()]
    assert len(components) >= 5, components  # etcd, apiserver, control-plane, kubelet, the new node's kubelet
    supervisor.signal(signal.SIGSTOP)
    for r in components:
        r.signal(signal.SIGKILL)
    supervisor.signal(signal.SIGKILL)
    for r in [supervisor, *components]:
        wait_for(lambda: not r.alive(), timeout=10)
    up = run("cluster", "up", "--home", str(one.home), "--wait-timeout", "90", check=False, timeout=150)
    assert up.returncode == 0 and f"kubelet-{name} ready" in up.stdout, up.stdout + up.stderr
    code, node = one.api(f"/api/v1/nodes/{name}")
    assert code == 200 and any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    assert f"{name} Ready" in run("cluster", "status", "--home", str(one.home)).stdout
