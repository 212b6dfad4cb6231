"""What the chaos suite runs beside the cluster it torments: an independent invariant watcher, a client loop
against a Service, and the SIGKILL of one component with the wait for the supervisor to bring it back.

All of it talks plain HTTP (http.client in threads) with the cluster's admin token, never through pkube's own
client: a bug in pklib must not hide a bug in the cluster. `bench/chaos.py` drives the same pieces for longer.
"""
from __future__ import annotations

import http.client
import json
import math
import os
import random
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from pkctl.cluster.components import BY_NAME, ELECTION_LEASES
from pkctl.cluster.procs import ProcRecord
from tests.e2e.helpers import ROOT, Cluster, etcd_leader, lease_holder
from tests.util import wait_for_sync

# One process each in the local cluster; controller-manager, scheduler, proxy and dns are members of the
# `control-plane` group process (launcher/group.py), so a SIGKILL of any of them is a SIGKILL of the group.
# The supervisor takes every component along (setpriv --pdeathsig): `pkctl cluster up` brings them back.
SUPERVISOR = "supervisor"
KILLABLE = tuple((os.environ.get("PKUBE_CHAOS_KILLS") or
                  f"etcd,apiserver,control-plane,kubelet,{SUPERVISOR}").split(","))
# A highly available cluster (`up --control-planes 3`) runs etcd-cpN, apiserver-cpN and control-plane-cpN (hosting
# controller-manager and scheduler, each elected by a Lease; cp1's also hosts proxy, dns and ingress) per member.
# Its kill types name a role; the process that plays it is found at the moment of the kill (kill_target).
HA_KILLABLE = tuple((os.environ.get("PKUBE_CHAOS_HA_KILLS") or
                     "apiserver,etcd-leader,controller-manager-leader,scheduler-leader,worker-kubelet").split(","))
WATCHED = {"pods": "/api/v1", "configmaps": "/api/v1", "replicasets": "/apis/apps/v1",
           "deployments": "/apis/apps/v1", "statefulsets": "/apis/apps/v1",
           "endpointslices": "/apis/discovery.k8s.io/v1"}
# The Service whose endpoints the watcher follows (endpoint_lag): the one the client loop requests.
SERVED = "web"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def seeded_random() -> tuple[int, random.Random]:
    """PKUBE_CHAOS_SEED or a fresh seed, printed so a failing run can be replayed."""
    seed = env_int("PKUBE_CHAOS_SEED", random.SystemRandom().randrange(1 << 30))
    print(f"chaos seed: {seed} (PKUBE_CHAOS_SEED={seed} replays it)")
    return seed, random.Random(seed)


