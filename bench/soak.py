"""Soak benchmark (not CI): a local cluster with manifests/examples and a Deployment rolled over and over, while
the RSS and open file descriptors of every process the cluster's supervisor runs are sampled from /proc.

    .venv/bin/python -m bench.soak [--minutes 60] [--interval 60] [--replicas 200] [--nodes 2] [--tail-minutes 30]
                                   [--event-ttl DURATION] [--out DIR] [--keep-logs] [--tracemalloc FRAMES]

* Churn: the `soak` Deployment (`--replicas` busybox pods) is restarted (`pkctl rollout restart`) as soon as its
  previous rollout finished, for the whole run: every round deletes and creates all its pods. One node holds
  110 pods (the kubelet's --max-pods, Kubernetes' default), with the examples' pods, so 200 churning pods need two
  nodes (the defaults).
* Sampling: every `--interval` seconds, each component's RSS and number of open fds, by the PIDs recorded in the
  home's supervisor state (a restarted component is followed to its new PID and counted in `restarts`); also
  the number of pods; etcd's backend size (its status: dbSize, dbSizeInUse, the revision; and the db file on
  disk); the apiserver's watch cache (its /metrics: objects stored, per resource too, and the events and JSON bytes
  of the history, summed over resources; Events live an hour, so their number grows for the first hour of churn;
  `--event-ttl`, which `cluster up` passes on, shortens that: with 10m a shorter run shows whether what follows
  the Events' first lifetime is flat); the machine's load average (other work on the machine slows the churn and
  inflates RSS noise); and how long a lookup of a Service name takes from a pod (busybox nslookup, timed in the pod: a lost
  DNS query shows as a lookup of 2.5 s or more).
* Output: one JSON document with, per component, the first/last/peak values and the least-squares slope in
  MB/hour and fds/hour, over the whole run and over its last `--tail-minutes` (start-up growth, caches filling
  toward their bounds, is over by then: "flat" is about the tail; half the run when it is shorter than twice
  the tail); the same for etcd's db size and the watch cache; and a PNG plot of the series. With `--out DIR`:
  DIR/soak.json, DIR/soak.png and DIR/samples.jsonl (each sample as it is taken, to follow a run); otherwise the
  plot goes to the temp dir.

* Heap (with `--out`): at the start of the tail and at the end, every Python component (apiserver, control-plane,
  kubelets) writes a heap dump (`kill -USR2`, pklib.component.dump_heap) into DIR/heap; `heap_growth` is, per
  component, the types whose number of live objects grew most between the two, glibc's heap (`malloc_mb`: held,
  in use, free but kept, mmapped) and Python's small-object arenas (`pymalloc`: arenas held, MB in use and free
  inside them; none under tracemalloc), at both points. With `--tracemalloc FRAMES` the
  components run with PKUBE_TRACEMALLOC=FRAMES (slower, and their RSS includes tracemalloc's own records) and
  `heap_growth` also lists the allocation sites (tracebacks) whose live bytes grew most.
* `--keep-logs` (with `--out`): the home's logs are copied to DIR/logs before the home is removed, to explain a
  restart.

Nothing passes or fails. Uses a temporary home with its own ports, removed at the end (`cluster down --purge`).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.cluster import settled  # noqa: E402
from bench.common import local_cluster, parse_flags, pkctl, report  # noqa: E402
from pkctl.cluster.components import api_get, etcd_client_context  # noqa: E402
from pkctl.cluster.home import Home  # noqa: E402
from pkctl.cluster.procs import ProcRecord  # noqa: E402

NS = "soak"
IMAGE = "pkube.local/busybox:latest"
# A lookup of the web example's Service every second, timed in the pod (centiseconds, or "fail").
PROBE = ('while true; do read s _ </proc/uptime; out=$(nslookup web.default.svc.cluster.local 2>&1); '
         'read e _ </proc/uptime; case "$out" in *Name:*) echo "$(( ${e%.*}${e#*.} - ${s%.*}${s#*.} ))";; '
         '*) echo fail;; esac; sleep 1; done')


def supervised(home: Home) -> dict[str, ProcRecord]:
    """Every live process of the home's supervisor state (<home>/run/<component>.json), by component name."""
    out = {}
    for state in sorted(home.run.glob("*.json")):
        rec = ProcRecord.from_state(home.read_state(state.stem))
        if rec and rec.alive():
            out[state.stem] = rec
    return out


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def etcd_status(home: Home) -> dict[str, Any]:
    """etcd's backend figures (its maintenance status, through the JSON gateway with the health-check client
    certificate) and the size of its db file on disk."""
    out: dict[str, Any] = {}
    req = urllib.request.Request(home.load_config().etcd_url + "/v3/maintenance/status", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10, context=etcd_client_context(home)) as r:
            st = json.loads(r.read())
        out = {"db_mb": mib(int(st["dbSize"])), "db_in_use_mb": mib(int(st["dbSizeInUse"])),
               "revision": int(st["header"]["revision"])}
    except (OSError, ValueError, KeyError, ssl.SSLError):
        pass
    files = list(home.etcd_data.rglob("member/snap/db"))
    if files:
        out["db_file_mb"] = mib(sum(f.stat().st_size for f in files))
    return out


