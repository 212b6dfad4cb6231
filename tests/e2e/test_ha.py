"""End to end: a highly available control plane (`pkctl cluster up --control-planes 3`), its failover
when an apiserver, the etcd leader or the leading controller-manager is SIGKILLed, and
`cluster backup` / `cluster restore` into a fresh home.

One 3-member cluster serves the module; the tests run in file order (each leaves the cluster
healthy again for the next). Every cluster ends with `down --purge`, which must leave nothing.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from pkctl.cluster.procs import ProcRecord
from tests.e2e.helpers import (FAILOVER, Cluster, etcd_leader, etcd_member, kubectl, lease_holder, local_cluster,
                               make_namespace, no_traceback, run)
from tests.util import unique, wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler")),
                       reason="the control plane has not landed in this build"),
]

MEMBERS = ("cp1", "cp2", "cp3")


@pytest.fixture(scope="module")
def ha() -> Iterator[Cluster]:
    with local_cluster("--control-planes", "3") as c:
        yield c


def healthy(c: Cluster) -> bool:
    status = run("cluster", "status", "--home", str(c.home), check=False)
    if status.returncode != 0:
        print(status.stdout, status.stderr)  # shown with a failure: which member was not healthy, and why
    return status.returncode == 0


def write(c: Cluster, ns: str) -> bool:
    """Create a ConfigMap through the balancer; False when the control plane cannot take it yet."""
    try:
        code, _ = c.api(f"/api/v1/namespaces/{ns}/configmaps",
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": unique("cm")}})
    except OSError:
        return False
    return code == 201


def kill(c: Cluster, component: str) -> None:
    rec = c.record(component)
    assert rec is not None and rec.alive(), component
    assert rec.signal(signal.SIGKILL)


def test_three_members_form_one_etcd_cluster_and_every_component_is_healthy(ha: Cluster) -> None:
    out = ha.up_output
    assert "with 3 control planes" in out
    for name in [f"{kind}-{m}" for kind in ("etcd", "apiserver", "control-plane") for m in MEMBERS] + ["kubelet"]:
        assert f"✓ {name} ready" in out, out
    lists = [{m["name"] for m in etcd_member(ha, member, "/v3/cluster/member/list")["members"]} for member in MEMBERS]
    assert lists == [set(MEMBERS)] * 3
    assert len({etcd_member(ha, m, "/v3/maintenance/status")["header"]["cluster_id"] for m in MEMBERS}) == 1
    # one process leads each Lease, and `cluster status` names it
    for lease in ("pkube-controller-manager", "kube-scheduler"):
        assert lease_holder(ha, lease).rsplit("_", 1)[0] in {f"control-plane-{m}" for m in MEMBERS}
    status = run("cluster", "status", "--home", str(ha.home))
    leaders = next(line for line in status.stdout.splitlines() if line.startswith("LEADERS:"))
    cm_holder = lease_holder(ha, "pkube-controller-manager").rsplit("_", 1)[0]
    assert f"controller-manager {cm_holder}" in leaders, status.stdout
    assert status.stdout.count("(standby, ") == 4, status.stdout  # two standbys for each of the two Leases


def test_clients_keep_working_when_an_apiserver_is_killed(ha: Cluster) -> None:
    ns = make_namespace(ha)
    env = {**os.environ, "KUBECONFIG": str(ha.kubeconfig)}
    kill(ha, "apiserver-cp1")
    started = time.monotonic()
    wait_for_sync(lambda: write(ha, ns), timeout=FAILOVER, interval=0.1, message="a write after the apiserver died")
    assert time.monotonic() - started < FAILOVER
    got = run("get", "configmaps", "-n", ns, env=env, check=False)
    assert got.returncode == 0 and no_traceback(got), got.stderr
    k = kubectl(ha, "get", "configmaps", "-n", ns)
    assert k.returncode == 0, k.stderr
    wait_for_sync(lambda: healthy(ha), timeout=60, interval=0.5, message="the apiserver restarted")


def test_writes_resume_and_nothing_is_lost_when_the_etcd_leader_is_killed(ha: Cluster) -> None:
    ns = make_namespace(ha)
    before = set()
    for _ in range(5):
        name = unique("keep")
        code, body = ha.api(f"/api/v1/namespaces/{ns}/configmaps",
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}})
        assert code == 201, body
        before.add(name)
    leader = etcd_leader(ha)
    kill(ha, f"etcd-{leader}")
    wait_for_sync(lambda: write(ha, ns), timeout=FAILOVER, interval=0.1, message="a write after the etcd leader died")
    assert before <= ha.names(f"/api/v1/namespaces/{ns}/configmaps")
    wait_for_sync(lambda: healthy(ha), timeout=60, interval=0.5, message="the etcd member restarted")
    others = [m for m in MEMBERS if m != leader]
    assert etcd_leader(ha) in MEMBERS
    assert {m["name"] for m in etcd_member(ha, others[0], "/v3/cluster/member/list")["members"]} == set(MEMBERS)


def test_another_controller_manager_takes_over_when_the_leader_is_killed(ha: Cluster) -> None:
    ns = make_namespace(ha)
    name = unique("web")
    code, body = ha.api(f"/apis/apps/v1/namespaces/{ns}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "pkube.local/busybox:latest",
                                                       "command": ["sleep", "3600"]}]}}}})
    assert code == 201, body
    holder = lease_holder(ha, "pkube-controller-manager")
    process = holder.rsplit("_", 1)[0]
    kill(ha, process)
    scaled = run("scale", "deployment", name, "-n", ns, "--replicas", "2",
                 env={**os.environ, "KUBECONFIG": str(ha.kubeconfig)}, check=False)
    assert scaled.returncode == 0, scaled.stderr

    def replicas() -> Any:
        code, d = ha.api(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
        return code == 200 and (d.get("status") or {}).get("replicas") == 2 and d["status"]
    wait_for_sync(replicas, timeout=60, interval=0.5, message="the deployment to reach 2 replicas")
    new = lease_holder(ha, "pkube-controller-manager")
    assert new != holder  # a new process (another member's, or the restarted one's new identity) leads
    code, _ = ha.api(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", method="DELETE")
    assert code == 200


def test_backup_restores_into_a_fresh_home(ha: Cluster, tmp_path: Path) -> None:
    ns = make_namespace(ha)
    code, body = ha.api(f"/api/v1/namespaces/{ns}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"answer": "42"}})
    assert code == 201, body
    snap = tmp_path / "snap.db"
    saved = run("cluster", "backup", str(snap), "--home", str(ha.home))
    assert "Saving a snapshot from etcd-cp" in saved.stdout and f"✓ saved {snap}" in saved.stdout
    again = run("cluster", "backup", str(snap), "--home", str(ha.home), check=False)
    assert again.returncode != 0 and "exists" in again.stderr and no_traceback(again)
    refused = run("cluster", "restore", str(snap), "--home", str(ha.home), check=False)
    assert refused.returncode != 0 and "already holds a cluster" in refused.stderr and no_traceback(refused)
    bad = tmp_path / "not-a-snapshot"
    bad.write_text("hello")
    fresh = tmp_path / "fresh"
    wrong = run("cluster", "restore", str(bad), "--home", str(fresh), check=False)
    assert wrong.returncode != 0 and "is not an etcd snapshot" in wrong.stderr and no_traceback(wrong)
    assert not (fresh / "config.json").exists()
    with local_cluster(command=("restore", str(snap))) as restored:
        assert "restoring etcd member pkube" in restored.up_output
        code, cm = restored.api(f"/api/v1/namespaces/{ns}/configmaps/kept")
        assert code == 200 and cm["data"] == {"answer": "42"}, cm


def test_control_planes_cannot_change_on_an_existing_home(ha: Cluster) -> None:
    p = run("cluster", "up", "--home", str(ha.home), "--control-planes", "1", check=False)
    assert p.returncode != 0 and no_traceback(p)
    assert "was created with --control-planes 3" in p.stderr and "without --control-planes" in p.stderr
    bad = run("cluster", "up", "--home", str(ha.home), "--control-planes", "2", check=False)
    assert bad.returncode != 0 and "1, 3 or 5" in bad.stderr and no_traceback(bad)


def test_every_member_runs_again_after_the_failovers(ha: Cluster) -> None:
    recs = [r for name in (f"{k}-{m}" for k in ("etcd", "apiserver", "control-plane") for m in MEMBERS)
            if (r := ha.record(name)) is not None]
    assert len(recs) == 9 and all(isinstance(r, ProcRecord) and r.alive() for r in recs)


def test_logs_of_each_member(ha: Cluster) -> None:
    for name in ("etcd-cp2", "apiserver-cp3", "control-plane-cp2", "scheduler"):
        p = run("cluster", "logs", name, "--home", str(ha.home), "--tail", "5", check=False)
        assert p.returncode == 0 and p.stdout, (name, p.stderr)
    bad = run("cluster", "logs", "etcd-cp9", "--home", str(ha.home), check=False)
    assert bad.returncode != 0 and "unknown component 'etcd-cp9'" in bad.stderr and "etcd-cp1" in bad.stderr
