"""End to end: `pkctl cluster up` in a temporary home, used exactly as a user would: the control plane,
the kubeconfig, the examples, bad input, restarts, `down`/`up`. Workloads: test_workloads.py.

One cluster serves the whole module (the `cluster` fixture in conftest.py); the tests run in file
order and the last ones stop and restart it. The fixture always ends with `down --purge`.
"""
from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from pkctl.cluster.components import BY_NAME, COMPONENTS, GROUP
from tests.e2e.helpers import (EXAMPLES, ROOT, Cluster, kubectl, make_namespace, no_traceback, node_state_left,
                               recorded_processes, run)
from tests.util import wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not BY_NAME["apiserver"].available(), reason="the apiserver has not landed in this build"),
]


def test_up_shows_progress_and_what_to_try_next(cluster: Cluster) -> None:
    out = cluster.up_output
    assert "✓ etcd ready" in out and "✓ apiserver ready" in out
    for comp in COMPONENTS:
        # every component is either reported ready or said to be missing from this build
        assert f"✓ {comp.name} ready" in out or f"- {comp.name}: " in out, out
    ready_members = out.split("✓ control-plane ready", 1)[1].splitlines()[0]
    for m in GROUP.members:
        assert (m.name in ready_members) == m.available(), out
    assert f"export KUBECONFIG={cluster.kubeconfig}" in out


def test_status_lists_running_components(cluster: Cluster) -> None:
    st = run("cluster", "status", "--home", str(cluster.home))
    table = st.stdout.split("COMPONENT", 1)[1].split("\n\n", 1)[0]
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    for name in ("etcd", "apiserver"):
        pid = cluster.state(name)["pid"]
        assert rows[name].split()[1:3] == ["Running", str(pid)], st.stdout
        assert "ok (" in rows[name]
    assert "etcd data:" in st.stdout


def test_status_shows_etcd_size_per_member_and_no_alarm(cluster: Cluster) -> None:
    st = run("cluster", "status", "--home", str(cluster.home))
    member = [line for line in st.stdout.splitlines() if line.startswith("etcd https://")]
    assert len(member) == 1 and " in use" in member[0], st.stdout
    assert "ALARM" not in st.stdout


def test_kubeconfig_works_for_pkctl(cluster: Cluster) -> None:
    ns = make_namespace(cluster)
    ours = run("--kubeconfig", str(cluster.kubeconfig), "get", "namespaces")
    assert ns in ours.stdout.split()


def test_kubeconfig_works_for_kubectl(cluster: Cluster) -> None:
    if not cluster.config()["tls"]:
        pytest.skip("kubectl sends no bearer token over plain HTTP, and this build's apiserver has no TLS flags")
    ns = make_namespace(cluster)
    theirs = kubectl(cluster, "get", "namespaces", ns, "-o", "name")
    assert theirs.returncode == 0, theirs.stderr
    assert theirs.stdout.strip() == f"namespace/{ns}"


def _get(url: str, ctx: ssl.SSLContext | None) -> int:
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        return int(r.status)


def test_etcd_and_the_kubelet_let_in_only_the_clusters_client_certificates(cluster: Cluster) -> None:
    """Issue 13 (defects 3, 5): a local user without a certificate of the cluster CA reaches neither etcd (every
    Secret; a Pod written there runs as root) nor the kubelet API (exec into any pod)."""
    cfg, pki = cluster.config(), cluster.home / "pki"
    trusting = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    etcd = f"127.0.0.1:{cfg['etcd_client_port']}"
    for url, ctx in ((f"http://{etcd}/v3/kv/range", None), (f"https://{etcd}/v3/kv/range", trusting)):
        with pytest.raises(OSError):  # refused: plain HTTP, then TLS without a client certificate
            _get(url, ctx)
    probe = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    probe.load_cert_chain(pki / "etcd-healthcheck-client.crt", pki / "etcd-healthcheck-client.key")
    assert _get(f"https://{etcd}/health", probe) == 200  # the refusals were about the certificate
    kubelet = f"{cfg['node_ip']}:{cfg['kubelet_port']}"
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{cfg['kubelet_port']}"], capture_output=True,
                               text=True).stdout.split()
    assert f"0.0.0.0:{cfg['kubelet_port']}" not in listening and kubelet in listening  # the node IP only
    for url, ctx in ((f"http://{kubelet}/stats/summary", None), (f"https://{kubelet}/stats/summary", trusting)):
        with pytest.raises(OSError):  # plain HTTP: no answer; TLS without a client certificate: 401
            _get(url, ctx)
    try:
        _get(f"https://{kubelet}/stats/summary", trusting)
    except urllib.error.HTTPError as e:
        assert e.code == 401


