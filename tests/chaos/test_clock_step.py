"""Chaos: the machine's wall clock steps forward (+1 h, then +1 day) and back (issue 17).

The machine's clock is shared by everyone on it, so the test does not step it: every process of its cluster runs
under libfaketime with one offset file (tests/support/faketime.py), which the test rewrites; as in a real step
only the wall clock moves, monotonic time does not. etcd (Go) does not see the fake clock (it reads the vDSO);
its leases count monotonic time anyway.

What must hold through each step, as in Kubernetes: the node stays Ready (its controller-manager times Lease
renewals by its own monotonic clock, never by comparing wall-clock timestamps), no pod is evicted or restarted,
the node's Lease keeps being renewed (on the new time), leader Leases keep their holders, writes keep
succeeding, the Service keeps answering and the Deployment can be rolled out.

Observed, and what Kubernetes does too: objects written meanwhile carry the stepped time (creationTimestamp,
renewTime, lastTransitionTime); after the step back, those from the day ahead are in the future, and ages print
as `<invalid>` (kubectl's HumanDuration); wall-clock windows (a bound token's expiry, a taint's timeAdded plus
tolerationSeconds, a Deployment's progressDeadlineSeconds, minReadySeconds) pass early on a forward step.
With PKUBE_CLOCK_STEP_CONTROL_PLANES=3 the cluster has 3 control planes and the leader Leases are checked too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from tests.chaos.harness import Api, ClientLoop
from tests.chaos.scenario import APPS, answers, configmap, create, web_docs
from tests.e2e.helpers import Cluster, kubectl, local_cluster, make_namespace, run
from tests.support import faketime
from tests.support.faketime import FakeClock
from tests.util import unique, wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not faketime.available(), reason="needs libfaketime (Debian libfaketime)"),
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler",
                                                                  "kubelet", "proxy")),
                       reason="needs every component of the local cluster"),
]

GRACE = 8  # --node-monitor-grace-period: the kubelet renews its Lease every GRACE/4 = 2 s
# (offset from the real time, roll the Deployment out on it)
STEPS = ((3600, True), (86400, False), (0, True))
REPLICAS = 2
CONTROL_PLANES = os.environ.get("PKUBE_CLOCK_STEP_CONTROL_PLANES", "1")
SLACK = 30.0  # seconds a stamped time may differ from the expected one (a loaded machine, second precision)

STEADY: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "steady"}, "spec": {
    "terminationGracePeriodSeconds": 1,
    "containers": [{"name": "main", "image": "pkube.local/busybox:latest",
                    "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                    # probes run on the kubelet's monotonic clock: a step must neither stop nor fail them
                    # (a loaded machine may make `runc exec` slow: not what this test is about)
                    "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 2, "timeoutSeconds": 10},
                    "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 2, "timeoutSeconds": 10}}]}}


def wall_of(process_env: dict[str, str]) -> tuple[float, float, float]:
    """(time.time(), datetime.now() as a timestamp, time.monotonic()) in a Python started with this env."""
    code = ("import datetime, json, time; time.sleep(0.01); print(json.dumps([time.time(), "
            "datetime.datetime.now(datetime.timezone.utc).timestamp(), time.monotonic()]))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **process_env}, capture_output=True,
                         text=True, check=True, timeout=30)
    wall, dt, mono = json.loads(out.stdout)
    return wall, dt, mono


def test_fake_clock_moves_wall_time_only_and_live(tmp_path: Path) -> None:
    with FakeClock(tmp_path / "offset") as clock:
        check_fake_clock(clock)
    assert not Path("/dev/shm", clock.shared[1][1:]).exists(), "libfaketime's shared memory left behind"


def check_fake_clock(clock: FakeClock) -> None:
    for offset in (3600, -86400, 0):
        clock.step(offset)
        t0, m0 = time.time(), time.monotonic()
        wall, dt, mono = wall_of(clock.env())
        t1, m1 = time.time(), time.monotonic()
        assert t0 + offset - 1 <= wall <= t1 + offset + 1 and abs(dt - wall) < 1, (offset, t0, wall, dt)
        assert m0 <= mono <= m1, "monotonic time must not move with the wall clock"
    # a running process follows a step within the cache period
    reader = subprocess.Popen([sys.executable, "-c", "import sys, time\nfor _ in sys.stdin: print(time.time(), "
                               "flush=True)"], env={**os.environ, **clock.env()}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert reader.stdin is not None and reader.stdout is not None
    try:
        def offset_seen() -> float:
            reader.stdin.write("\n")  # type: ignore[union-attr]
            reader.stdin.flush()  # type: ignore[union-attr]
            return float(reader.stdout.readline()) - time.time()  # type: ignore[union-attr]
        assert abs(offset_seen()) < 1
        clock.step(3600)
        wait_for_sync(lambda: abs(offset_seen() - 3600) < 1, timeout=faketime.CACHE_SECONDS + 5, interval=0.1,
                      message="the running process on the stepped clock")
    finally:
        reader.stdin.close()
        reader.wait(10)


SPAWNER = """
import asyncio, sys, threading, time
from pklib.component import run_event_loop

