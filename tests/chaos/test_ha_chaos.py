"""Chaos on a highly available local cluster (`pkctl cluster up --control-planes 3 --nodes 2`): during a rolling
update of a 20-replica Deployment behind a Service (and of a StatefulSet), SIGKILL in turn a member's apiserver,
the etcd leader, the control-plane process leading controller-manager, the one leading scheduler and the second
node's kubelet, each at a seeded random moment. The independent watcher (tests/chaos/harness.py) checks on every event that nothing is
deleted that the test did not delete, that a StatefulSet ordinal never lives twice and that the Deployment never
has more than replicas + maxSurge live pods; each rollout must finish, each write made during an outage must be
taken within FAILOVER of the SIGKILL and kept, and at the end every node runs each pod's container once.

    PKUBE_CHAOS_ROUNDS=3 .venv/bin/python -m pytest tests/chaos/test_ha_chaos.py -s
PKUBE_CHAOS_REPLICAS (default 20 here), PKUBE_CHAOS_SEED (printed) and PKUBE_CHAOS_HA_KILLS (comma list of
kill types, tests/chaos/harness.py HA_KILLABLE) as in test_chaos.py; bench/chaos.py --control-planes 3 --nodes 2
runs the same rounds and prints the figures.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from tests.chaos.harness import env_int, kill_types, seeded_random
from tests.chaos.scenario import invariants_broken, kill_during_rollout, open_scene, pods
from tests.e2e.helpers import FAILOVER, Cluster, local_cluster, run
from tests.util import wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler",
                                                                  "kubelet", "proxy", "dns")),
                       reason="needs every component of the local cluster"),
]

ROUNDS = env_int("PKUBE_CHAOS_ROUNDS", 1)
REPLICAS = env_int("PKUBE_CHAOS_REPLICAS", 20)


@pytest.fixture(scope="module")
def ha() -> Iterator[Cluster]:
    with local_cluster("--control-planes", "3", "--nodes", "2") as c:
        yield c


def test_rolling_updates_survive_sigkill_of_each_control_plane_leader(ha: Cluster) -> None:
    seed, rng = seeded_random()
    with open_scene(ha, REPLICAS) as s:
        nodes = {p["spec"].get("nodeName") for p in pods(s.api, s.ns)}
        assert len(nodes) == 2, f"the pods run on {nodes}, not spread over both nodes"
        for r in range(ROUNDS):
            for kind in kill_types(ha):
                kill_during_rollout(ha, s, kind, f"{r}-{kind}", rng)
                assert s.watcher.violations == [], f"after the {kind} kill (seed {seed}): {s.killed[-1]}"
        assert invariants_broken(ha, s) == [], f"seed {seed}"
        print("kills:", s.killed)
        print("failed requests per kill type:", dict(s.client.failed), s.client.errors[:10])
    slow = [k for k in s.killed if k["failover_s"] > FAILOVER]
    assert slow == [], f"writes taken more than {FAILOVER} s after the kill (seed {seed})"
    # every killed process was brought back: each member's etcd, apiserver and control-plane process healthy
    wait_for_sync(lambda: run("cluster", "status", "--home", str(ha.home), check=False).returncode == 0,
                  timeout=60, interval=0.5, message="every component healthy")