class Api:
    """Requests with the admin token over a fresh connection each (the apiserver may be restarting)."""

    def __init__(self, cluster: Cluster):
        cfg = cluster.config()
        self.port, self.tls, self.token = int(cfg["api_port"]), bool(cfg["tls"]), cluster.token()
        self.ctx = ssl.create_default_context(cafile=str(cluster.home / "pki" / "ca.crt")) if self.tls else None

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.ctx is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 5,
                content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        conn = self.connect(timeout)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type})
            r = conn.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else {}
        finally:
            conn.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 5,
             content_type: str = "application/json") -> tuple[int, dict[str, Any]] | None:
        """request(), or None when the apiserver is not there (killed, restarting)."""
        try:
            return self.request(method, path, body, timeout, content_type)
        except (OSError, http.client.HTTPException, ValueError):
            return None

    def must(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 60,
             content_type: str = "application/json", ok: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
        """Retry through component restarts until the apiserver answers with one of `ok`."""
        def attempt() -> dict[str, Any] | None:
            got = self.call(method, path, body, content_type=content_type)
            if got is not None and got[0] in ok:
                return got[1]
            if got is not None and got[0] < 500 and got[0] not in (409, 429):
                raise AssertionError(f"{method} {path}: {got}")
            return None
        result: dict[str, Any] = wait_for_sync(attempt, timeout=timeout, interval=0.2, message=f"{method} {path}")
        return result

    def watch(self, path: str, rv: str, stop: threading.Event) -> Iterator[dict[str, Any]]:
        """The events of one watch request (ends on a server close, a timeout or `stop`)."""
        conn = self.connect(timeout=15)
        try:
            conn.request("GET", f"{path}?watch=1&resourceVersion={rv}&timeoutSeconds=5&allowWatchBookmarks=true",
                         headers={"Authorization": f"Bearer {self.token}"})
            r = conn.getresponse()
            if r.status != 200:
                yield {"type": "ERROR", "object": {"code": r.status}}
                return
            while not stop.is_set():
                line = r.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


def is_live(pod: dict[str, Any]) -> bool:
    """A pod that counts against a controller's limits: not terminating and not finished."""
    return (not pod["metadata"].get("deletionTimestamp")
            and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"))


def surge_limit(dep: dict[str, Any]) -> int:
    replicas = int(dep["spec"].get("replicas", 1))
    surge = ((dep["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(surge, str) and surge.endswith("%"):
        return replicas + math.ceil(replicas * int(surge[:-1]) / 100)
    return replicas + int(surge)


def uid_of(obj: dict[str, Any]) -> str | None:
    uid: str | None = obj["metadata"].get("uid")
    return uid


@dataclass
class Watcher:
    """Watches (list, then watch; relist on 410 or a lost connection) every WATCHED kind of one namespace,
    records every event and checks the invariants on each one."""
    api: Api
    ns: str
    events: list[tuple[float, str, str, str]] = field(default_factory=list)  # (time, kind, type, name)
    violations: list[str] = field(default_factory=list)
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in WATCHED})
    relists: Counter[str] = field(default_factory=Counter)
    max_live: dict[str, int] = field(default_factory=dict)  # deployment -> most live pods seen at once
    deleted_by_test: set[tuple[str, str]] = field(default_factory=set)
    lost: list[str] = field(default_factory=list)
    # What the client loop is doing (the kill type in progress), to charge each endpoint lag to.
    label: Callable[[], str] = lambda: ""
    # Per label, the worst seconds from a serving pod's deletion (as watched) to its address leaving the ready
    # endpoints of the Service SERVED: past the pod's preStop drain, requests still sent there fail.
    endpoint_lag: dict[str, float] = field(default_factory=dict)
    deleting: dict[str, tuple[float, str]] = field(default_factory=dict)  # pod IP -> (seen deleted at, label)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.synced = {k: threading.Event() for k in WATCHED}
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True, name=f"watch-{k}")
                        for k in WATCHED]

    def start(self) -> "Watcher":
        for t in self.threads:
            t.start()
        for e in self.synced.values():
            assert e.wait(60), "watcher could not list"
        return self

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(20)  # a watch request ends within its timeoutSeconds (5)

    def _path(self, kind: str) -> str:
        return f"{WATCHED[kind]}/namespaces/{self.ns}/{kind}"

    def _run(self, kind: str) -> None:
        rv = ""
        while not self.stop.is_set():
            if not rv:
                got = self.api.call("GET", self._path(kind), timeout=10)
                if got is None or got[0] != 200:
                    self.stop.wait(0.2)
                    continue
                rv = got[1]["metadata"]["resourceVersion"]
                self._relist(kind, {o["metadata"]["name"]: o for o in got[1]["items"]})
                self.synced[kind].set()
            try:
                for ev in self.api.watch(self._path(kind), rv, self.stop):
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        rv = ""  # 410 Gone (compacted, a new watch cache) or another error: list again
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        self._apply(kind, ev["type"], obj)
            except (OSError, http.client.HTTPException, ValueError):
                self.stop.wait(0.2)  # the apiserver went away mid-watch: watch again from rv

    def _relist(self, kind: str, now: dict[str, dict[str, Any]]) -> None:
        with self.lock:
            if self.synced[kind].is_set():
                self.relists[kind] += 1
            old = self.objects[kind]
            # gone, or replaced meanwhile by a new object of the same name (a StatefulSet pod deleted and made
            # again between the two lists): the old one's deletion is what happened first
            for name in [n for n in old if n not in now or uid_of(now[n]) != uid_of(old[n])]:
                self._apply_locked(kind, "DELETED", old[name], synthetic=True)
            for name, obj in now.items():
                self._apply_locked(kind, "MODIFIED" if name in old else "ADDED", obj, synthetic=True)

    def _apply(self, kind: str, typ: str, obj: dict[str, Any]) -> None:
        with self.lock:
            self._apply_locked(kind, typ, obj)

    def _apply_locked(self, kind: str, typ: str, obj: dict[str, Any], synthetic: bool = False) -> None:
        name, uid = obj["metadata"]["name"], obj["metadata"].get("uid")
        store = self.objects[kind]
        self.events.append((time.monotonic(), kind, typ + (" (relist)" if synthetic else ""), name))
        if typ == "DELETED":
            if store.get(name, {}).get("metadata", {}).get("uid") == uid:
                del store[name]
            if kind not in ("pods", "replicasets", "endpointslices") and (kind, name) not in self.deleted_by_test:
                self.lost.append(f"{kind}/{name} deleted (nobody asked)")
            if kind in ("pods", "endpointslices"):
                self._follow_endpoints(kind, obj)
            return
        prev = store.get(name)
        if kind == "pods" and prev is not None and prev["metadata"].get("uid") != uid:
            # a StatefulSet pod (stable name) came back as a new object before the old one's deletion was seen
            self.violations.append(f"{time.strftime('%H:%M:%S')} pod {name}: new uid {uid} while "
                                   f"{prev['metadata']['uid']} still existed")
        store[name] = obj
        if kind in ("pods", "deployments"):
            self._check_surge()
        if kind in ("pods", "endpointslices"):
            self._follow_endpoints(kind, obj)

    def _served_ips(self) -> set[str]:
        return {a for s in self.objects["endpointslices"].values()
                if (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == SERVED
                for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready", True)
                for a in e.get("addresses") or []}

    def _follow_endpoints(self, kind: str, obj: dict[str, Any]) -> None:
        """endpoint_lag: a served pod seen deleted starts a clock that stops when its address leaves the ready
        endpoints (at once when it had left before the pod's deletion was seen: watches of two kinds are not
        ordered with each other)."""
        now, served = time.monotonic(), self._served_ips()
        ip = (obj.get("status") or {}).get("podIP")
        if kind == "pods" and ip and ip in served and ip not in self.deleting and obj["metadata"].get(
                "deletionTimestamp") and (obj["metadata"].get("labels") or {}).get("app") == SERVED:
            self.deleting[ip] = (now, self.label())
        for gone in [a for a in self.deleting if a not in served]:
            seen, label = self.deleting.pop(gone)
            self.endpoint_lag[label] = round(max(self.endpoint_lag.get(label, 0.0), now - seen), 2)

    def _check_surge(self) -> None:
        for dname, dep in self.objects["deployments"].items():
            sel = dep["spec"]["selector"].get("matchLabels") or {}
            live = [p["metadata"]["name"] for p in self.objects["pods"].values()
                    if is_live(p) and all(p["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
            self.max_live[dname] = max(self.max_live.get(dname, 0), len(live))
            if len(live) > surge_limit(dep):
                self.violations.append(f"{time.strftime('%H:%M:%S')} deployment {dname}: {len(live)} live pods > "
                                       f"{surge_limit(dep)} (replicas + maxSurge): {sorted(live)}")

    def endpoint_lags(self) -> dict[str, float]:
        """endpoint_lag, counting the addresses still served now as lagging until now."""
        with self.lock:
            lags, now = dict(self.endpoint_lag), time.monotonic()
            for seen, label in self.deleting.values():
                lags[label] = round(max(lags.get(label, 0.0), now - seen), 2)
            return lags

    def names(self, kind: str) -> set[str]:
        with self.lock:
            return set(self.objects[kind])


class ClientLoop:
    """Requests to a Service from the host, over and over; each failure is charged to the current `label`
    (the kill type in progress, or "rollout" between kills)."""

    def __init__(self, urls: list[str]):
        self.urls, self.label = urls, "rollout"
        self.ok: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="client-loop")

    def start(self) -> "ClientLoop":
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)

    def error_kinds(self) -> dict[str, int]:
        """How many failed requests ended in each way (the error without its time, kill type and URL)."""
        return dict(Counter(e.split(": ", 2)[-1] for e in self.errors).most_common())

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            url, label = self.urls[i % len(self.urls)], self.label
            i += 1
            try:
                with urllib.request.urlopen(url, timeout=3) as r:
                    body = r.read().decode()
                if not body.startswith("hello from "):
                    raise OSError(f"unexpected answer {body[:80]!r}")
                self.ok[label] += 1
            except OSError as e:
                self.failed[label] += 1
                self.errors.append(f"{time.strftime('%H:%M:%S')} {label}: {url}: {e}{answered(e)}")
            self.stop.wait(0.05)  # pacing, ~20 requests/s


def answered(e: OSError) -> str:
    """What the server that answered an HTTP error said (its Server header and the start of the body): which
    server got a request meant for the Service's pods."""
    if not isinstance(e, urllib.error.HTTPError):
        return ""
    try:
        body = e.read(120).decode(errors="replace")
    except OSError:
        body = ""
    return f" (server {e.headers.get('Server')!r}: {body!r})"


def component_pid(cluster: Cluster, name: str) -> ProcRecord | None:
    try:
        return cluster.record(name)
    except (FileNotFoundError, ValueError):
        return None


def is_ha(cluster: Cluster) -> bool:
    return bool(cluster.config().get("members"))


def kill_types(cluster: Cluster) -> tuple[str, ...]:
    if not is_ha(cluster):
        return KILLABLE
    if cluster.config().get("workers"):
        return HA_KILLABLE
    return tuple(k for k in HA_KILLABLE if k != "worker-kubelet")  # one node: no worker to kill


def kill_target(cluster: Cluster, kind: str, rng: random.Random) -> str:
    """The component a kill of type `kind` SIGKILLs now. On a highly available cluster: `apiserver` is a member's
    (chosen by `rng`: clients reach every one through the supervisor's balancer), `etcd-leader` the member that
    leads etcd's raft, `controller-manager-leader` / `scheduler-leader` the control-plane process holding that
    Lease, `worker-kubelet` the kubelet (and proxy: one process) of an extra node (`up --nodes N`), chosen by `rng`;
    any other kind names a component (`kubelet`, `etcd-cp2`, ...). On one control plane: `kind` itself."""
    if not is_ha(cluster):
        return kind
    if kind == "apiserver":
        return f"apiserver-{rng.choice([m['name'] for m in cluster.config()['members']])}"
    if kind == "etcd-leader":
        return f"etcd-{etcd_leader(cluster)}"
    if kind == "worker-kubelet":
        workers = [f"kubelet-{w['name']}" for w in cluster.config().get("workers") or []]
        if not workers:
            raise AssertionError("a worker-kubelet kill needs a cluster with extra nodes (up --nodes 2 or more)")
        return rng.choice(workers)
    if kind.endswith("-leader") and kind.removesuffix("-leader") in ELECTION_LEASES:
        return leading_process(cluster, ELECTION_LEASES[kind.removesuffix("-leader")])
    return kind


def leading_process(cluster: Cluster, lease: str) -> str:
    """The control-plane process that holds `lease` now. The holder identity is `<process>_<random>`, new at
    each start of the process: a restarted process of the same name, still waiting for a dead holder's Lease
    to expire, is not the leader; wait for a live one to hold it."""
    def holder() -> str | None:
        try:
            identity = lease_holder(cluster, lease)
        except OSError:
            return None  # the API is not answering yet
        process = identity.rsplit("_", 1)[0]
        rec = component_pid(cluster, process) if (cluster.home / "run" / f"{process}.json").exists() else None
        if rec is None or not rec.alive():
            return None
        try:
            argv = Path(f"/proc/{rec.pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            return None
        return process if identity in argv else None
    found: str = wait_for_sync(holder, timeout=60, interval=0.2, message=f"a live holder of the Lease {lease}")
    return found


def kill_component(cluster: Cluster, name: str) -> ProcRecord:
    """SIGKILL the component's recorded process (only that PID, checked against its start time)."""
    rec = component_pid(cluster, name)
    assert rec is not None and rec.signal(signal.SIGKILL), f"{name} is not running: {cluster.state(name)}"
    return rec


def revive(cluster: Cluster, name: str, killed: ProcRecord) -> Callable[[], None]:
    """Start bringing the SIGKILLed `name` back; the function returned waits until it is back and healthy.
    A component is restarted by the supervisor. Without the supervisor its components stop (they get SIGTERM
    when it dies) and nothing restarts them: `pkctl cluster up` starts the supervisor and them again, as an
    admin (or a systemd unit) would."""
    if name != SUPERVISOR:
        return lambda: back_up(cluster, name, killed)
    components = {n: r for n in BY_NAME if (cluster.home / "run" / f"{n}.json").exists()
                  if (r := component_pid(cluster, n)) is not None}
    wait_for_sync(lambda: not any(r.alive() for r in components.values()), timeout=45, interval=0.2,
                  message="the components stopped with their supervisor")
    up = subprocess.Popen([sys.executable, "-m", "pkctl.main", "cluster", "up", "--home", str(cluster.home),
                           "--wait-timeout", "90"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)

    def done() -> None:
        out, _ = up.communicate(timeout=180)
        assert up.returncode == 0, f"cluster up after the supervisor's SIGKILL exited {up.returncode}:\n{out}"
        assert "already running" not in out, out
        sup = cluster.record(SUPERVISOR)
        assert sup is not None and sup != killed and sup.alive(), "no new supervisor"
        for n, rec in components.items():
            back_up(cluster, n, rec)
    return done


def back_up(cluster: Cluster, name: str, killed: ProcRecord, timeout: float = 90) -> None:
    """The supervisor restarted `name` (a new process) and its health check passes."""
    def up() -> bool:
        state = cluster.state(name)
        rec = ProcRecord.from_state(state)
        return rec is not None and rec != killed and rec.alive() and state.get("state") == "Running" and \
            bool(state.get("healthy"))
    wait_for_sync(up, timeout=timeout, interval=0.2, message=f"{name} restarted and healthy")