def busy():  # threads that wait on condition variables (timed GIL waits) and read the clock, as a component's do
    while True:
        time.sleep(0)
        time.time()

for _ in range(3):
    threading.Thread(target=busy, daemon=True).start()

async def spawn(n):
    for _ in range(n):
        p = await asyncio.create_subprocess_exec("true")
        await p.wait()
    return n

print(run_event_loop(spawn(int(sys.argv[1]))), flush=True)
"""


def test_a_component_under_the_fake_clock_keeps_spawning_processes(tmp_path: Path) -> None:
    """A kubelet under libfaketime once hung for ever in a container start: uvloop's forked child deadlocked on
    libfaketime's lock before exec (see pklib/component.py run_event_loop). The clock's environment runs the
    components on the standard loop; a busy multi-threaded process must spawn 300 children."""
    with FakeClock(tmp_path / "offset") as clock:
        out = subprocess.run([sys.executable, "-c", SPAWNER, "300"], env={**os.environ, **clock.env()},
                             capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert out.returncode == 0 and out.stdout.strip() == "300", out.stderr[-2000:]


@pytest.fixture(scope="module")
def clock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeClock]:
    with FakeClock(tmp_path_factory.mktemp("clock") / "offset") as c:
        yield c


@pytest.fixture(scope="module")
def stepped(clock: FakeClock) -> Iterator[Cluster]:
    extra = ["--control-planes", CONTROL_PLANES] if CONTROL_PLANES != "1" else []
    with local_cluster("--node-monitor-grace-period", str(GRACE), *extra, env=clock.env()) as c:
        try:
            yield c
        finally:
            clock.step(0)


class NodeWatch:
    """Polls the nodes (independent of the watch machinery under test) and keeps every Ready status that was
    not True, with the offset in force."""

    def __init__(self, api: Api, clock: FakeClock):
        self.api, self.clock = api, clock
        self.not_ready: list[tuple[int, str, str]] = []  # (offset, node, status)
        self.polls = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="node-watch")

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            got = self.api.call("GET", "/api/v1/nodes", timeout=5)
            if got is None or got[0] != 200:
                continue
            self.polls += 1
            for n in got[1]["items"]:
                ready = next((c["status"] for c in n["status"].get("conditions", []) if c["type"] == "Ready"), None)
                if ready != "True":
                    self.not_ready.append((self.clock.offset, n["metadata"]["name"], str(ready)))

    def __enter__(self) -> "NodeWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rolled_out(api: Api, ns: str) -> bool:
    got = api.call("GET", f"{APPS}/{ns}/deployments/web")
    pods = api.call("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb")
    if got is None or pods is None or got[0] != 200 or pods[0] != 200:
        return False
    d, st = got[1], got[1].get("status", {})
    return (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and st.get("updatedReplicas") == st.get("replicas") == st.get("readyReplicas")
            == st.get("availableReplicas") == REPLICAS and len(pods[1]["items"]) == REPLICAS)


def leaders(api: Api) -> dict[str, tuple[str, int]]:
    """Leader Lease -> (holder, transitions): kube-controller-manager, kube-scheduler (several control planes)."""
    items = api.must("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")["items"]
    return {x["metadata"]["name"]: (x["spec"].get("holderIdentity"), x["spec"].get("leaseTransitions", 0))
            for x in items if x["spec"].get("holderIdentity")}


def restarts(api: Api, ns: str) -> dict[str, tuple[str, str, int]]:
    """pod name -> (uid, containerID, restartCount)."""
    out = {}
    for p in api.must("GET", f"/api/v1/namespaces/{ns}/pods")["items"]:
        (c,) = p["status"]["containerStatuses"]
        out[p["metadata"]["name"]] = (p["metadata"]["uid"], c.get("containerID", ""), c["restartCount"])
    return out


def test_clock_steps_forward_and_back_leave_the_cluster_healthy(stepped: Cluster, clock: FakeClock) -> None:
    c, api = stepped, Api(stepped)
    ns = make_namespace(c)
    for doc in [*web_docs(REPLICAS), STEADY]:
        create(api, ns, doc)
    wait_for_sync(lambda: rolled_out(api, ns), timeout=90, interval=0.5, message="web rolled out")
    node_port = api.must("GET", f"/api/v1/namespaces/{ns}/services/web")["spec"]["ports"][0]["nodePort"]
    cluster_ip = api.must("GET", f"/api/v1/namespaces/{ns}/services/web-internal")["spec"]["clusterIP"]
    urls = [f"http://127.0.0.1:{node_port}/", f"http://{cluster_ip}/"]
    wait_for_sync(lambda: all(answers(u) for u in urls), timeout=30, interval=0.2, message="the Service answers")
    wait_for_sync(lambda: restarts(api, ns).get("steady", ("", "", 0))[1], timeout=60, interval=0.5,
                  message="the steady pod running")
    steady = restarts(api, ns)["steady"]
    node = c.config()["node_name"]
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
    led = leaders(api)
    written: set[str] = set()
    client = ClientLoop(urls).start()
    try:
        with NodeWatch(api, clock) as nodes:
            for offset, roll in STEPS:
                clock.step(offset)
                client.label = f"{offset:+d}s"
                stepped_at = time.time()

                # the control plane is on the new time: a write is accepted and stamped with it
                def on_new_time() -> bool:
                    name = unique("cm")
                    code, obj = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", configmap(name))
                    assert code == 201, (offset, code, obj)
                    written.add(name)
                    return abs(stamp(obj["metadata"]["creationTimestamp"]) - (time.time() + offset)) < SLACK
                wait_for_sync(on_new_time, timeout=30, interval=1, message=f"the apiserver on {offset:+d}s")

                # the kubelet renews its Lease on the new time, again and again
                renewals: set[str] = set()

                def renewed() -> bool:
                    spec = api.must("GET", lease_path)["spec"]
                    if abs(stamp(spec["renewTime"]) - (time.time() + offset)) < SLACK:
                        renewals.add(spec["renewTime"])
                    return len(renewals) >= 2
                wait_for_sync(renewed, timeout=4 * GRACE, interval=0.5,
                              message=f"the node Lease renewed on {offset:+d}s")
                # `cluster status` on the stepped machine: every component healthy
                status = run("cluster", "status", "--home", str(c.home), check=False,
                             env={**os.environ, **clock.env()})
                assert status.returncode == 0, status.stdout + status.stderr

                if roll:  # a rolling update completes
                    api.must("PATCH", f"{APPS}/{ns}/deployments/web",
                             {"spec": {"template": {"metadata": {"annotations": {"clock/offset": str(offset)}}}}},
                             content_type="application/merge-patch+json")
                    wait_for_sync(lambda: rolled_out(api, ns), timeout=90, interval=0.5,
                                  message=f"the rollout on {offset:+d}s")
                assert leaders(api) == led, f"leader Leases changed hands on {offset:+d}s"
                print(f"{offset:+d}s: done {time.time() - stepped_at:.1f}s after the step")
            assert nodes.polls > 10 and nodes.not_ready == [], nodes.not_ready
    finally:
        client.close()

    print("requests per offset: ok", dict(client.ok), "failed", dict(client.failed), client.errors[:5])
    assert sum(client.failed.values()) == 0, client.errors[:10]
    now = restarts(api, ns)
    assert now["steady"] == steady, "the steady pod was restarted or replaced"
    assert all(r[2] == 0 for r in now.values()), now
    listed = {x["metadata"]["name"] for x in api.must("GET", f"/api/v1/namespaces/{ns}/configmaps")["items"]}
    assert written <= listed, written - listed
    events = [(e["involvedObject"]["name"], e["reason"], e["message"])
              for ns_ in (ns, "default") for e in api.must("GET", f"/api/v1/namespaces/{ns_}/events")["items"]]
    assert not [e for e in events if e[1] in ("NodeNotReady", "TaintManagerEviction", "Evicted", "BackOff",
                                              "FailedScheduling") or e[0] == "steady" and e[1] == "Unhealthy"], events

    # back on the real time, what was written a day ahead is in the future: kubectl shows its age as <invalid>
    table = kubectl(c, "get", "configmaps", "-n", ns, "--no-headers")
    assert table.returncode == 0, table.stderr
    assert "<invalid>" in table.stdout, table.stdout
