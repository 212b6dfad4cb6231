"""End to end: a local cluster of several nodes (`pkctl cluster up --nodes 2`), as kind runs one: the host runs
the first node, the second runs in a network namespace of its own on a cluster bridge, with its own kubelet
and proxy. Pods spread by anti-affinity reach each other across nodes by their IPs (host-gw routes), with
their source IPs kept; `cluster down --purge` leaves nothing of any node (local_cluster checks)."""
from __future__ import annotations

import ipaddress
import json
import os
import urllib.request
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from dnslib import QTYPE, DNSRecord

from pkctl.cluster.components import BY_NAME
from tests.e2e.helpers import Cluster, local_cluster, make_namespace, no_traceback, run
from tests.util import unique, wait_for_sync as wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler")),
                       reason="the control plane has not landed in this build"),
]

# httpd's CGI tells the client the address it came from ($REMOTE_ADDR)
SERVER = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && "
          "chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www")


@pytest.fixture(scope="module")
def two() -> Iterator[Cluster]:
    with local_cluster("--nodes", "2", sysctls_kept=True) as c:
        yield c


def pkctl(c: Cluster, *argv: str, check: bool = True) -> Any:
    return run("--kubeconfig", str(c.kubeconfig), *argv, check=check)


def run_servers(c: Cluster, ns: str, layout: dict[str, tuple[str, dict[str, str]]]) -> dict[str, str]:
    """One SERVER pod per name, pinned to its node with its labels; their pod IPs once all run."""
    for name, (node, labels) in layout.items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
               "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "web", "image": "pkube.local/busybox:latest",
                                        "command": ["sh", "-c", SERVER]}]}}
        code, body = c.api(f"/api/v1/namespaces/{ns}/pods", pod)
        assert code == 201, body

    def ips() -> dict[str, str] | None:
        _, pods = c.api(f"/api/v1/namespaces/{ns}/pods")
        up = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods["items"]
              if p["status"].get("phase") == "Running" and p["status"].get("podIP")}
        return up if len(up) == len(layout) else None
    return wait_for(ips, timeout=90)


def ready_nodes(c: Cluster) -> dict[str, str]:
    """Ready node → its InternalIP."""
    code, body = c.api("/api/v1/nodes")
    assert code == 200, body
    out = {}
    for n in body["items"]:
        if any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"].get("conditions", [])):
            out[n["metadata"]["name"]] = next(a["address"] for a in n["status"]["addresses"]
                                              if a["type"] == "InternalIP")
    return out


