"""From a manifest to Running pods: `pkctl apply -f` on a local cluster next to `podman kube play` of the very same
file on this machine, in the same run: one pod, then --pods pods (issue 20's rows "apply of one pod → Running" and
"30 pods → all Running").

    .venv/bin/python bench/podstart.py [--rounds 5] [--pods 30] [--install] [--no-podman] [--no-pycache] [--compact]

A fresh local cluster (`pkctl cluster up`) builds pkube's busybox image; `pkctl image save` and `podman load` give
podman the same image, and both sides run it with imagePullPolicy IfNotPresent, so neither pulls. Each pod is one
busybox container that sleeps (and exits at once on SIGTERM, so that neither side's stop waits for a grace period).

- pkube: a watch on the namespace's pods is open before `pkctl apply -f FILE` starts (a new process, as a user runs
  it, with its bytecode cache on as an installed pkctl has it: see pkctl_env; --no-pycache compiles every run); the
  time is from the start of `apply` to the watch event that makes every pod of the file Running. The pods
  are then deleted (`pkctl delete -f FILE`, which waits until they are gone), untimed. The same watch splits the
  time into phases (`pkube_phases`): until the first pod's create, until every pod is bound, until every pod Running.
  `pkube_cpu_s`: the CPU seconds each of the cluster's processes used in that time (its own, not its children's:
  runc runs under conmon).
- podman: `podman kube play FILE` returns once every container has started; its wall time is the figure, and
  `podman pod ps` must show every pod Running. `podman kube down FILE` removes them, untimed.

Rounds alternate the sides (pkube first). Prints one JSON document: min/median/max (and every round) per side and
size, and podman's median over pkube's. Figures only: nothing here passes or fails on time. Needs root.
podman comes from Debian (`apt-get install -y podman`); `--install` runs that when it is missing.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cluster import processes  # noqa: E402
from bench.common import cpu_times  # noqa: E402
from bench.compose import IMAGE, host_state, podman_conf, remove_new_tables, summary  # noqa: E402
from pkctl.cluster.home import Home  # noqa: E402
from tests.chaos.harness import Api  # noqa: E402
from tests.e2e.helpers import local_cluster, make_namespace, run  # noqa: E402
from tests.util import unique  # noqa: E402


def pods_file(path: Path, count: int, prefix: str) -> Path:
    docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{prefix}-{i}"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}
            for i in range(count)]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


class AllRunning(threading.Thread):
    """A watch on a namespace's pods, opened by the constructor; `at` is when `count` of them were Running,
    `created` when the first of them was created and `bound` when `count` of them were bound to a node."""

    def __init__(self, api: Api, namespace: str, count: int):
        super().__init__(daemon=True)
        self.count, self.at, self.created, self.bound = count, 0.0, 0.0, 0.0
        self.conn = api.connect(timeout=300)
        self.conn.request("GET", f"/api/v1/namespaces/{namespace}/pods?watch=1",
                          headers={"Authorization": f"Bearer {api.token}"})
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise RuntimeError(f"watch refused: {self.response.status} {self.response.read()[:200]!r}")

    def run(self) -> None:
        running: set[str] = set()
        bound: set[str] = set()
        try:
            while line := self.response.readline():
                event = json.loads(line)
                pod = event["object"]
                name = pod["metadata"]["name"]
                self.created = self.created or time.monotonic()
                if pod.get("spec", {}).get("nodeName"):
                    bound.add(name)
                    if len(bound) >= self.count and not self.bound:
                        self.bound = time.monotonic()
                if event["type"] != "DELETED" and pod.get("status", {}).get("phase") == "Running":
                    running.add(name)
                else:
                    running.discard(name)
                if len(running) >= self.count:
                    self.at = time.monotonic()
                    return
        except (OSError, http.client.HTTPException, ValueError):
            return
        finally:
            self.conn.close()


# Where a pkube round's time goes: from the start of `apply` to the watch event of the first pod's create (pkctl's
# process start, imports and requests), from there to every pod bound (the scheduler), and from there to every pod
# Running (the kubelet: sandbox, containers, status).
PHASES = ("apply_to_created", "created_to_bound", "bound_to_running")


def cluster_cpu(home: Home) -> dict[str, float]:
    """CPU seconds so far of each of the cluster's processes (its own)."""
    return {name: cpu_times(rec.pid)[0] for name, rec in processes(home).items()}


def pkube_round(api: Api, home: Home, namespace: str, manifest: Path, count: int,
                env: dict[str, str]) -> tuple[float, dict[str, float], dict[str, float]]:
    """The round's time, its phases, and the CPU seconds each cluster process used until every pod was Running."""
    kubeconfig = str(home.kubeconfig)
    watch = AllRunning(api, namespace, count)
    watch.start()
    cpu = cluster_cpu(home)
    began = time.monotonic()
    run("--kubeconfig", kubeconfig, "-n", namespace, "apply", "-f", str(manifest), env=env)
    watch.join(120)
    if not watch.at:
        raise RuntimeError(f"pkube: {count} pods not Running within 120 s")
    used = {name: seconds - cpu.get(name, 0.0) for name, seconds in cluster_cpu(home).items()}
    run("--kubeconfig", kubeconfig, "-n", namespace, "delete", "-f", str(manifest), timeout=120, env=env)
    return watch.at - began, dict(zip(PHASES, (watch.created - began, watch.bound - watch.created,
                                               watch.at - watch.bound))), used


