"""End to end: the web example on a local cluster's real node — pods in runc containers, Service traffic
through NodePort and ClusterIP, pods resolving Services by name, healing, scaling, `down`/`up`.

Its own cluster (the module-scoped `cluster` fixture): tests run in file order on one web Deployment.
"""
from __future__ import annotations

import functools
import ipaddress
import threading
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from pkctl.cluster.components import BY_NAME
from tests.e2e.helpers import EXAMPLES, Cluster, make_namespace, node_state_left, run
from tests.util import wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler",
                                                                  "kubelet", "proxy", "dns")),
                       reason="needs every component of the local cluster"),
]


@dataclass
class Web:
    ns: str
    node_port: int
    cluster_ip: str


def kc(cluster: Cluster) -> tuple[str, str]:
    return ("--kubeconfig", str(cluster.kubeconfig))


def pods(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    code, body = cluster.api(f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb")
    assert code == 200, body
    return list(body["items"])


def is_ready(p: dict[str, Any]) -> bool:
    return not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))


def ready_pods(cluster: Cluster, ns: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in pods(cluster, ns) if is_ready(p)}


def container_id(p: dict[str, Any]) -> str:
    """The runtime's id of the pod's one container (`runc://<id>` in the status, as CRI runtimes report it)."""
    scheme, _, cid = p["status"]["containerStatuses"][0]["containerID"].partition("://")
    assert scheme == "runc", p["status"]["containerStatuses"]
    return cid


def web_ready(cluster: Cluster, ns: str, replicas: int) -> bool:
    """Exactly `replicas` pods Ready, the Deployment agrees, and no other web pod is left (terminated ones gone)."""
    dep = cluster.api(f"/apis/apps/v1/namespaces/{ns}/deployments/web")[1]
    return (len(ready_pods(cluster, ns)) == replicas == len(pods(cluster, ns))
            and dep["status"].get("readyReplicas") == replicas)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as r:
        return str(r.read().decode().strip())


def answers(url: str, n: int) -> Counter[str] | None:
    """Which pods answered `n` requests (the page says `hello from <pod name>`); None if one failed
    (callers poll: right after a change the proxy may not have programmed the Service yet)."""
    seen: Counter[str] = Counter()
    for _ in range(n):
        try:
            body = get(url)
        except OSError:
            return None
        assert body.startswith("hello from "), body
        seen[body.removeprefix("hello from ")] += 1
    return seen


def answered_by(url: str, n: int) -> set[str]:
    return set(answers(url, n) or ())


def served_only_by_ready_pods(cluster: Cluster, web: Web, n: int = 8) -> bool:
    seen = answers(f"http://127.0.0.1:{web.node_port}/", n)
    return seen is not None and set(seen) <= set(ready_pods(cluster, web.ns))