def test_two_nodes_are_ready_with_distinct_internal_ips(two: Cluster) -> None:
    assert "with 2 nodes" in two.up_output
    worker = two.config()["workers"][0]["name"]  # <home>-worker, the home name made a valid node name
    assert worker.endswith("-worker")
    nodes = wait_for(lambda: n if len(n := ready_nodes(two)) == 2 else None, timeout=60)
    assert worker in nodes and len(set(nodes.values())) == 2
    assert nodes[worker] == two.config()["workers"][0]["ip"]
    wide = pkctl(two, "get", "nodes", "-o", "wide").stdout
    for name, ip in nodes.items():
        assert any(name in line and ip in line for line in wide.splitlines()), wide
    status = run("cluster", "status", "--home", str(two.home)).stdout
    assert worker in status and f"kubelet-{worker}" in status and f"proxy-{worker}" in status
    # the worker's kubelet runs in the node's own network namespace
    pid = two.record(f"kubelet-{worker}").pid  # type: ignore[union-attr]
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_anti_affinity_spreads_and_pods_reach_each_other_across_nodes_with_their_own_ips(two: Cluster) -> None:
    ns = make_namespace(two)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spread", "namespace": ns},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "spread"}}, "template": {
                      "metadata": {"labels": {"app": "spread"}},
                      "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                          {"labelSelector": {"matchLabels": {"app": "spread"}},
                           "topologyKey": "kubernetes.io/hostname"}]}},
                          "containers": [{"name": "web", "image": "pkube.local/busybox:latest",
                                          "command": ["sh", "-c", SERVER]}]}}}}
    code, body = two.api(f"/apis/apps/v1/namespaces/{ns}/deployments", deployment)
    assert code == 201, body

    def running() -> list[dict[str, Any]] | None:
        _, pods = two.api(f"/api/v1/namespaces/{ns}/pods")
        up = [p for p in pods["items"] if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
        return up if len(up) == 2 else None
    pods = wait_for(running, timeout=90)
    assert len({p["spec"]["nodeName"] for p in pods}) == 2, [p["spec"]["nodeName"] for p in pods]
    for client, server in (pods, pods[::-1]):
        ip = server["status"]["podIP"]
        request = f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080"

        def answer() -> str | None:
            p = pkctl(two, "-n", ns, "exec", client["metadata"]["name"], "--", "sh", "-c", request, check=False)
            assert no_traceback(p), p.stderr
            return p.stdout if "200 OK" in p.stdout else None
        out = wait_for(answer, timeout=30)
        # the server saw the client's own pod IP: no masquerade between nodes
        assert out.split()[-1].removeprefix("[").removesuffix("]").removeprefix("::ffff:") == \
            client["status"]["podIP"], out


def test_services_reach_pods_on_the_other_node_by_cluster_ip_dns_name_and_node_port(two: Cluster) -> None:
    ns = make_namespace(two)
    first, worker = two.config()["node_name"], two.config()["workers"][0]
    nodes = {first: "first", worker["name"]: "second"}
    for node, tag in nodes.items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": tag, "labels": {"on": tag}},
               "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "web", "image": "pkube.local/busybox:latest",
                                        "command": ["sh", "-c", SERVER]}]}}
        code, body = two.api(f"/api/v1/namespaces/{ns}/pods", pod)
        assert code == 201, body
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"to-{tag}"},
                   "spec": {"type": "NodePort", "selector": {"on": tag},
                            "ports": [{"port": 80, "targetPort": 8080}]}}
        code, body = two.api(f"/api/v1/namespaces/{ns}/services", service)
        assert code == 201, body

    def both_running() -> bool:
        _, pods = two.api(f"/api/v1/namespaces/{ns}/pods")
        return sum(p["status"].get("phase") == "Running" for p in pods["items"]) == 2
    wait_for(both_running, timeout=90)

    def fetch(client: str, target: str) -> str | None:
        request = f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {target}"
        p = pkctl(two, "-n", ns, "exec", client, "--", "sh", "-c", request, check=False)
        assert no_traceback(p), p.stderr
        return p.stdout if "200 OK" in p.stdout else None

    for client, server in (("first", "second"), ("second", "first")):
        _, svc = two.api(f"/api/v1/namespaces/{ns}/services/to-{server}")
        # by ClusterIP (once the proxy has the Service), and by the cluster DNS name: once the DNS server knows it
        # (asked from the host), the first lookup from a pod on the other node must work, no retry
        assert wait_for(lambda: fetch(client, f"{svc['spec']['clusterIP']} 80"), timeout=30)
        name = f"to-{server}.{ns}.svc.cluster.local"
        wait_for(lambda: resolves(two, name, svc["spec"]["clusterIP"]), timeout=20, message=f"DNS knows {name}")
        assert fetch(client, f"{name} 80")
    # a NodePort on the worker's IP, answered by the pod on the first node (and the other way round)
    port = two.api(f"/api/v1/namespaces/{ns}/services/to-first")[1]["spec"]["ports"][0]["nodePort"]
    assert wait_for(lambda: fetch("first", f"{worker['ip']} {port}"), timeout=30)


