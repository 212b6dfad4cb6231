"""The chaos scenario shared by tests/chaos and bench/chaos.py: a web Deployment behind NodePort and ClusterIP
Services plus a StatefulSet and some ConfigMaps in one namespace, watched by the invariant Watcher while a
ClientLoop hits the Service; a round rolls both workloads out and SIGKILLs one component at a random moment."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import yaml

from pkctl.cluster.procs import ProcRecord, wait_gone
from tests.chaos.harness import Api, ClientLoop, Watcher, kill_component, kill_target, revive, surge_limit
from tests.e2e.helpers import EXAMPLES, Cluster, make_namespace, recorded_processes
from tests.support.leftovers import processes_mentioning
from tests.util import unique, wait_for_sync

STS_REPLICAS = 2
CONFIGMAPS = 5
APPS = "/apis/apps/v1/namespaces"


@dataclass
class Scene:
    ns: str
    api: Api
    watcher: Watcher
    client: ClientLoop
    replicas: int
    configmaps: set[str] = field(default_factory=set)
    convergence: dict[str, float] = field(default_factory=dict)  # kill type -> worst seconds from kill to converged
    failover: dict[str, float] = field(default_factory=dict)  # kill type -> worst seconds from kill to a write
    killed: list[dict[str, Any]] = field(default_factory=list)  # each kill: type, process, seconds to write/converge
    kills: int = 0

    def summary(self) -> dict[str, Any]:
        return {"kills": self.kills, "worst_convergence_s": self.convergence, "worst_failover_s": self.failover,
                "requests_ok": dict(self.client.ok), "requests_failed": dict(self.client.failed),
                "first_errors": self.client.errors[:5], "error_kinds": self.client.error_kinds(),
                "max_live_web_pods": self.watcher.max_live.get("web"),
                "worst_endpoint_lag_s": self.watcher.endpoint_lags(),
                "surge_limit": self.replicas + -(-self.replicas // 4),
                "watch_events": len(self.watcher.events), "relists": dict(self.watcher.relists),
                "violations": self.watcher.violations, "lost": self.watcher.lost}


def web_docs(replicas: int) -> list[dict[str, Any]]:
    """The web example (Deployment + NodePort and ClusterIP Services) with `replicas`, node port allocated."""
    docs = list(yaml.safe_load_all((EXAMPLES / "web.yaml").read_text()))
    for d in docs:
        if d["kind"] == "Deployment":
            d["spec"]["replicas"] = replicas
        for port in d["spec"].get("ports", []):
            port.pop("nodePort", None)
    return docs


def statefulset() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": STS_REPLICAS, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                         "terminationGracePeriodSeconds": 2,
                         "containers": [{"name": "main", "image": "pkube.local/busybox:latest",
                                         "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}}}


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


def create(api: Api, ns: str, doc: dict[str, Any]) -> dict[str, Any]:
    base = f"/api/v1/namespaces/{ns}" if doc["apiVersion"] == "v1" else f"{APPS}/{ns}"
    plural = {"Deployment": "deployments", "Service": "services", "StatefulSet": "statefulsets",
              "ConfigMap": "configmaps", "Pod": "pods"}[doc["kind"]]
    return api.must("POST", f"{base}/{plural}", doc, ok=(201,))


def pods(api: Api, ns: str) -> list[dict[str, Any]]:
    return list(api.must("GET", f"/api/v1/namespaces/{ns}/pods")["items"])


def ready(p: dict[str, Any]) -> bool:
    return not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))


def converged(api: Api, ns: str) -> bool:
    """The Deployment and the StatefulSet rolled out: every pod of the newest template Ready, no other pod left."""
    dep = api.call("GET", f"{APPS}/{ns}/deployments/web")
    sts = api.call("GET", f"{APPS}/{ns}/statefulsets/db")
    listed = api.call("GET", f"/api/v1/namespaces/{ns}/pods")
    if dep is None or sts is None or listed is None or not 200 == dep[0] == sts[0] == listed[0]:
        return False
    d, s = dep[1], sts[1]
    ds, ss = d.get("status", {}), s.get("status", {})
    dep_done = (ds.get("observedGeneration", 0) >= d["metadata"]["generation"]
                and ds.get("updatedReplicas") == ds.get("replicas") == ds.get("readyReplicas")
                == ds.get("availableReplicas") == d["spec"]["replicas"])
    sts_done = (ss.get("observedGeneration", 0) >= s["metadata"]["generation"]
                and ss.get("currentRevision") == ss.get("updateRevision")
                and ss.get("updatedReplicas") == ss.get("readyReplicas") == s["spec"]["replicas"])
    items = [p for p in listed[1]["items"] if p["metadata"].get("labels", {}).get("app") in ("web", "db")]
    return dep_done and sts_done and len(items) == d["spec"]["replicas"] + s["spec"]["replicas"] and \
        all(ready(p) for p in items)


def running_containers(cluster: Cluster) -> set[str]:
    """The containers running on every node of the cluster, as runc reports them."""
    return {cid for root in cluster.runc_roots for cid, status in cluster.runc_containers(root).items()
            if status == "running"}


def pod_containers(items: list[dict[str, Any]]) -> dict[str, str]:
    """containerID -> pod name, for every running container the API reports."""
    out = {}
    for p in items:
        for c in p["status"].get("containerStatuses") or []:
            if "running" in c.get("state", {}) and c.get("containerID"):
                out[c["containerID"].partition("://")[2]] = p["metadata"]["name"]
    return out


def every_pod_running_once(cluster: Cluster, api: Api, ns: str) -> bool:
    """The nodes run exactly the containers the API reports running: none twice, none orphaned."""
    return running_containers(cluster) == set(pod_containers(pods(api, ns)))


def rollout_state(api: Api, ns: str) -> str:
    """What a stuck rollout looks like, for its failure message: the workloads' status, the ReplicaSets, and
    every pod that is not Ready (phase, node, deleting, its conditions)."""
    out = []
    for path in (f"{APPS}/{ns}/deployments/web", f"{APPS}/{ns}/statefulsets/db"):
        got = api.call("GET", path)
        out.append(f"{path.rsplit('/', 2)[-2]}: {got[1].get('status') if got and got[0] == 200 else got}")
    got = api.call("GET", f"{APPS}/{ns}/replicasets")
    if got is not None and got[0] == 200:
        out.append("replicasets: " + ", ".join(f"{r['metadata']['name']} {r['spec'].get('replicas')}/"
                                              f"{r.get('status', {}).get('readyReplicas', 0)}" for r in got[1]["items"]))
    got = api.call("GET", f"/api/v1/namespaces/{ns}/pods")
    if got is not None and got[0] == 200:
        out += [f"pod {p['metadata']['name']} {p['status'].get('phase')} on {p['spec'].get('nodeName')} "
                f"deleting={bool(p['metadata'].get('deletionTimestamp'))} "
                f"{[(c['type'], c['status']) for c in p['status'].get('conditions', [])]}"
                for p in got[1]["items"] if not ready(p)]
    return "; ".join(out)


def roll(api: Api, ns: str, value: str) -> None:
    """Start a rolling update of both workloads (a new template annotation)."""
    patch = {"spec": {"template": {"metadata": {"annotations": {"chaos/round": value}}}}}
    for path in (f"{APPS}/{ns}/deployments/web", f"{APPS}/{ns}/statefulsets/db"):
        api.must("PATCH", path, patch, content_type="application/merge-patch+json")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode().startswith("hello from ")
    except OSError:
        return False


@contextmanager
def open_scene(cluster: Cluster, replicas: int) -> Iterator[Scene]:
    """The workloads created and Ready, the watcher synced, the client loop running (both stopped after)."""
    api = Api(cluster)
    ns = make_namespace(cluster)
    for doc in [*web_docs(replicas), statefulset()]:
        create(api, ns, doc)
    names = {unique("cm") for _ in range(CONFIGMAPS)}
    for name in names:
        create(api, ns, configmap(name))
    node_port = api.must("GET", f"/api/v1/namespaces/{ns}/services/web")["spec"]["ports"][0]["nodePort"]
    cluster_ip = api.must("GET", f"/api/v1/namespaces/{ns}/services/web-internal")["spec"]["clusterIP"]
    wait_for_sync(lambda: converged(api, ns), timeout=60 + 10 * replicas, interval=0.5, message="web and db ready")
    urls = [f"http://127.0.0.1:{node_port}/", f"http://{cluster_ip}/"]
    wait_for_sync(lambda: all(answers(u) for u in urls), timeout=30, interval=0.2, message="the Service answers")
    client = ClientLoop(urls)
    watcher = Watcher(api, ns, label=lambda: client.label).start()
    client.start()
    scene = Scene(ns, api, watcher, client, replicas, names)
    try:
        yield scene
    finally:
        client.close()
        watcher.close()
        print("chaos:", json.dumps(scene.summary()))


def first_write(api: Api, ns: str, name: str, since: float, timeout: float = 90) -> float:
    """Create ConfigMap `name`, retried every 50 ms through the outage; the seconds from `since` (the kill) to the
    first answer that the write was taken. An attempt that got no answer may have been committed all the same:
    a later 409 AlreadyExists for the same name then says so."""
    body, tried = configmap(name), False
    while True:
        got = api.call("POST", f"/api/v1/namespaces/{ns}/configmaps", body, timeout=2)
        if got is not None and (got[0] == 201 or (got[0] == 409 and tried)):
            return round(time.monotonic() - since, 2)
        if got is not None and got[0] < 500 and got[0] != 429:
            raise AssertionError(f"create configmap {name}: {got}")
        if time.monotonic() - since > timeout:
            raise AssertionError(f"no write taken within {timeout} s of the kill (last answer: {got})")
        tried = True
        time.sleep(0.05)  # retry pacing


def kill_during_rollout(cluster: Cluster, s: Scene, kind: str, label: str, rng: random.Random) -> float:
    """Start a rolling update, SIGKILL the process of kill type `kind` (kill_target) at a random moment of it,
    create a ConfigMap meanwhile (retried through the outage; the time to it is the failover), wait for the
    supervisor to bring the process back (for `cluster up` to bring the supervisor back) and for the rollout to
    finish. Returns the seconds from the kill to convergence."""
    roll(s.api, s.ns, label)
    time.sleep(rng.uniform(0, 4))  # the random moment of the kill inside the rollout (chaos timing, not a sync)
    s.client.label = kind
    comp = kill_target(cluster, kind, rng)
    at = time.strftime("%H:%M:%S")  # to match a violation (stamped too) with the kill before it
    killed = kill_component(cluster, comp)
    t0 = time.monotonic()
    back = revive(cluster, comp, killed)
    name = unique("cm")
    wrote = first_write(s.api, s.ns, name, t0)
    s.configmaps.add(name)
    back()
    try:
        wait_for_sync(lambda: converged(s.api, s.ns), timeout=60 + 10 * s.replicas, interval=0.2,
                      message=f"rollout {label} finished after the {kind} kill ({comp})")
    except AssertionError as e:
        raise AssertionError(f"{e}; {rollout_state(s.api, s.ns)}") from None
    took = round(time.monotonic() - t0, 2)
    s.convergence[kind] = max(s.convergence.get(kind, 0.0), took)
    s.failover[kind] = max(s.failover.get(kind, 0.0), wrote)
    s.killed.append({"kill": kind, "process": comp, "at": at, "failover_s": wrote, "convergence_s": took})
    s.client.label = "rollout"
    s.kills += 1
    return took


def invariants_broken(cluster: Cluster, s: Scene) -> list[str]:
    """What the watcher and a final look at the API and the node found wrong ([] when every invariant held)."""
    broken = [*s.watcher.violations, *s.watcher.lost]
    listed = {c["metadata"]["name"] for c in s.api.must("GET", f"/api/v1/namespaces/{s.ns}/configmaps")["items"]}
    broken += [f"configmap {n} lost" for n in sorted(s.configmaps - listed)]
    try:  # the watch delivers a write a moment after it was acknowledged
        wait_for_sync(lambda: s.configmaps <= s.watcher.names("configmaps"), timeout=30, interval=0.2,
                      message="the watcher to see every ConfigMap")
    except AssertionError:
        unseen = sorted(s.configmaps - s.watcher.names("configmaps"))
        broken += [f"configmap {n} never seen by the watcher" for n in unseen]
    if s.watcher.max_live.get("web", 0) > surge_limit(s.api.must("GET", f"{APPS}/{s.ns}/deployments/web")):
        broken.append(f"web had {s.watcher.max_live['web']} live pods")
    try:
        wait_for_sync(lambda: every_pod_running_once(cluster, s.api, s.ns), timeout=30, interval=0.5,
                      message="every pod running once")
    except AssertionError as e:
        broken.append(str(e))
    return broken


def power_cut(cluster: Cluster) -> None:
    """SIGKILL at once every process of the cluster: the supervisor, the components, the conmons and the pods'
    processes (runc reports each container's init pid), as when the power goes."""
    procs = list(recorded_processes(cluster))
    procs += [r for pid in processes_mentioning(str(cluster.home)) if (r := ProcRecord.of(int(pid))) is not None]
    listed = subprocess.run(["runc", "--root", str(cluster.runc_root), "list", "--format", "json"],
                            capture_output=True, text=True, timeout=30)
    procs += [r for c in json.loads(listed.stdout or "null") or []
              if c.get("pid") and (r := ProcRecord.of(int(c["pid"]))) is not None]
    for rec in procs:
        rec.signal(signal.SIGKILL)
    assert wait_gone(procs, 10) == [], "processes survived SIGKILL"