# what each example creates, as pkctl reports it and where to find it in the API
EXAMPLE_OBJECTS = {
    "web.yaml": {"deployment.apps/web": "/apis/apps/v1/namespaces/{ns}/deployments/web",
                 "service/web": "/api/v1/namespaces/{ns}/services/web",
                 "service/web-internal": "/api/v1/namespaces/{ns}/services/web-internal"},
    "pod.yaml": {"pod/hello": "/api/v1/namespaces/{ns}/pods/hello"},
    "daemonset.yaml": {"daemonset.apps/node-agent": "/apis/apps/v1/namespaces/{ns}/daemonsets/node-agent"},
    "statefulset.yaml": {"service/db": "/api/v1/namespaces/{ns}/services/db",
                         "statefulset.apps/db": "/apis/apps/v1/namespaces/{ns}/statefulsets/db"},
    "configmap.yaml": {"configmap/app-config": "/api/v1/namespaces/{ns}/configmaps/app-config",
                       "pod/configured": "/api/v1/namespaces/{ns}/pods/configured"},
    "loadbalancer.yaml": {"service/web-lb": "/api/v1/namespaces/{ns}/services/web-lb"},
    "job-pod.yaml": {"pod/once": "/api/v1/namespaces/{ns}/pods/once"},
}


def _can_i(cluster: Cluster, identity: str, *what: str) -> str:
    kubeconfig = cluster.home / "identities" / f"{identity}.kubeconfig"
    p = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "auth", "can-i", *what], capture_output=True,
                       text=True, timeout=30)
    answer = p.stdout.split()[0] if p.stdout.split() else ""  # "no - <the reason>" when an authorizer gives one
    assert answer in ("yes", "no"), p.stderr
    return answer


def test_each_component_authenticates_as_itself_with_only_what_it_uses(cluster: Cluster) -> None:
    if not cluster.config()["tls"]:
        pytest.skip("kubectl sends no bearer token over plain HTTP")
    node = cluster.config()["node_name"]
    users = {row.split(",")[1] for row in (cluster.home / "tokens.csv").read_text().splitlines() if row}
    assert {"admin", "system:kube-scheduler", "system:kube-controller-manager", "system:kube-proxy",
            "system:kube-dns", f"system:node:{node}"} <= users
    # every process of the cluster holds its own identity's kubeconfig, none the admin's
    argv = {c: cluster.state(c).get("pid") for c in ("kubelet", "control-plane")}
    for component, pid in argv.items():
        cmdline = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        assert str(cluster.kubeconfig) not in cmdline, component
    assert _can_i(cluster, "kube-scheduler", "create", "pods", "--subresource=binding", "-n", "default") == "yes"
    assert _can_i(cluster, "kube-scheduler", "get", "secrets", "-A") == "no"
    assert _can_i(cluster, "kube-proxy", "watch", "endpointslices.discovery.k8s.io", "-A") == "yes"
    assert _can_i(cluster, "kube-proxy", "create", "pods", "-n", "default") == "no"
    assert _can_i(cluster, "kube-proxy", "update", "services", "--subresource=status", "-n", "default") == "yes"
    assert _can_i(cluster, f"node-{node}", "update", "services", "--subresource=status", "-n", "default") == "no"
    assert _can_i(cluster, "kube-dns", "list", "services", "-A") == "yes"
    assert _can_i(cluster, "kube-dns", "list", "secrets", "-A") == "no"
    assert _can_i(cluster, f"node-{node}", "list", "secrets", "-A") == "no"  # the Node authorizer: bound pods' only
    assert _can_i(cluster, "kube-controller-manager", "create", "replicasets.apps", "-n", "default") == "yes"
    assert _can_i(cluster, "kube-controller-manager", "create", "clusterrolebindings.rbac.authorization.k8s.io") \
        == "no"


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_OBJECTS)


