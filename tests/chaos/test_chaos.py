"""Chaos on a real local cluster (`pkctl cluster up`): SIGKILL of each component during rolling updates (the
supervisor too: its components stop with it and `cluster up` brings it all back), a kubelet restart under running
pods, etcd paused, and a power cut. An independent watcher (tests/chaos/harness.py)
checks the invariants on every event; a client loop counts failed requests to the Service per kill type.

CI runs a small version (one round, 6 replicas); the issue's full run:
    PKUBE_CHAOS_ROUNDS=10 PKUBE_CHAOS_REPLICAS=20 .venv/bin/python -m pytest tests/chaos -s
PKUBE_CHAOS_SEED replays the random kill moments of a run (the seed is printed). bench/chaos.py runs the same
rounds and prints the figures as JSON.

One cluster for the module; the tests run in file order on one namespace (the power cut comes last).
"""
from __future__ import annotations

import copy
import signal
import time
from typing import Any, Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from tests.chaos.harness import KILLABLE, Api, back_up, env_int, kill_component, seeded_random
from tests.chaos.scenario import (Scene, configmap, converged, create, invariants_broken, kill_during_rollout,
                                  every_pod_running_once, open_scene, pods, power_cut, ready, running_containers)
from tests.e2e.helpers import Cluster, run
from tests.util import unique, wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler",
                                                                  "kubelet", "proxy", "dns")),
                       reason="needs every component of the local cluster"),
]

ROUNDS = env_int("PKUBE_CHAOS_ROUNDS", 1)
REPLICAS = env_int("PKUBE_CHAOS_REPLICAS", 6)


@pytest.fixture(scope="module")
def scene(cluster: Cluster) -> Iterator[Scene]:
    with open_scene(cluster, REPLICAS) as s:
        yield s


def test_rolling_updates_survive_sigkill_of_each_component(cluster: Cluster, scene: Scene) -> None:
    """Each round: start a rolling update, SIGKILL one component at a random moment, wait for the supervisor
    to bring it back (for `cluster up` to bring a killed supervisor back) and the rollout to finish; a write made
    meanwhile (retried through the outage) is kept."""
    seed, rng = seeded_random()
    for r in range(ROUNDS):
        for comp in KILLABLE:
            kill_during_rollout(cluster, scene, comp, f"{r}-{comp}", rng)
            assert scene.watcher.violations == [], f"after the {comp} kill (seed {seed})"
    assert invariants_broken(cluster, scene) == [], f"seed {seed}"
    # A kubelet restart must not touch the data path (running pods, their readiness). Failures during the other
    # kills are counted, not asserted (bench/chaos.py reports them): a pod deleted by the rollout just before the
    # apiserver/etcd/control-plane went down stays in the proxy's rules until the API is back, and its 2 s
    # preStop may be over by then (Kubernetes has the same race; a longer preStop covers it).
    print("failed requests per kill type:", dict(scene.client.failed), scene.client.errors[:10])
    assert scene.client.failed["kubelet"] == 0, (seed, scene.client.errors[:20])


def container_view(api: Api, ns: str) -> dict[str, tuple[str, int]]:
    """pod name -> (containerID, restartCount) of its one container."""
    out = {}
    for p in pods(api, ns):
        (c,) = p["status"]["containerStatuses"]
        out[p["metadata"]["name"]] = (c.get("containerID", ""), c["restartCount"])
    return out