def test_network_policy_is_enforced_on_every_node(two: Cluster) -> None:
    """Each node's proxy enforces the policies of its own pods, for traffic from its node and from the other one:
    servers on both nodes accept only role=frontend clients, wherever those run."""
    ns = make_namespace(two)
    first, worker = two.config()["node_name"], two.config()["workers"][0]["name"]
    addresses = run_servers(two, ns, {"server-a": (first, {"app": "server"}), "server-b": (worker, {"app": "server"}),
                                      "front": (worker, {"role": "frontend"}), "other": (first, {"role": "other"})})

    def reaches(client: str, server: str) -> bool:
        request = f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {addresses[server]} 8080"
        p = pkctl(two, "-n", ns, "exec", client, "--", "sh", "-c", request, check=False)
        assert no_traceback(p), p.stderr
        return "200 OK" in p.stdout
    assert wait_for(lambda: reaches("other", "server-b"), timeout=30)
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "frontends-only"},
              "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}]}}
    code, body = two.api(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", policy)
    assert code == 201, body
    wait_for(lambda: not reaches("other", "server-b"), timeout=30)  # across nodes: the worker drops it
    assert not reaches("other", "server-a")  # on the first node
    assert reaches("front", "server-a")  # across nodes, allowed with its own source address
    assert reaches("front", "server-b")
    # the node's own traffic to its pods is always allowed (kubelet probes, host processes): the first node is this host
    with urllib.request.urlopen(f"http://{addresses['server-a']}:8080/cgi-bin/ip", timeout=5) as r:
        assert r.status == 200
def resolves(c: Cluster, name: str, ip: str) -> bool:
    """Whether the cluster DNS server, asked from the host at its address, resolves `name` to `ip`."""
    dns_ip = str(ipaddress.ip_network(c.config()["service_cidr"])[10])
    try:
        reply = DNSRecord.parse(DNSRecord.question(name).send(dns_ip, 53, timeout=0.5))
    except OSError:
        return False
    return any(str(rr.rdata) == ip for rr in reply.rr if rr.rtype == QTYPE.A)


def test_nodes_cannot_change_on_an_existing_home(two: Cluster) -> None:
    p = run("cluster", "up", "--home", str(two.home), "--nodes", "3", check=False)
    assert p.returncode != 0 and no_traceback(p)
    assert "created with --nodes 2" in p.stderr


def test_bad_node_count_is_a_one_line_error() -> None:
    p = run("cluster", "up", "--home", "/nonexistent-pkube-home", "--nodes", "0", check=False)
    assert p.returncode == 2 and no_traceback(p) and "number of nodes" in p.stderr


def test_config_records_the_workers(two: Cluster) -> None:
    cfg = two.config()
    assert [w["index"] for w in cfg["workers"]] == [2]
    assert json.dumps(cfg["node_subnet"]).count("/24") == 1


def test_images_built_here_run_on_the_second_node(two: Cluster, tmp_path: Path) -> None:
    """`pkctl image build` without --root, and `pkctl compose build`, put the image on every node of the
    kubeconfig's cluster."""
    project = tmp_path / unique("proj")
    project.mkdir()
    (project / "Dockerfile").write_text('FROM pkube.local/busybox:latest\nCMD ["sh", "-c", "echo built-here; '
                                        'exec sleep 3600"]\n')
    (project / "compose.yaml").write_text("services:\n  app:\n    build: .\n")
    tag = f"pkube.local/{unique('here')}:latest"
    built = pkctl(two, "image", "build", "-t", tag, str(project))
    assert f"Successfully tagged {tag}" in built.stdout
    compose = subprocess.run([sys.executable, "-m", "pkctl.main", "--kubeconfig", str(two.kubeconfig), "compose",
                              "build"], cwd=project, capture_output=True, text=True, timeout=300)
    assert compose.returncode == 0, compose.stderr
    ns, worker = make_namespace(two), two.config()["workers"][0]["name"]
    for name, image in (("built", tag), ("composed", f"pkube.local/{project.name}-app:latest")):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"nodeName": worker, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": image, "imagePullPolicy": "Never"}]}}
        code, body = two.api(f"/api/v1/namespaces/{ns}/pods", pod)
        assert code == 201, body
    for name in ("built", "composed"):
        wait_for(lambda: two.api(f"/api/v1/namespaces/{ns}/pods/{name}")[1]["status"].get("phase") == "Running",
                 timeout=60, message=f"pod {name} of a locally built image running on the second node")
        assert wait_for(lambda: "built-here" in pkctl(two, "-n", ns, "logs", name).stdout, timeout=20)
def test_a_worker_node_runs_one_process_whose_log_separates_its_kubelet_and_proxy(two: Cluster) -> None:
    worker = two.config()["workers"][0]["name"]
    # the node's kubelet process hosts its proxy (as a k3s agent does): one interpreter per node, not two
    status = run("cluster", "status", "--home", str(two.home)).stdout
    pid = str(two.record(f"kubelet-{worker}").pid)  # type: ignore[union-attr]
    proxy_row = next(line.split() for line in status.splitlines() if line.split()[:1] == [f"proxy-{worker}"])
    assert proxy_row[2] == pid and proxy_row[3] == "(shared)", status
    # each member's lines come out of the shared log on their own
    proxy_log = run("cluster", "logs", f"proxy-{worker}", "--home", str(two.home)).stdout
    kubelet_log = run("cluster", "logs", f"kubelet-{worker}", "--home", str(two.home)).stdout
    assert " [proxy] " in proxy_log and " [kubelet] " not in proxy_log, proxy_log[-2000:]
    assert " [kubelet] " in kubelet_log and " [proxy] " in kubelet_log, kubelet_log[-2000:]
