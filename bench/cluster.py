"""Local cluster benchmark: `pkctl cluster up` wall time (cold and warm), the web example from `apply` to
Ready pods and to answers on its NodePort, then memory and idle CPU with all of manifests/examples running.

    .venv/bin/python bench/cluster.py [--idle-seconds 60] [--compact] [--churn 30]

--compact measures `pkctl cluster up --compact`: etcd and one process hosting everything else. --churn N creates N
more busybox pods once the examples run, waits for them to be Running and deletes them (issue 20's "after 30-pod
churn") before memory and idle CPU are measured.

Memory is the RSS of the cluster's own processes (supervisor, etcd, apiserver, kubelet, control-plane, or supervisor,
etcd and control-plane with --compact), and their
PSS (shared library pages counted once over all of them: what they take from the machine together); the
per-container monitors (conmon, ~1-2 MB each, the role of containerd-shim) are reported apart.

Prints one JSON document. Figures only; nothing passes or fails on time. Uses a temporary
home with its own ports, and removes it (`cluster down --purge`) at the end.
"""
from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import idle_usage, local_cluster, parse_flags, pkctl, report  # noqa: E402
from pkctl.cluster.components import BY_NAME, api_get, components  # noqa: E402
from pkctl.cluster.home import Home  # noqa: E402
from pkctl.cluster.procs import ProcRecord  # noqa: E402


def processes(home: Home) -> dict[str, ProcRecord]:
    out = {}
    for name in ["supervisor", *(c.name for c in components(home.load_config()))]:
        rec = ProcRecord.from_state(home.read_state(name))
        if rec and rec.alive():
            out[name] = rec
    return out


def monitors(home: Home) -> list[ProcRecord]:
    """The conmon processes of this home's containers (their command lines name the home)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "conmon" \
                    and str(home.root).encode() in (proc / "cmdline").read_bytes():
                rec = ProcRecord.of(int(proc.name))
                if rec:
                    out.append(rec)
        except OSError:
            pass  # gone while we looked
    return out


def settled(home: Home) -> bool:
    """Every pod Running with all containers ready, or Succeeded (the one-shot example)."""
    pods = (api_get(home, home.load_config(), "/api/v1/pods") or {}).get("items", [])
    return bool(pods) and all(
        p.get("status", {}).get("phase") == "Succeeded"
        or (p.get("status", {}).get("phase") == "Running"
            and all(c.get("ready") for c in p["status"].get("containerStatuses", [])))
        for p in pods)


def apply_examples(home: Home) -> float:
    """All of manifests/examples, until every pod is settled; the seconds that took."""
    began = time.monotonic()
    pkctl("--kubeconfig", str(home.kubeconfig), "apply", "-f", str(ROOT / "manifests" / "examples"))
    deadline = began + 120
    while not settled(home):
        if time.monotonic() > deadline:
            raise SystemExit("the examples' pods did not settle within 120 s")
        time.sleep(0.2)
    return round(time.monotonic() - began, 3)


def ready_after(home: Home) -> dict[str, Any]:
    return {c.name: (home.read_state(c.name) or {}).get("ready_after") for c in components(home.load_config())
            if (home.read_state(c.name) or {}).get("state") == "Running"}


def serves(url: str, pod_names: set[str]) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode().strip().removeprefix("hello from ") in pod_names
    except OSError:
        return False


def apply_web(home: Home) -> dict[str, float]:
    """`pkctl apply -f web.yaml` until the Deployment reports 3 ready replicas (pods Running and Ready),
    then until its NodePort (127.0.0.1:30080) answers from one of them."""
    cfg = home.load_config()
    began = time.monotonic()
    pkctl("--kubeconfig", str(home.kubeconfig), "apply", "-f", str(ROOT / "manifests" / "examples" / "web.yaml"))
    out: dict[str, float] = {}
    deadline = began + 60
    while time.monotonic() < deadline:
        if "ready" not in out:
            dep = api_get(home, cfg, "/apis/apps/v1/namespaces/default/deployments/web") or {}
            if dep.get("status", {}).get("readyReplicas") == 3:
                out["ready"] = round(time.monotonic() - began, 3)
        if "ready" in out:
            pods = api_get(home, cfg, "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb") or {}
            if serves("http://127.0.0.1:30080/", {p["metadata"]["name"] for p in pods.get("items", [])}):
                out["serving"] = round(time.monotonic() - began, 3)
                return out
        time.sleep(0.05)
    raise SystemExit(f"the web example was not Ready and serving on node port 30080 within 60 s ({out})")


def churn(home: Home, count: int) -> float:
    """`count` pods applied, all Running, then deleted (`pkctl delete -f` waits until they are gone); the seconds."""
    from bench.podstart import pods_file
    began = time.monotonic()
    manifest = pods_file(home.root / "churn.yaml", count, "churn")
    kubeconfig, cfg = ("--kubeconfig", str(home.kubeconfig)), home.load_config()
    pkctl(*kubeconfig, "apply", "-f", str(manifest))
    deadline = began + 180
    while True:
        pods = (api_get(home, cfg, "/api/v1/namespaces/default/pods") or {}).get("items", [])
        if sum(p["metadata"]["name"].startswith("churn-") and p.get("status", {}).get("phase") == "Running"
               for p in pods) == count:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the {count} churn pods were not Running within 180 s")
        time.sleep(0.2)
    pkctl(*kubeconfig, "delete", "-f", str(manifest))
    return round(time.monotonic() - began, 3)


def main() -> int:
    args = parse_flags(__doc__, idle_seconds=60.0, compact=False, churn=0)
    result: dict[str, Any] = {"benchmark": "cluster", "compact": args.compact}
    with local_cluster("pkbench-home-") as home:
        result["up_cold_s"] = pkctl("cluster", "up", "--home", str(home.root), *(["--compact"] if args.compact else []))
        result["ready_after_cold_s"] = ready_after(home)
        result["down_s"] = pkctl("cluster", "down", "--home", str(home.root))
        result["up_warm_s"] = pkctl("cluster", "up", "--home", str(home.root))
        result["ready_after_warm_s"] = ready_after(home)
        result["waited_for"] = sorted(ready_after(home))
        if all(BY_NAME[c].available() for c in ("controller-manager", "scheduler", "kubelet", "proxy")):
            web = apply_web(home)
            result["apply_web_to_3_ready_s"] = web["ready"]
            result["apply_web_to_serving_nodeport_s"] = web["serving"]
            result["apply_all_examples_to_settled_s"] = apply_examples(home)
            if args.churn:
                result[f"churn_{args.churn}_pods_s"] = churn(home, args.churn)
            time.sleep(10)  # let start-up work (probes' first rounds, status writes) pass before measuring idle
        result.update(idle_usage(processes(home), args.idle_seconds))
        mons = monitors(home)
        result["containers_monitored"] = len(mons)
        result["rss_monitors_total_mb"] = round(sum(r.rss_bytes() or 0 for r in mons) / 2**20, 1)
    return report(result, indent=1)


if __name__ == "__main__":
    sys.exit(main())