def watch_cache(home: Home) -> dict[str, Any]:
    """The apiserver's watch cache, summed over resources (its /metrics): objects, history events and MB."""
    cfg = home.load_config()
    req = urllib.request.Request(cfg.api_url + "/metrics", headers={"Authorization": f"Bearer {home.token()}"})
    tls = ssl.create_default_context(cafile=str(home.pki.ca_cert)) if cfg.tls else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=tls) as r:
            text = r.read().decode()
    except OSError:
        return {}
    sums = {"apiserver_storage_objects": 0.0, "pkube_watch_cache_events": 0.0, "pkube_watch_cache_bytes": 0.0}
    by_resource: dict[str, int] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in sums:
            value = float(line.rsplit(" ", 1)[1])
            sums[name] += value
            if name == "apiserver_storage_objects" and value:
                by_resource[line.split('resource="', 1)[1].split('"', 1)[0]] = int(value)
    return {"objects": int(sums["apiserver_storage_objects"]), "history_events": int(sums["pkube_watch_cache_events"]),
            "history_mb": mib(int(sums["pkube_watch_cache_bytes"])), "events": by_resource.get("events", 0),
            "objects_by_resource": by_resource}


def mib(n: int) -> float:
    return round(n / 2**20, 1)


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour; None with fewer than 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mx, my = sum(t for t, _ in points) / n, sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return None
    return round(3600 * sum((t - mx) * (v - my) for t, v in points) / var, 2)


def kubectl_args(home: Home) -> list[str]:
    return ["--kubeconfig", str(home.kubeconfig)]


def apply_docs(home: Home, docs: list[dict[str, Any]]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as tmp:
        yaml.safe_dump_all(docs, tmp)
        tmp.flush()
        pkctl(*kubectl_args(home), "apply", "-f", tmp.name)


def apply_examples(home: Home) -> None:
    """manifests/examples, with the web Service's fixed nodePort left to the allocator (another cluster on this
    machine may hold 30080), until every pod settled."""
    docs: list[dict[str, Any]] = []
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in docs:
        if doc.get("kind") == "Service":
            for port in doc.get("spec", {}).get("ports", []):
                port.pop("nodePort", None)
    apply_docs(home, docs)
    wait(lambda: settled(home), 300, "the examples' pods settled")


def wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.soak: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1)


def soak_objects(replicas: int) -> list[dict[str, Any]]:
    container = {"name": "c", "image": IMAGE, "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"],
                 "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}, "limits": {"memory": "16Mi"}}}
    pod_spec = {"terminationGracePeriodSeconds": 1, "containers": [container]}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "soak", "namespace": NS},
                  "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "soak"}},
                           # no surge: the node's pod capacity holds the replicas, not 125% of them
                           "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "25%"}},
                           "template": {"metadata": {"labels": {"app": "soak"}}, "spec": pod_spec}}}
    probe = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dnsprobe", "namespace": NS},
             "spec": {"terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "probe", "image": IMAGE, "command": ["sh", "-c", PROBE]}]}}
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, deployment, probe]


def rolled_out(home: Home, replicas: int) -> bool:
    d = api_get(home, home.load_config(), f"/apis/apps/v1/namespaces/{NS}/deployments/soak") or {}
    st = d.get("status", {})
    return (st.get("observedGeneration", 0) >= d.get("metadata", {}).get("generation", 1)
            and st.get("updatedReplicas") == replicas and st.get("readyReplicas") == replicas
            and st.get("replicas") == replicas)


