"""CLI benchmark: each everyday API verb's whole-process wall time, pkctl and kubectl side by side.

Starts a private control plane with a real kubelet (tests/support/node.py's private_node: etcd, a TLS apiserver,
controller-manager, scheduler, kubelet) so that `logs` and `describe` see a running pod, then runs every verb
--runs times with pkctl (`python -m pkctl.main`, as the tests run it) and with kubectl v1.32 against the same
apiserver and kubeconfig, alternating which goes first, after one untimed warm-up run of each. `--baseline DIR` also
runs the pkctl of another checkout (e.g. a `git worktree` of the commit before a change) in the same rounds.
Python runs with its bytecode cache on (as an installed pkctl has it), kept in the bench's temporary directory
(PYTHONPYCACHEPREFIX) even where PYTHONDONTWRITEBYTECODE is set. Prints min/median/max per verb and tool and each
pkctl's median as a multiple of kubectl's, as one JSON document, then cleans up.
Figures only: nothing here passes or fails on time. Needs root (the kubelet runs containers).

    .venv/bin/python -m bench.cli [--runs 15] [--pods 30] [--baseline /tmp/base-worktree] [--only get_pods_all]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.controlplane import _stop, start_etcd  # noqa: E402
from tests.support.node import BUSYBOX, private_node  # noqa: E402
from tests.util import unique  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NS = "bench-cli"


@dataclass
class Tool:
    name: str
    argv: list[str]  # the command line up to the verb's arguments
    cwd: Path | None = None
    env: dict[str, str] | None = None


def timed(tool: Tool, args: list[str], stdin: str | None = None) -> float:
    """Seconds one invocation takes, start to exit; fails loudly if the command does."""
    start = time.perf_counter()
    proc = subprocess.run([*tool.argv, *args], input=stdin, capture_output=True, text=True, cwd=tool.cwd,
                          env=tool.env, timeout=120)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{tool.name} {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return elapsed


def configmap(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NS}\ndata:\n  k: v\n"


def setup(kubectl: Tool, pods: int, tmp: Path) -> None:
    def run(*args: str, stdin: str | None = None) -> None:
        timed(kubectl, list(args), stdin)
    run("create", "namespace", NS)
    run("create", "namespace", NS + "-2")
    talker = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker", "namespace": NS},
              "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                  "name": "c", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                  "command": ["sh", "-c", "i=0; while [ $i -lt 50 ]; do echo line-$i; i=$((i+1)); done; "
                                          "exec sleep 3600"]}]}}
    run("apply", "-f", "-", stdin=json.dumps(talker))
    # Pods no node may take (Pending): what `get pods -A` lists on a busy cluster, without running containers.
    waiting = [{"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"waiting-{i}", "namespace": NS if i % 2 else NS + "-2", "labels": {"app": "w"}},
                "spec": {"nodeSelector": {"bench": "nowhere"},
                         "containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "1"]}]}}
               for i in range(pods)]
    run("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": waiting}))
    run("-n", NS, "create", "deployment", "web", f"--image={BUSYBOX}", "--replicas=0")
    run("-n", NS, "wait", "--for=condition=Ready", "pod/talker", "--timeout=120s")
    for tool in ("pkctl", "kubectl"):
        (tmp / f"cm-{tool}.yaml").write_text(configmap(f"applied-by-{tool}"))


def verbs(tool: str, tmp: Path) -> dict[str, list[str]]:
    """The measured command lines (after the tool and its --kubeconfig)."""
    return {
        "get_pods_all": ["get", "pods", "-A"],
        "get_pods_yaml": ["-n", NS, "get", "pods", "-o", "yaml"],
        "get_pods_json": ["-n", NS, "get", "pods", "-o", "json"],
        "get_one_pod": ["-n", NS, "get", "pod", "talker"],
        # The first run creates the ConfigMap, every later one finds it unchanged (the everyday case).
        "apply_one_file": ["apply", "-f", str(tmp / f"cm-{'kubectl' if tool == 'kubectl' else 'pkctl'}.yaml")],
        "delete_one": ["-n", NS, "delete", "configmap", f"doomed-{tool}"],
        "describe_pod": ["-n", NS, "describe", "pod", "talker"],
        "logs": ["-n", NS, "logs", "talker"],
        "scale": ["-n", NS, "scale", "deployment", "web", "--replicas=0"],
        "api_resources": ["api-resources"],
    }


def summary(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4), "max": round(max(values), 4)}


def measure(tools: list[Tool], kubectl: Tool, runs: int, tmp: Path, only: list[str]) -> dict[str, object]:
    results: dict[str, object] = {}
    names = list(verbs("kubectl", tmp))
    for verb in [v for v in names if not only or v in only]:
        times: dict[str, list[float]] = {t.name: [] for t in tools}
        for i in range(-1, runs):  # run -1: the untimed warm-up
            order = tools if i % 2 == 0 else list(reversed(tools))
            for tool in order:
                kind = "kubectl" if tool is kubectl else tool.name
                args = verbs(kind, tmp)[verb]
                if verb == "delete_one":  # the object to delete, made outside the timed run
                    timed(kubectl, ["-n", NS, "create", "configmap", f"doomed-{kind}"])
                elapsed = timed(tool, args)
                if i >= 0:
                    times[tool.name].append(elapsed)
        row: dict[str, object] = {name: summary(values) for name, values in times.items()}
        k = statistics.median(times[kubectl.name])
        row["median_ratio_to_kubectl"] = {name: round(statistics.median(values) / k, 2)
                                          for name, values in times.items() if name != kubectl.name}
        results[verb] = row
    return results


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=15, help="invocations of each verb per tool")
    p.add_argument("--pods", type=int, default=30, help="pending pods listed besides the running one")
    p.add_argument("--baseline", metavar="DIR", help="also run the pkctl of this checkout (same venv python)")
    p.add_argument("--only", action="append", default=[], metavar="VERB", help="measure only these verbs")
    opts = p.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root (the kubelet runs containers)"}))
        return 1
    tmp = Path(tempfile.mkdtemp(prefix=unique("pkb-cli-") + "-"))
    etcd = start_etcd(str(tmp))
    load_before = os.getloadavg()
    try:
        with private_node(etcd, tls=True) as node:
            kc = node.api.kubeconfig
            kubectl = Tool("kubectl", ["kubectl", "--kubeconfig", kc])
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
            pkctl = [sys.executable, "-m", "pkctl.main", "--kubeconfig", kc]
            tools = [Tool("pkctl", pkctl, ROOT, env)]
            if opts.baseline:
                tools.append(Tool("pkctl-baseline", pkctl, Path(opts.baseline).resolve(), env))
            tools.append(kubectl)
            setup(kubectl, opts.pods, tmp)
            results = measure(tools, kubectl, opts.runs, tmp, opts.only)
    finally:
        _stop(etcd.proc)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    print(json.dumps({"benchmark": "cli", "runs": opts.runs, "pods_listed": opts.pods + 1,
                      "baseline": opts.baseline, "cpus": os.cpu_count(),
                      "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                      "seconds": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
