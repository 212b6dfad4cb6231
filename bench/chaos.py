"""Chaos benchmark: rounds of SIGKILLs during rolling updates on a local cluster (`pkctl cluster up`).

Each round SIGKILLs every killable component in turn (etcd, apiserver, the control-plane group process that
hosts controller-manager, scheduler, proxy and dns, and the kubelet), each at a random moment of a rolling update
of a Deployment behind a Service and of a StatefulSet, while the invariant watcher and the client loop of
tests/chaos run. Prints one JSON document: rounds run, whether every invariant held (and what broke), the worst
convergence time per kill type (kill -> supervisor restart -> rollout finished), failed client requests per
kill type, and the worst time from a serving pod's deletion to its address leaving the Service's ready endpoints
(`worst_endpoint_lag_s`, per kill type: past the pod's 2 s preStop drain, requests sent there fail). Nothing
passes or fails on time.

With `--control-planes 3` (and `--nodes N`: pods spread over N nodes) the cluster is highly available and the
kill types are roles (tests/chaos/harness.py HA_KILLABLE): a member's apiserver, the etcd leader, the control-plane
process leading controller-manager and the one leading scheduler, found at the moment of each kill, and (with
--nodes 2 or more) an extra node's kubelet. Also reported
per kill type: the worst time from the SIGKILL to the first write the API took (a ConfigMap create retried every
50 ms through the balancer), and each kill (type, process, failover, convergence).

The components' logs are copied out of the cluster's home (which goes with the benchmark) when a request failed,
an invariant broke or a rollout stalled, or always with --keep-logs: `logs_kept_in` names the directory.

    .venv/bin/python -m bench.chaos [--rounds 10] [--replicas 20] [--seed N] [--control-planes 3] [--nodes 2]
                                    [--keep-logs]
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import parse_flags, report  # noqa: E402
from tests.chaos.harness import kill_types  # noqa: E402
from tests.chaos.scenario import invariants_broken, kill_during_rollout, open_scene  # noqa: E402
from tests.e2e.helpers import local_cluster  # noqa: E402


def main() -> int:
    flags = parse_flags(__doc__, rounds=10, replicas=20, seed=-1, control_planes=1, nodes=1, keep_logs=False)
    seed = flags.seed if flags.seed >= 0 else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    layout = [*(["--control-planes", str(flags.control_planes)] if flags.control_planes > 1 else []),
              *(["--nodes", str(flags.nodes)] if flags.nodes > 1 else [])]
    result: dict[str, Any] = {"seed": seed, "replicas": flags.replicas, "control_planes": flags.control_planes,
                              "nodes": flags.nodes}
    with local_cluster(*layout) as cluster:
        kills = kill_types(cluster)
        result["kill_types"] = list(kills)
        # the scene prints its summary line for pytest's -s output; stdout is this benchmark's JSON only
        with contextlib.redirect_stdout(sys.stderr), open_scene(cluster, flags.replicas) as scene:
            per_kill: dict[str, list[float]] = {k: [] for k in kills}
            rounds = 0
            try:
                for r in range(flags.rounds):
                    for kind in kills:
                        per_kill[kind].append(kill_during_rollout(cluster, scene, kind, f"{r}-{kind}", rng))
                    rounds += 1
            except AssertionError as e:  # a rollout that never finished: reported, not raised
                result["stopped_by"] = str(e)[:4000]
                print(f"stopped: {e}", file=sys.stderr, flush=True)
            try:
                broken = invariants_broken(cluster, scene)
            except AssertionError as e:  # the API never answered again: reported, not raised
                broken = [f"the final check could not run: {str(e)[:500]}"]
            summary = scene.summary()
            if flags.keep_logs or broken or "stopped_by" in result or scene.client.errors:
                # the cluster goes with the benchmark: keep its components' logs for the post-mortem
                kept = tempfile.mkdtemp(prefix="pkbench-chaos-logs-")
                shutil.copytree(cluster.home / "logs", kept, dirs_exist_ok=True)
                result["logs_kept_in"] = kept
        result.update(rounds_run=rounds, invariants_held=not broken and "stopped_by" not in result,
                      broken=broken, worst_convergence_s=summary["worst_convergence_s"],
                      worst_failover_to_first_write_s=summary["worst_failover_s"],
                      convergence_s=per_kill, kills=scene.killed,
                      failed_requests_per_kill_type={k: summary["requests_failed"].get(k, 0)
                                                     for k in (*kills, "rollout")},
                      requests_ok=summary["requests_ok"], failed_requests=scene.client.errors,
                      failed_requests_by_error=summary["error_kinds"],
                      worst_endpoint_lag_s=summary["worst_endpoint_lag_s"],
                      max_live_web_pods=summary["max_live_web_pods"], surge_limit=summary["surge_limit"],
                      watch_events=summary["watch_events"], watcher_relists=summary["relists"])
    return report(result)


if __name__ == "__main__":
    sys.exit(main())