@pytest.fixture(scope="module")
def web(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The web example applied as a user would, in its own namespace. Node ports are cluster-wide and
    30080 may be taken on this host, so the NodePort Service gets one allocated by the apiserver."""
    ns = make_namespace(cluster)
    docs = list(yaml.safe_load_all((EXAMPLES / "web.yaml").read_text()))
    for d in docs:
        for port in d["spec"].get("ports", []):
            port.pop("nodePort", None)
    manifest: Path = tmp_path_factory.mktemp("web") / "web.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    run(*kc(cluster), "apply", "-n", ns, "-f", str(manifest))
    node_port = cluster.api(f"/api/v1/namespaces/{ns}/services/web")[1]["spec"]["ports"][0]["nodePort"]
    cluster_ip = cluster.api(f"/api/v1/namespaces/{ns}/services/web-internal")[1]["spec"]["clusterIP"]
    yield Web(ns, node_port, cluster_ip)


def test_web_pods_run_in_real_containers(cluster: Cluster, web: Web) -> None:
    wait_for_sync(lambda: web_ready(cluster, web.ns, 3), timeout=60, interval=0.2, message="3 web pods Ready")
    running = cluster.runc_containers()
    pod_range = ipaddress.ip_network(cluster.config()["cluster_cidr"])
    for p in ready_pods(cluster, web.ns).values():
        assert p["spec"]["nodeName"] == cluster.config()["node_name"]
        assert running.get(container_id(p)) == "running", (container_id(p), running)
        assert ipaddress.ip_address(p["status"]["podIP"]) in pod_range


def test_nodeport_and_cluster_ip_answer_from_every_pod(cluster: Cluster, web: Web) -> None:
    wait_for_sync(lambda: web_ready(cluster, web.ns, 3), timeout=60, interval=0.2, message="3 web pods Ready")
    names = set(ready_pods(cluster, web.ns))
    # the proxy programs the Service once the endpoints are ready: poll until every pod has answered
    for url in (f"http://127.0.0.1:{web.node_port}/", f"http://{web.cluster_ip}/"):
        wait_for_sync(lambda: answered_by(url, 15) == names, timeout=20, interval=0.2,
                      message=f"{url} load-balanced over the 3 pods")


def _through_ingress(port: int, host: str) -> str | None:
    """The page of the pod that answered a request through the ingress' nginx, None on an error answer."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return str(r.read().decode().strip())
    except OSError:
        return None


def test_an_ingress_gets_the_default_pkube_class_and_reaches_every_pod(cluster: Cluster, web: Web,
                                                                        tmp_path: Path) -> None:
    """Issue 15: `cluster up` runs the ingress controller (nginx on the home's ingress ports) and installs the
    `pkube` IngressClass as the default, so an Ingress naming no class is served."""
    if not BY_NAME["ingress"].available():
        pytest.skip("the ingress controller is not in this build")
    host = f"web.{web.ns}.test"
    manifest = tmp_path / "ingress.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": "web-internal", "port": {"number": 80}}}}]}}]}}))
    run(*kc(cluster), "apply", "-n", web.ns, "-f", str(manifest))
    wait_for_sync(lambda: web_ready(cluster, web.ns, 3), timeout=60, interval=0.2, message="3 web pods Ready")
    names = {f"hello from {n}" for n in ready_pods(cluster, web.ns)}
    port = cluster.config()["ingress_http_port"]

    def every_pod_answered() -> bool:
        seen = {_through_ingress(port, host) for _ in range(15)}
        return seen == names
    wait_for_sync(every_pod_answered, timeout=30, interval=0.2, message="the ingress load-balancing over 3 pods")
    ing = cluster.api(f"/apis/networking.k8s.io/v1/namespaces/{web.ns}/ingresses/web")[1]
    assert ing["spec"]["ingressClassName"] == "pkube"
    wait_for_sync(lambda: cluster.api(f"/apis/networking.k8s.io/v1/namespaces/{web.ns}/ingresses/web")[1]
                  .get("status", {}).get("loadBalancer", {}).get("ingress") == [{"ip": cluster.config()["node_ip"]}],
                  timeout=10, message="the node's address in the Ingress status")
    run(*kc(cluster), "delete", "-n", web.ns, "ingress/web")