@pytest.mark.parametrize("example", sorted(EXAMPLE_OBJECTS))
def test_example_is_accepted(cluster: Cluster, example: str) -> None:
    ns = make_namespace(cluster)
    applied = run("--kubeconfig", str(cluster.kubeconfig), "apply", "-n", ns, "-f", str(EXAMPLES / example))
    objects = EXAMPLE_OBJECTS[example]
    assert sorted(line.split()[0] for line in applied.stdout.splitlines()) == sorted(objects), applied.stdout
    for path in objects.values():
        code, body = cluster.api(path.format(ns=ns))
        assert code == 200, body
    if example == "web.yaml":
        _, web = cluster.api(f"/api/v1/namespaces/{ns}/services/web")
        assert web["spec"]["type"] == "NodePort" and web["spec"]["ports"][0]["nodePort"] == 30080
    if example == "loadbalancer.yaml":  # the proxy, pkube's ServiceLB, gives it the node's address
        def ingress() -> object:
            status = cluster.api(f"/api/v1/namespaces/{ns}/services/web-lb")[1].get("status") or {}
            return (status.get("loadBalancer") or {}).get("ingress")
        wait_for_sync(lambda: ingress() == [{"ip": cluster.config()["node_ip"]}], timeout=20,
                      message="the node's address as web-lb's load balancer ingress")


