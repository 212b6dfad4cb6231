"""End to end: `pkctl cluster up --compact`, k3s' layout: etcd, and one process hosting the apiserver, the kubelet
and the control-plane members. The cluster must work as the default one does (the web example served through a
NodePort, `kubectl logs` through the kubelet API), with two fewer processes; `--no-compact` goes back.

Its own cluster (the module-scoped fixture); the tests run in file order, the last one restarts it.
"""
from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from pkctl.cluster.components import BY_NAME
from tests.e2e.helpers import EXAMPLES, Cluster, kubectl, local_cluster, make_namespace, no_traceback, run
from tests.util import wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler",
                                                                  "kubelet", "proxy", "dns")),
                       reason="needs every component of the local cluster"),
]


@pytest.fixture(scope="module")
def compact() -> Iterator[Cluster]:
    with local_cluster("--compact") as c:
        yield c


def status_rows(cluster: Cluster) -> dict[str, list[str]]:
    st = run("cluster", "status", "--home", str(cluster.home))
    table = st.stdout.split("COMPONENT", 1)[1].split("\n\n", 1)[0]
    return {row[0]: row for row in map(str.split, table.splitlines()[1:]) if row}


def test_up_starts_etcd_and_one_process_hosting_the_rest(compact: Cluster) -> None:
    out = compact.up_output
    assert "compact (one process besides etcd)" in out, out
    assert "✓ etcd ready" in out
    hosted = out.split("✓ control-plane ready", 1)[1].splitlines()[0]
    for name in ("apiserver", "kubelet", "controller-manager", "scheduler", "proxy", "dns"):
        assert name in hosted, out
    assert "✓ apiserver ready" not in out and "✓ kubelet ready" not in out, out  # no process of their own
    rows = status_rows(compact)
    group = compact.state("control-plane")["pid"]
    assert rows["control-plane"][1:3] == ["Running", str(group)], rows
    for member in ("apiserver", "kubelet", "scheduler"):
        assert rows[member][1:4] == ["Running", str(group), "(shared)"], rows
    cmdline = Path(f"/proc/{group}/cmdline").read_text().split("\0")
    assert "apiserver" in cmdline and "kubelet" in cmdline
    assert not (compact.home / "run" / "apiserver.json").exists()
    assert not (compact.home / "run" / "kubelet.json").exists()


def test_the_web_example_runs_and_answers_on_its_node_port(compact: Cluster, tmp_path: Path) -> None:
    ns = make_namespace(compact)
    docs = list(yaml.safe_load_all((EXAMPLES / "web.yaml").read_text()))
    for d in docs:  # node ports are host-wide: let the apiserver pick a free one
        for port in d["spec"].get("ports", []):
            port.pop("nodePort", None)
    (tmp_path / "web.yaml").write_text(yaml.safe_dump_all(docs))
    run("--kubeconfig", str(compact.kubeconfig), "apply", "-n", ns, "-f", str(tmp_path / "web.yaml"))
    node_port = compact.api(f"/api/v1/namespaces/{ns}/services/web")[1]["spec"]["ports"][0]["nodePort"]

    def ready() -> bool:
        dep = compact.api(f"/apis/apps/v1/namespaces/{ns}/deployments/web")[1]
        return dep.get("status", {}).get("readyReplicas") == dep["spec"]["replicas"]
    wait_for_sync(ready, timeout=90, interval=0.2, message="the web Deployment Ready")

    def page() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node_port}/", timeout=3) as r:
                return str(r.read().decode())
        except OSError:
            return None  # the proxy programs the Service once its endpoints are ready
    assert wait_for_sync(page, timeout=30, interval=0.2, message="the NodePort answering").startswith("hello from ")
    pod = compact.api(f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb")[1]["items"][0]["metadata"]["name"]
    if compact.config()["tls"]:  # kubectl sends its token only over TLS
        logs = kubectl(compact, "logs", "-n", ns, pod)  # apiserver -> kubelet API, both in the one process
        assert logs.returncode == 0, logs.stderr


def test_compact_refuses_several_control_planes(tmp_path: Path) -> None:
    home = tmp_path / "ha"
    p = run("cluster", "up", "--home", str(home), "--control-planes", "3", "--compact", check=False)
    assert p.returncode != 0 and no_traceback(p), p.stderr
    assert "--compact runs a cluster with one control plane" in p.stderr, p.stderr
    assert not (home / "run" / "supervisor.json").exists()


def test_no_compact_goes_back_to_a_process_each(compact: Cluster) -> None:
    again = run("cluster", "up", "--home", str(compact.home), "--no-compact")
    assert "the layout changes at the next start" in again.stdout, again.stdout
    run("cluster", "down", "--home", str(compact.home))
    up = run("cluster", "up", "--home", str(compact.home), "--no-compact", "--wait-timeout", "60")
    assert "✓ apiserver ready" in up.stdout and "✓ kubelet ready" in up.stdout, up.stdout
    pids = {c: compact.state(c)["pid"] for c in ("apiserver", "kubelet", "control-plane")}
    assert len(set(pids.values())) == 3, pids
    assert compact.config()["compact"] is False