def test_pods_reach_a_service_by_its_dns_name(cluster: Cluster, web: Web) -> None:
    pod = sorted(ready_pods(cluster, web.ns))[0]
    # through the cluster DNS (--cluster-dns) and the Service's ClusterIP; busybox wget prints progress on
    # stderr (and this static busybox's wget crashes with -q or -T, so neither is used)
    p = run(*kc(cluster), "exec", "-n", web.ns, pod, "--", "wget", "-O", "-",
            f"http://web-internal.{web.ns}.svc.cluster.local/", check=False, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().removeprefix("hello from ") in ready_pods(cluster, web.ns), p.stdout


def test_a_deleted_pod_is_replaced(cluster: Cluster, web: Web) -> None:
    before = ready_pods(cluster, web.ns)
    victim = sorted(before)[0]
    gone = container_id(before[victim])
    run(*kc(cluster), "delete", "-n", web.ns, f"pod/{victim}")
    wait_for_sync(lambda: web_ready(cluster, web.ns, 3) and victim not in ready_pods(cluster, web.ns),
                  timeout=30, interval=0.2, message="the deleted pod replaced")
    assert gone not in cluster.runc_containers()  # its container is removed, not just stopped
    wait_for_sync(functools.partial(served_only_by_ready_pods, cluster, web), timeout=20, interval=0.2,
                  message="traffic only to the current pods")


@pytest.mark.parametrize("replicas", [5, 2])
def test_scaling(cluster: Cluster, web: Web, replicas: int) -> None:
    run(*kc(cluster), "scale", "-n", web.ns, "deployment/web", "--replicas", str(replicas))
    wait_for_sync(lambda: web_ready(cluster, web.ns, replicas), timeout=60, interval=0.2,
                  message=f"{replicas} web pods Ready")
    ids = {container_id(p) for p in ready_pods(cluster, web.ns).values()}
    running = {cid for cid, status in cluster.runc_containers().items() if status == "running"}
    assert ids <= running
    wait_for_sync(functools.partial(served_only_by_ready_pods, cluster, web), timeout=20, interval=0.2,
                  message=f"traffic only to the {replicas} current pods")


def test_rolling_update_to_a_new_image_loses_no_request(cluster: Cluster, web: Web, tmp_path: Path) -> None:
    # a second version of the bundled image, in the node's image store
    run("image", "tag", "--root", str(cluster.home / "images"), "pkube.local/busybox:latest",
        "pkube.local/busybox:v2")
    old = set(ready_pods(cluster, web.ns))
    dep = cluster.api(f"/apis/apps/v1/namespaces/{web.ns}/deployments/web")[1]
    replicas = dep["spec"]["replicas"]
    manifest = tmp_path / "web-v2.yaml"
    doc = next(d for d in yaml.safe_load_all((EXAMPLES / "web.yaml").read_text()) if d["kind"] == "Deployment")
    doc["spec"]["replicas"] = replicas
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = "pkube.local/busybox:v2"
    manifest.write_text(yaml.safe_dump(doc))

    failures, served = [], 0
    stop = threading.Event()

    def client() -> None:  # a user's client loop through the NodePort during the whole rollout
        nonlocal served
        while not stop.is_set():
            try:
                get(f"http://127.0.0.1:{web.node_port}/")
                served += 1
            except OSError as e:
                failures.append(repr(e))
    loop = threading.Thread(target=client)
    loop.start()
    try:
        run(*kc(cluster), "apply", "-n", web.ns, "-f", str(manifest))

        def rolled_out() -> bool:
            now = ready_pods(cluster, web.ns)
            return web_ready(cluster, web.ns, replicas) and not set(now) & old and all(
                p["spec"]["containers"][0]["image"] == "pkube.local/busybox:v2" for p in now.values())
        wait_for_sync(rolled_out, timeout=60, interval=0.2, message="every pod replaced by a v2 pod")
    finally:
        stop.set()
        loop.join(10)
    assert served > 0 and failures == [], f"{len(failures)} failed of {served + len(failures)}: {failures[:3]}"


def test_a_deleted_statefulset_pod_comes_back_with_its_name_and_data(cluster: Cluster) -> None:
    ns = make_namespace(cluster)
    run(*kc(cluster), "apply", "-n", ns, "-f", str(EXAMPLES / "statefulset.yaml"))

    def db_ready(name: str, not_uid: str = "") -> dict[str, Any] | None:
        code, p = cluster.api(f"/api/v1/namespaces/{ns}/pods/{name}")
        return p if code == 200 and is_ready(p) and p["metadata"]["uid"] != not_uid else None
    for name in ("db-0", "db-1"):
        wait_for_sync(functools.partial(db_ready, name), timeout=60, interval=0.2, message=f"{name} Ready")
    old = db_ready("db-0")
    assert old is not None
    run(*kc(cluster), "exec", "-n", ns, "db-0", "--", "sh", "-c", "echo written-later >> /data/index.html")
    run(*kc(cluster), "delete", "-n", ns, "pod/db-0")
    wait_for_sync(lambda: db_ready("db-0", old["metadata"]["uid"]), timeout=60, interval=0.2,
                  message="a new db-0 Ready")
    # db-1 reads db-0's page through the headless Service's per-pod DNS name: same volume, same data
    page = run(*kc(cluster), "exec", "-n", ns, "db-1", "--", "wget", "-O", "-", f"http://db-0.db.{ns}.svc:8080/",
               timeout=30).stdout
    assert page.split() == ["created", "by", "db-0", "written-later"], page


def test_down_leaves_nothing_and_up_runs_the_pods_again(cluster: Cluster, web: Web) -> None:
    before = ready_pods(cluster, web.ns)
    assert len(before) == 2
    run("cluster", "down", "--home", str(cluster.home))
    assert node_state_left(cluster) == []

    run("cluster", "up", "--home", str(cluster.home), "--wait-timeout", "60")
    # the same pod objects come back from etcd, and the kubelet runs them in new containers
    old_ids = {container_id(p) for p in before.values()}

    def running_again() -> bool:
        now, running = ready_pods(cluster, web.ns), cluster.runc_containers()
        return set(now) == set(before) and web_ready(cluster, web.ns, 2) and all(
            container_id(p) not in old_ids and running.get(container_id(p)) == "running" for p in now.values())
    wait_for_sync(running_again, timeout=60, interval=0.2, message="the web pods running again in new containers")
    wait_for_sync(lambda: answered_by(f"http://127.0.0.1:{web.node_port}/", 10) == set(before),
                  timeout=20, interval=0.2, message="the NodePort serves from both pods again")