@pytest.mark.parametrize("name,text,message", [
    ("malformed", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n", "error parsing"),
    ("unknown-kind", "apiVersion: v1\nkind: Gizmo\nmetadata: {name: g}\n", "Gizmo"),
    ("invalid-field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  replicas: -1\n"
                      "  selector: {matchLabels: {app: bad}}\n  template:\n    metadata: {labels: {app: bad}}\n"
                      "    spec: {containers: [{name: c, image: pkube.local/busybox:latest}]}\n", "spec.replicas"),
    ("missing-image", "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {containers: [{name: c}]}\n",
     "spec.containers[0].image"),
    ("selector-mismatch", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n"
                          "  selector: {matchLabels: {app: one}}\n  template:\n    metadata: {labels: {app: two}}\n"
                          "    spec: {containers: [{name: c, image: pkube.local/busybox:latest}]}\n",
     "spec.template.metadata.labels"),
])
def test_bad_input_is_refused_and_changes_nothing(cluster: Cluster, tmp_path: Path, name: str, text: str,
                                                  message: str) -> None:
    ns = make_namespace(cluster)
    f = tmp_path / f"{name}.yaml"
    f.write_text(text)
    p = run("--kubeconfig", str(cluster.kubeconfig), "apply", "-n", ns, "-f", str(f), check=False)
    assert p.returncode != 0 and message in p.stderr and no_traceback(p), p.stderr
    assert cluster.names(f"/apis/apps/v1/namespaces/{ns}/deployments") == set()
    assert cluster.names(f"/api/v1/namespaces/{ns}/pods") == set()
    # only what Kubernetes itself puts in every namespace may be there
    assert cluster.names(f"/api/v1/namespaces/{ns}/configmaps") - {"kube-root-ca.crt"} == set()


def test_cluster_command_errors_are_one_line(cluster: Cluster, tmp_path: Path) -> None:
    missing = run("cluster", "status", "--home", str(tmp_path / "nothing"), check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no pkube cluster at") and no_traceback(missing)
    # a machine without the prerequisites: told what is missing and how to get it, nothing created
    bare = run("cluster", "up", "--home", str(tmp_path / "new"), check=False, env={**os.environ, "PATH": "/nonexistent"})
    assert bare.returncode == 1 and "`etcd` not found" in bare.stderr and "install-deps" in bare.stderr
    assert not (tmp_path / "new").exists()
    taken = run("cluster", "up", "--home", str(tmp_path / "other"), "--api-port",
                cluster.api_url().rsplit(":", 1)[1], check=False)
    assert taken.returncode == 1 and "already in use" in taken.stderr and no_traceback(taken)
    assert not (tmp_path / "other").exists()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    for argv in (("status",), ("up",), ("down",)):
        p = run("cluster", *argv, "--home", str(damaged), check=False)
        assert p.returncode == 1 and "config.json is damaged" in p.stderr and no_traceback(p), p.stderr
    purge = run("cluster", "down", "--purge", "--home", str(damaged), check=False)
    assert purge.returncode == 0 and not damaged.exists() and purge.stderr == ""
    bad_wait = run("cluster", "up", "--home", str(tmp_path / "w"), "--wait-timeout", "-5", check=False)
    assert bad_wait.returncode == 2 and "--wait-timeout" in bad_wait.stderr and no_traceback(bad_wait)


def test_logs_show_each_component_and_the_supervisor(cluster: Cluster) -> None:
    etcd = run("cluster", "logs", "etcd", "--home", str(cluster.home))
    assert "pkube supervisor: starting etcd" in etcd.stdout
    last = run("cluster", "logs", "supervisor", "--tail", "3", "--home", str(cluster.home))
    assert 0 < len(last.stdout.splitlines()) <= 3
    assert "etcd ready after" in run("cluster", "logs", "supervisor", "--home", str(cluster.home)).stdout


def test_logs_of_a_member_show_only_its_lines(cluster: Cluster) -> None:
    if not (BY_NAME["scheduler"].available() and BY_NAME["controller-manager"].available()):
        pytest.skip("needs two members in the control-plane process")
    whole = run("cluster", "logs", "control-plane", "--home", str(cluster.home)).stdout
    assert " [scheduler] " in whole and " [controller-manager] " in whole
    mine = run("cluster", "logs", "scheduler", "--home", str(cluster.home)).stdout
    records = [line for line in mine.splitlines() if line[:4].isdigit()]
    assert records and all(" [scheduler] " in line for line in records), mine


def test_logs_follow_until_interrupted(cluster: Cluster, tmp_path: Path) -> None:
    if not GROUP.available():
        pytest.skip("kills the control-plane process to make the supervisor log something")
    out = tmp_path / "follow.txt"
    with open(out, "wb") as f:
        follower = subprocess.Popen([sys.executable, "-m", "pkctl.main", "cluster", "logs", "supervisor", "-f",
                                     "--home", str(cluster.home)], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for_sync(lambda: b"etcd ready after" in out.read_bytes(), timeout=15, message="existing lines")
        # a new line in the log (the supervisor logs every restart) shows up while following
        rec = cluster.record("control-plane")
        assert rec is not None
        os.kill(rec.pid, signal.SIGKILL)
        wait_for_sync(lambda: b"control-plane exited with -9" in out.read_bytes(), timeout=15,
                      message="the restart logged while following")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 130
        assert b"Traceback" not in out.read_bytes()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    wait_for_sync(lambda: cluster.state("control-plane")["state"] == "Running", timeout=30,
                  message="control-plane back")


def test_a_second_home_is_a_separate_cluster(cluster: Cluster, tmp_path: Path) -> None:
    other = Cluster(tmp_path / "second", tmp_path / "second" / "kubeconfig", "")
    user_home = tmp_path / "user"  # stands in for ~ so the test's own ~/.kube/config is never touched
    env = {**os.environ, "HOME": str(user_home)}
    try:
        run("cluster", "up", "--home", str(other.home), "--merge-kubeconfig", "--wait-timeout", "60", env=env)
        ports = [c.config()[k] for c in (cluster, other) for k in ("etcd_client_port", "etcd_peer_port", "api_port")]
        assert len(set(ports)) == 6
        ns = make_namespace(other)
        assert ns in other.names("/api/v1/namespaces") and ns not in cluster.names("/api/v1/namespaces")
        assert run("cluster", "status", "--home", str(cluster.home)).returncode == 0
        # the merged context reaches the second cluster: no --kubeconfig, no $KUBECONFIG, just ~/.kube/config
        bare = {k: v for k, v in env.items() if k != "KUBECONFIG"} | {"PKUBE_HOME": str(tmp_path / "no-home")}
        via_user_config = run("get", "namespaces", env=bare)
        assert ns in via_user_config.stdout.split()
    finally:
        other_cfg = other.config()
        run("cluster", "down", "--purge", "--home", str(other.home), check=False, env=env)
    assert not other.home.exists()
    assert other_cfg["proxy_table"] != cluster.config()["proxy_table"]
    assert other_cfg["service_cidr"] != cluster.config()["service_cidr"]
    assert yaml.safe_load((user_home / ".kube" / "config").read_text())["contexts"] == []


def test_up_again_is_a_no_op(cluster: Cluster) -> None:
    before = recorded_processes(cluster)
    again = run("cluster", "up", "--home", str(cluster.home))
    assert "already running" in again.stdout
    assert recorded_processes(cluster) == before and all(r.alive() for r in before)


def test_killed_component_is_restarted(cluster: Cluster) -> None:
    old = cluster.record("apiserver")
    assert old is not None
    restarts = cluster.state("apiserver")["restarts"]
    os.kill(old.pid, signal.SIGKILL)
    wait_for_sync(lambda: cluster.state("apiserver")["state"] == "Running"
                  and cluster.state("apiserver")["pid"] != old.pid, timeout=30, message="apiserver restarted")
    assert cluster.state("apiserver")["restarts"] == restarts + 1
    st = run("cluster", "status", "--home", str(cluster.home))
    row = next(line.split() for line in st.stdout.splitlines() if line.startswith("apiserver "))
    assert row[1:3] == ["Running", str(cluster.state("apiserver")["pid"])] and row[5] == str(restarts + 1)
    assert cluster.api("/api/v1/namespaces")[0] == 200


def test_down_then_up_keeps_objects_and_leaves_no_process(cluster: Cluster) -> None:
    ns = make_namespace(cluster)
    code, made = cluster.api(f"/api/v1/namespaces/{ns}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"k": "v"}})
    assert code == 201, made
    before = recorded_processes(cluster)
    assert len(before) >= 3  # supervisor, etcd, apiserver at least

    down = run("cluster", "down", "--home", str(cluster.home))
    assert "stopped" in down.stdout
    assert [r.pid for r in before if r.alive()] == []
    assert node_state_left(cluster) == []
    st = run("cluster", "status", "--home", str(cluster.home), check=False)
    assert st.returncode != 0 and "supervisor not running" in st.stdout
    with pytest.raises(urllib.error.URLError):  # really unreachable
        cluster.api("/api/v1/namespaces")

    up = run("cluster", "up", "--home", str(cluster.home), "--wait-timeout", "60")
    assert "✓ apiserver ready" in up.stdout
    code, got = cluster.api(f"/api/v1/namespaces/{ns}/configmaps/kept")
    assert code == 200 and got["data"] == {"k": "v"}


def test_a_killed_supervisor_takes_its_components_along(cluster: Cluster) -> None:
    components = [r for r in recorded_processes(cluster) if r != cluster.record("supervisor")]
    sup = cluster.record("supervisor")
    assert sup is not None and components
    os.kill(sup.pid, signal.SIGKILL)
    # setpriv --pdeathsig: nothing keeps running unsupervised
    wait_for_sync(lambda: not any(r.alive() for r in components), timeout=45, message="components stopped")
    st = run("cluster", "status", "--home", str(cluster.home), check=False)
    assert st.returncode == 1 and "supervisor not running" in st.stdout
    up = run("cluster", "up", "--home", str(cluster.home), "--wait-timeout", "60")
    assert "✓ apiserver ready" in up.stdout and "already running" not in up.stdout
    assert cluster.api("/api/v1/namespaces")[0] == 200