class Churn(threading.Thread):
    """Rolls the soak Deployment again as soon as the previous rollout finished, until stopped."""

    def __init__(self, home: Home, replicas: int):
        super().__init__(daemon=True)
        self.home, self.replicas = home, replicas
        self.stop = threading.Event()
        self.rollouts: list[float] = []  # seconds each finished rollout took
        self.error = ""

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                began = time.monotonic()
                # the restart bumps the generation: rolled_out() is False until the controller has seen it
                pkctl(*kubectl_args(self.home), "-n", NS, "rollout", "restart", "deployment/soak")
                while not self.stop.is_set() and not rolled_out(self.home, self.replicas):
                    if time.monotonic() - began > 900:
                        raise SystemExit("a rollout did not finish in 15 minutes")
                    time.sleep(1)
                if not self.stop.is_set():
                    self.rollouts.append(round(time.monotonic() - began, 1))
        except (SystemExit, Exception) as e:  # noqa: BLE001 - reported in the JSON, the sampling goes on
            self.error = str(e)[:500]


def pod_count(home: Home) -> int | None:
    pods = api_get(home, home.load_config(), "/api/v1/pods", timeout=10)
    return None if pods is None else len(pods.get("items", []))


def dns_lookups(home: Home) -> dict[str, Any]:
    """What the probe pod measured: lookups, failures, p50/p99/max seconds, how many took 1 s or 2.5 s and more."""
    p = subprocess.run([sys.executable, "-m", "pkctl.main", *kubectl_args(home), "-n", NS, "logs", "dnsprobe"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = p.stdout.split()
    times = sorted(int(x) / 100 for x in lines if x.isdigit())
    if not times:
        return {"lookups": len(lines), "failed": lines.count("fail")}
    def quantile(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))]
    return {"lookups": len(lines), "failed": lines.count("fail"), "p50_s": quantile(0.5), "p99_s": quantile(0.99),
            "max_s": times[-1], "slower_than_1s": sum(t >= 1 for t in times),
            "resent_2_5s_or_more": sum(t >= 2.5 for t in times)}