def pkctl_env(tmp: Path, pycache: bool) -> dict[str, str]:
    """pkctl runs with its bytecode cache on, as an installed pkctl has it (as in bench/cli.py), kept in the bench's
    temporary directory even where PYTHONDONTWRITEBYTECODE is set: otherwise every `apply` compiles its modules."""
    if not pycache:
        return dict(os.environ)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def podman_round(manifest: Path, count: int, prefix: str) -> float:
    began = time.monotonic()
    subprocess.run(["podman", "kube", "play", str(manifest)], check=True, capture_output=True, timeout=300)
    took = time.monotonic() - began
    states = subprocess.run(["podman", "pod", "ps", "--format", "{{.Name}} {{.Status}}"], check=True,
                            capture_output=True, text=True).stdout.split("\n")
    running = [s for s in states if s.endswith(" Running") and s.split()[0].startswith(prefix + "-")]
    subprocess.run(["podman", "kube", "down", str(manifest)], capture_output=True, timeout=300)
    if len(running) != count:
        raise RuntimeError(f"podman: {len(running)} of {count} pods Running after `kube play`: {states}")
    return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds per size, each pkube then podman (default 5)")
    p.add_argument("--pods", type=int, default=30, help="pods of the big file (default 30)")
    p.add_argument("--install", action="store_true", help="apt-get install podman if missing")
    p.add_argument("--no-podman", action="store_true", help="measure pkube only")
    p.add_argument("--no-pycache", action="store_true",
                   help="pkctl without a bytecode cache where PYTHONDONTWRITEBYTECODE is set (compiling each run)")
    p.add_argument("--compact", action="store_true",
                   help="the cluster made with `pkctl cluster up --compact` (the apiserver and the kubelet in one process)")
    args = p.parse_args(argv)
    if not args.no_podman and not shutil.which("podman"):
        if not args.install:
            print("bench.podstart: podman is not installed: run `apt-get install -y podman` (or pass --install)",
                  file=sys.stderr)
            return 1
        # apt's progress goes to stderr: stdout is the one JSON document
        subprocess.run(["apt-get", "install", "-y", "podman"], check=True, stdout=sys.stderr)
    sides = ["pkube"] if args.no_podman else ["pkube", "podman"]
    sizes = {"one_pod": 1, f"{args.pods}_pods": args.pods}
    figures: dict[str, dict[str, list[float]]] = {s: {k: [] for k in sizes} for s in sides}
    phases: dict[str, dict[str, list[float]]] = {k: {ph: [] for ph in PHASES} for k in sizes}
    cpu: dict[str, dict[str, list[float]]] = {k: {} for k in sizes}
    tmp = Path(tempfile.mkdtemp(prefix="pkb-podstart-"))
    os.environ["CONTAINERS_CONF"] = str(podman_conf(tmp / "containers.conf"))
    loaded, version = False, ""
    before, left = host_state(), {}
    try:
        with local_cluster(*(["--compact"] if args.compact else [])) as cluster:
            images = str(cluster.home / "images")
            run("image", "build-busybox", "--root", images, timeout=300)
            if "podman" in sides:
                archive = tmp / "busybox.tar"
                run("image", "save", "--root", images, "-o", str(archive), IMAGE, timeout=120)
                loaded = subprocess.run(["podman", "image", "exists", IMAGE]).returncode != 0
                subprocess.run(["podman", "load", "-i", str(archive)], check=True, capture_output=True)
                version = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip()
            api, namespace = Api(cluster), make_namespace(cluster)
            env = pkctl_env(tmp, not args.no_pycache)
            run("apply", "--help", env=env)  # untimed: fills the bytecode cache (--help imports every command)
            for size, count in sizes.items():
                prefix = unique("pkb")
                manifest = pods_file(tmp / f"{prefix}.yaml", count, prefix)
                for _ in range(args.rounds):
                    for side in sides:
                        if side == "podman":
                            figures[side][size].append(podman_round(manifest, count, prefix))
                            continue
                        took, parts, used = pkube_round(api, Home(cluster.home), namespace, manifest, count, env)
                        figures[side][size].append(took)
                        for ph, v in parts.items():
                            phases[size][ph].append(v)
                        for name, v in used.items():
                            cpu[size].setdefault(name, []).append(v)
    finally:
        if loaded:
            subprocess.run(["podman", "rmi", "-f", IMAGE], capture_output=True)
        if "podman" in sides:  # what netavark left (its iptables-nft tables), as bench/compose.py does
            after = host_state()
            left = {k: [v for v in after[k] if v not in before[k]] for k in after}
            left["nft_tables_removed_by_bench"] = remove_new_tables(left["nft_tables"], left["nft_chains"])
        shutil.rmtree(tmp, ignore_errors=True)
    result: dict[str, Any] = {"benchmark": "podstart", "rounds": args.rounds, "compact": args.compact,
                              "cpus": os.cpu_count(),
                              "pkctl_bytecode_cache": not args.no_pycache,
                              "what": "seconds from the start of `pkctl apply -f` (pkube) or `podman kube play` "
                                      "(podman) until every pod of the file is Running"}
    for side in sides:
        result[side] = {size: summary(v) for size, v in figures[side].items()}
    result["pkube_phases"] = {"what": "where pkube's time goes: " + ", ".join(PHASES) + " (see PHASES)",
                              **{size: {ph: summary(v) for ph, v in by.items()} for size, by in phases.items()}}
    result["pkube_cpu_s"] = {"what": "CPU seconds each cluster process used from `apply` until every pod Running",
                             **{size: {name: summary(v) for name, v in by.items()} for size, by in cpu.items()}}
    if "podman" in sides:
        result["podman_version"] = version
        result["podman_left_on_host"] = left
        result["ratio_pkube_over_podman"] = {
            size: round(statistics.median(figures["pkube"][size]) / statistics.median(figures["podman"][size]), 2)
            for size in sizes}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