ONCE: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "once"}, "spec": {
    "terminationGracePeriodSeconds": 1,
    "volumes": [{"name": "data", "emptyDir": {}}],
    "containers": [{"name": "main", "image": "pkube.local/busybox:latest", "volumeMounts": [
        {"name": "data", "mountPath": "/data"}],
        # fails on its first run only: restartCount 1 from then on
        "command": ["sh", "-c", "test -f /data/ran || { touch /data/ran; exit 1; }; "
                    "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}


def once_restarted(api: Api, ns: str) -> bool:
    got = api.call("GET", f"/api/v1/namespaces/{ns}/pods/once")
    return got is not None and got[0] == 200 and ready(got[1]) and \
        got[1]["status"]["containerStatuses"][0]["restartCount"] == 1


def test_kubelet_restart_keeps_running_pods(cluster: Cluster, scene: Scene) -> None:
    """SIGKILL the kubelet under running pods: no container restarted or duplicated, restartCount kept."""
    s = scene
    create(s.api, s.ns, ONCE)
    wait_for_sync(lambda: once_restarted(s.api, s.ns), timeout=60, interval=0.3, message="once restarted once")
    wait_for_sync(lambda: converged(s.api, s.ns), timeout=60, interval=0.3, message="workloads ready")
    before, running = container_view(s.api, s.ns), running_containers(cluster)
    s.client.label = "kubelet-restart"
    killed = kill_component(cluster, "kubelet")
    back_up(cluster, "kubelet", killed)
    # a pod created after the restart runs once the kubelet has worked through the pods it found at start
    marker = copy.deepcopy(ONCE)
    marker["metadata"]["name"] = "marker"
    marker["spec"]["containers"][0]["command"] = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    marker["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    create(s.api, s.ns, marker)
    wait_for_sync(lambda: ready(s.api.must("GET", f"/api/v1/namespaces/{s.ns}/pods/marker")), timeout=60,
                  interval=0.3, message="a pod created after the restart Ready")
    after = container_view(s.api, s.ns)
    after.pop("marker")
    assert after == before
    marker_cid = s.api.must("GET", f"/api/v1/namespaces/{s.ns}/pods/marker")["status"]["containerStatuses"][0][
        "containerID"].partition("://")[2]
    assert running_containers(cluster) == running | {marker_cid}  # the same containers, none doubled
    s.client.label = "rollout"
    assert s.client.failed["kubelet-restart"] == 0, s.client.errors[-20:]
    s.api.must("DELETE", f"/api/v1/namespaces/{s.ns}/pods/marker")


def test_etcd_paused_gives_clear_errors_then_recovers(cluster: Cluster, scene: Scene) -> None:
    """etcd stopped (SIGSTOP) for 10 s: a write ends in a 5xx Status with a reason within its timeout, not a
    hang; after SIGCONT writes succeed and nothing is lost."""
    s = scene
    etcd = cluster.record("etcd")
    assert etcd is not None
    s.client.label = "etcd-paused"
    assert etcd.signal(signal.SIGSTOP)
    paused = time.monotonic()
    try:
        t0 = time.monotonic()
        got = s.api.call("POST", f"/api/v1/namespaces/{s.ns}/configmaps", configmap(unique("cm")), timeout=30)
        took = time.monotonic() - t0
        while time.monotonic() - paused < 10:
            time.sleep(0.2)  # the pause itself is the scenario: etcd stays stopped for 10 s
    finally:
        etcd.signal(signal.SIGCONT)
    print(f"write while etcd paused: {got} after {took:.1f}s")
    assert got is not None, "no answer (connection dropped or the client timed out)"
    code, status = got
    assert code in (503, 504), got
    assert status.get("kind") == "Status" and status.get("reason") and status.get("message"), got
    name = unique("cm")
    create(s.api, s.ns, configmap(name))
    s.configmaps.add(name)
    wait_for_sync(lambda: converged(s.api, s.ns), timeout=60, interval=0.3, message="workloads ready")
    s.client.label = "rollout"
    assert invariants_broken(cluster, s) == []
    assert s.client.failed["etcd-paused"] == 0, s.client.errors[-20:]  # the data path does not need etcd


def restart_counts(api: Api, ns: str) -> dict[str, int]:
    return {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"] for p in pods(api, ns)}


def test_power_cut_brings_everything_back(cluster: Cluster, scene: Scene) -> None:
    """SIGKILL every process of the cluster (components, supervisor, conmons, the pods' processes) at once, then
    `cluster up` again: every object back, every pod running exactly once, each container counted as restarted
    once more; then `cluster down` (the node's runtime state wiped, pods kept in etcd) and `up`: pods come back
    in new sandboxes and restartCount goes on from where it was instead of starting over at 0."""
    s = scene
    s.client.close()
    s.watcher.close()
    before = restart_counts(s.api, s.ns)
    power_cut(cluster)
    run("cluster", "up", "--home", str(cluster.home), "--wait-timeout", "90", timeout=180)
    s.api = Api(cluster)
    wait_for_sync(lambda: converged(s.api, s.ns), timeout=120, interval=0.5, message="workloads back after power cut")
    listed = {c["metadata"]["name"] for c in s.api.must("GET", f"/api/v1/namespaces/{s.ns}/configmaps")["items"]}
    assert s.configmaps <= listed
    wait_for_sync(lambda: every_pod_running_once(cluster, s.api, s.ns), timeout=60, interval=0.5,
                  message="every pod running once")
    after = restart_counts(s.api, s.ns)
    assert after == {n: c + 1 for n, c in before.items()}  # every container died with the power, once

    run("cluster", "down", "--home", str(cluster.home), timeout=120)
    assert cluster.runc_containers() == {}
    run("cluster", "up", "--home", str(cluster.home), "--wait-timeout", "90", timeout=180)
    wait_for_sync(lambda: converged(s.api, s.ns), timeout=120, interval=0.5, message="workloads back after down/up")
    wait_for_sync(lambda: every_pod_running_once(cluster, s.api, s.ns), timeout=60, interval=0.5,
                  message="every pod running once")
    assert restart_counts(s.api, s.ns) == {n: c + 1 for n, c in after.items()}