def plot(samples: list[dict[str, Any]], names: list[str], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt
    fig, (rss, fds, store) = plt.subplots(3, 1, figsize=(11, 11), sharex=True)
    for name in names:
        pts = [(s["t"] / 60, s["procs"][name]) for s in samples if name in s["procs"]]
        rss.plot([t for t, _ in pts], [v["rss_mb"] for _, v in pts], label=name, marker=".")
        fds.plot([t for t, _ in pts], [v["fds"] for _, v in pts], label=name, marker=".")
    for label, series, key in (("etcd db size", "etcd", "db_mb"), ("etcd db in use", "etcd", "db_in_use_mb"),
                               ("watch cache history", "watch_cache", "history_mb")):
        pts = [(s["t"] / 60, s[series][key]) for s in samples if key in s.get(series, {})]
        store.plot([t for t, _ in pts], [v for _, v in pts], label=label, marker=".")
    load = store.twinx()
    load.plot([s["t"] / 60 for s in samples], [s["load1"] for s in samples], color="grey", ls=":",
              label="load average (1 min)")
    load.set_ylabel("load average")
    rss.set_ylabel("RSS (MiB)")
    fds.set_ylabel("open file descriptors")
    store.set_ylabel("MiB")
    store.set_xlabel("minutes")
    rss.set_title(title)
    rss.legend(fontsize="small", ncol=3)
    store.legend(fontsize="small", loc="upper left")
    load.legend(fontsize="small", loc="upper right")
    for ax in (rss, fds, store):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def trend(pts: list[tuple[float, float]], tail_from: float) -> dict[str, Any]:
    """First, last and peak value, and the slope per hour over the whole run and from `tail_from` seconds on."""
    if not pts:
        return {}
    return {"first": pts[0][1], "last": pts[-1][1], "peak": max(v for _, v in pts),
            "per_hour": slope_per_hour(pts), "per_hour_tail": slope_per_hour([p for p in pts if p[0] >= tail_from])}


def summarise(samples: list[dict[str, Any]], name: str, tail_from: float) -> dict[str, Any]:
    pts = [(s["t"], s["procs"][name]) for s in samples if name in s["procs"]]
    rss = trend([(t, v["rss_mb"]) for t, v in pts], tail_from)
    fds = trend([(t, float(v["fds"])) for t, v in pts], tail_from)
    return {"rss_mb_first": rss["first"], "rss_mb_last": rss["last"], "rss_mb_peak": rss["peak"],
            "fds_first": int(fds["first"]), "fds_last": int(fds["last"]), "fds_peak": int(fds["peak"]),
            "rss_mb_per_hour": rss["per_hour"], "fds_per_hour": fds["per_hour"],
            "rss_mb_per_hour_tail": rss["per_hour_tail"], "fds_per_hour_tail": fds["per_hour_tail"]}


def sample(home: Home, t: float, pids: dict[str, int], restarts: dict[str, int]) -> dict[str, Any]:
    procs: dict[str, Any] = {}
    for name, rec in supervised(home).items():
        rss, fds = rec.rss_bytes(), open_fds(rec.pid)
        if rss is None or fds is None:
            continue  # exited between the state read and /proc
        if name in pids and pids[name] != rec.pid:
            restarts[name] = restarts.get(name, 0) + 1
        pids[name] = rec.pid
        procs[name] = {"rss_mb": round(rss / 2**20, 1), "fds": fds}
    return {"t": round(t, 1), "load1": round(os.getloadavg()[0], 2), "pods": pod_count(home), "procs": procs,
            "etcd": etcd_status(home), "watch_cache": watch_cache(home)}


# The supervised processes that answer SIGUSR2 with a heap dump (Python components; not etcd, not the supervisor).
def dumps_heap(name: str) -> bool:
    return name in ("apiserver", "control-plane") or name.startswith("kubelet")


def dump_heaps(home: Home, heap_dir: Path, label: str) -> dict[str, Path]:
    """Ask every Python component for a heap dump; wait for each (60 s) and rename it DIR/<component>-<label>.*."""
    asked = {name: rec.pid for name, rec in supervised(home).items() if dumps_heap(name)}
    for pid in asked.values():
        os.kill(pid, signal.SIGUSR2)
    got: dict[str, Path] = {}
    deadline = time.monotonic() + 60
    while len(got) < len(asked) and time.monotonic() < deadline:
        for name, pid in asked.items():
            found = sorted(heap_dir.glob(f"heap-{pid}-*.json"))
            if name not in got and found:
                base = heap_dir / f"{name}-{label}"
                found[-1].rename(base.with_suffix(".json"))
                snap = found[-1].with_suffix(".tracemalloc")
                if snap.exists():
                    snap.rename(base.with_suffix(".tracemalloc"))
                got[name] = base
        time.sleep(0.5)
    return got


def heap_growth(before: dict[str, Path], after: dict[str, Path], top: int = 15) -> dict[str, Any]:
    """Per component dumped at both points: the types whose live-object count grew most, and (tracemalloc) the
    allocation sites whose live bytes grew most (each site's traceback from the allocating line outward)."""
    out: dict[str, Any] = {}
    for name in sorted(before.keys() & after.keys()):
        a = json.loads(before[name].with_suffix(".json").read_text())
        b = json.loads(after[name].with_suffix(".json").read_text())
        types = sorted(((n, c - a["by_type"].get(n, 0)) for n, c in b["by_type"].items()), key=lambda x: -x[1])
        entry: dict[str, Any] = {"gc_objects": [a["gc_objects"], b["gc_objects"]],
                                 "types_grown": {n: d for n, d in types[:top] if d > 0}}
        if "malloc" in a and "malloc" in b:  # glibc's heap: held from the system, in use, free but kept, mmapped
            entry["malloc_mb"] = {k: [round(a["malloc"][k] / 2**20, 1), round(b["malloc"][k] / 2**20, 1)]
                                  for k in b["malloc"]}
        if "pymalloc" in a and "pymalloc" in b:  # Python's small-object arenas (mmapped; not in malloc_mb)
            entry["pymalloc"] = {k: [a["pymalloc"][k], b["pymalloc"][k]] if k.startswith("arenas") else
                                 [round(a["pymalloc"][k] / 2**20, 1), round(b["pymalloc"][k] / 2**20, 1)]
                                 for k in b["pymalloc"]}
        if "traced_bytes" in a and "traced_bytes" in b:
            entry["traced_mb"] = [round(a["traced_bytes"] / 2**20, 1), round(b["traced_bytes"] / 2**20, 1)]
            old = tracemalloc.Snapshot.load(str(before[name].with_suffix(".tracemalloc")))
            new = tracemalloc.Snapshot.load(str(after[name].with_suffix(".tracemalloc")))
            entry["sites_grown"] = [
                {"kb": round(d.size_diff / 1024, 1), "blocks": d.count_diff,
                 "at": [f"{f.filename.removeprefix(str(ROOT) + '/')}:{f.lineno}" for f in reversed(d.traceback)]}
                for d in new.compare_to(old, "traceback")[:top] if d.size_diff > 0]
        out[name] = entry
    return out


def main() -> int:
    flags = parse_flags(__doc__, minutes=60.0, interval=60.0, replicas=200, nodes=2, tail_minutes=30.0, out="",
                        event_ttl="", keep_logs=False, tracemalloc=0)
    out = Path(flags.out) if flags.out else None
    heap_dir = out / "heap" if out else None
    if out and heap_dir:
        out.mkdir(parents=True, exist_ok=True)
        heap_dir.mkdir(exist_ok=True)
        os.environ["PKUBE_HEAP_DIR"] = str(heap_dir)  # inherited by the supervisor and its components
        if flags.tracemalloc:
            os.environ["PKUBE_TRACEMALLOC"] = str(flags.tracemalloc)
    plot_path = str(out / "soak.png") if out else os.path.join(tempfile.gettempdir(),
                                                                 f"pkube-soak-{int(time.time())}.png")
    # the tail: the last --tail-minutes, or the second half of a shorter run
    tail_s = 60 * min(flags.tail_minutes, flags.minutes / 2)
    result: dict[str, Any] = {"benchmark": "soak", "minutes": flags.minutes, "interval_s": flags.interval,
                              "replicas": flags.replicas, "nodes": flags.nodes, "tail_minutes": tail_s / 60,
                              "event_ttl": flags.event_ttl or "1h (the default)"}
    with local_cluster("pkbench-soak-") as home:
        pkctl("cluster", "up", "--home", str(home.root), "--nodes", str(flags.nodes),
              *(["--event-ttl", flags.event_ttl] if flags.event_ttl else []))
        apply_examples(home)
        apply_docs(home, soak_objects(flags.replicas))
        wait(lambda: rolled_out(home, flags.replicas), 900, f"{flags.replicas} soak pods ready")
        churn = Churn(home, flags.replicas)
        churn.start()
        samples: list[dict[str, Any]] = []
        pids: dict[str, int] = {}
        restarts: dict[str, int] = {}
        began = time.monotonic()
        end = began + flags.minutes * 60
        heaps: dict[str, dict[str, Path]] = {}
        while True:
            samples.append(sample(home, time.monotonic() - began, pids, restarts))
            if heap_dir and "tail" not in heaps and samples[-1]["t"] >= flags.minutes * 60 - tail_s - 1:
                heaps["tail"] = dump_heaps(home, heap_dir, "tail")
            if out:
                with open(out / "samples.jsonl", "a") as f:
                    f.write(json.dumps(samples[-1]) + "\n")
            if time.monotonic() + flags.interval > end + 1:
                break
            time.sleep(max(0.0, began + len(samples) * flags.interval - time.monotonic()))
        if heap_dir:
            heaps["end"] = dump_heaps(home, heap_dir, "end")
        churn.stop.set()
        churn.join(timeout=60)
        names = sorted({n for s in samples for n in s["procs"]})
        tail_from = samples[-1]["t"] - tail_s
        loads = [s["load1"] for s in samples]
        result.update(
            samples=len(samples), restarts=restarts,
            rollouts_finished=len(churn.rollouts), pods_created_by_churn=len(churn.rollouts) * flags.replicas,
            rollout_s=churn.rollouts, churn_error=churn.error,
            pods_sampled={"min": min((s["pods"] or 0) for s in samples),
                          "max": max((s["pods"] or 0) for s in samples)},
            load_average_1m={"min": min(loads), "mean": round(sum(loads) / len(loads), 2), "max": max(loads)},
            dns_probe=dns_lookups(home),
            components={n: summarise(samples, n, tail_from) for n in names},
            etcd={k: trend([(s["t"], float(s["etcd"][k])) for s in samples if k in s["etcd"]], tail_from)
                  for k in ("db_mb", "db_in_use_mb", "db_file_mb", "revision")},
            watch_cache={k: trend([(s["t"], float(s["watch_cache"][k])) for s in samples if k in s["watch_cache"]],
                                  tail_from) for k in ("objects", "events", "history_events", "history_mb")},
            plot=plot_path)
        if heaps.get("tail") and heaps.get("end"):
            result["heap_growth"] = heap_growth(heaps["tail"], heaps["end"])
        if out and flags.keep_logs:
            shutil.copytree(home.root / "logs", out / "logs", dirs_exist_ok=True)
            result["logs"] = str(out / "logs")
        plot(samples, names, plot_path,
             f"pkube soak: {flags.minutes:g} min, {flags.replicas} pods on {flags.nodes} node(s) rolled "
             f"continuously, sampled every {flags.interval:g} s")
        result["series"] = [{"t": s["t"], "load1": s["load1"], "pods": s["pods"],
                             **{f"{n}_rss_mb": v["rss_mb"] for n, v in s["procs"].items()},
                             **{f"etcd_{k}": v for k, v in s["etcd"].items()},
                             **{f"watch_cache_{k}": v for k, v in s["watch_cache"].items()
                                if k != "objects_by_resource"}}
                            for s in samples]
    if out:
        (out / "soak.json").write_text(json.dumps(result, indent=1))
    return report(result, indent=1)


if __name__ == "__main__":
    sys.exit(main())
