"""The kubelet's pure planner, status and environment logic (no containers)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from kubelet.plan import PodRuntime, RuntimeContainer, compute_pod_actions, next_attempt, pod_finished
from kubelet.runtime.interface import ContainerState as S
from kubelet.status import StatusInputs, compute_status

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def spec_pod(*names: str, inits: tuple[str, ...] = (), policy: str = "Always") -> dict:
    return {"metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": n, "image": "i"} for n in names],
                     "initContainers": [{"name": n, "image": "i"} for n in inits]}}


def c(name: str, state: S, attempt: int = 0, code: int | None = None, init: bool = False, ago: float = 1.0
      ) -> RuntimeContainer:
    finished = NOW - timedelta(seconds=ago) if state == S.EXITED else None
    return RuntimeContainer(id=f"{name}-{attempt}", name=name, init=init, attempt=attempt, state=state,
                            exit_code=code, finished_at=finished, started_at=NOW - timedelta(seconds=ago + 1))


def ready(*containers: RuntimeContainer) -> PodRuntime:
    return PodRuntime(sandbox_id="sb", sandbox_ready=True, ip="10.0.0.2", containers=list(containers))


def test_new_pod_gets_a_sandbox_and_its_first_init_container_only() -> None:
    a = compute_pod_actions(spec_pod("app", inits=("i1", "i2")), PodRuntime(), NOW)
    assert a.create_sandbox and a.start_init == "i1" and a.start == [] and not a.kill_pod


def test_new_pod_without_inits_starts_all_app_containers_together() -> None:
    a = compute_pod_actions(spec_pod("a", "b"), PodRuntime(), NOW)
    assert a.create_sandbox and a.start == ["a", "b"]


def test_init_containers_run_one_after_the_other() -> None:
    pod = spec_pod("app", inits=("i1", "i2"))
    assert compute_pod_actions(pod, ready(c("i1", S.RUNNING, init=True)), NOW).idle
    a = compute_pod_actions(pod, ready(c("i1", S.EXITED, code=0, init=True)), NOW)
    assert a.start_init == "i2" and a.start == []
    a = compute_pod_actions(pod, ready(c("i1", S.EXITED, code=0, init=True), c("i2", S.EXITED, code=0, init=True)), NOW)
    assert a.start == ["app"] and a.start_init is None


def test_failed_init_container_with_never_fails_the_pod() -> None:
    pod = spec_pod("app", inits=("i1",), policy="Never")
    rt = ready(c("i1", S.EXITED, code=1, init=True))
    a = compute_pod_actions(pod, rt, NOW)
    assert a.start == [] and a.start_init is None and pod_finished(pod, rt)


def test_failed_init_container_is_retried_after_backoff() -> None:
    pod = spec_pod("app", inits=("i1",), policy="OnFailure")
    rt = ready(c("i1", S.EXITED, code=1, init=True, ago=2))
    a = compute_pod_actions(pod, rt, NOW, {"i1": 10})
    assert a.start_init is None and a.backoff["i1"] == 8
    assert compute_pod_actions(pod, rt, NOW, {"i1": 1}).start_init == "i1"


def test_restart_policies() -> None:
    for policy, code, restarted in (("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False),
                                    ("OnFailure", 2, True), ("Never", 1, False), ("Never", 0, False)):
        a = compute_pod_actions(spec_pod("a", policy=policy), ready(c("a", S.EXITED, code=code, ago=100)), NOW,
                                {"a": 10})
        assert (a.start == ["a"]) is restarted, (policy, code)


def test_crashloop_backoff_holds_the_restart() -> None:
    a = compute_pod_actions(spec_pod("a"), ready(c("a", S.EXITED, code=1, ago=3)), NOW, {"a": 20})
    assert a.start == [] and a.backoff == {"a": 17}


def test_a_clock_stepped_back_does_not_stretch_the_backoff() -> None:
    # the container finished "an hour from now": the wall clock went back an hour since
    a = compute_pod_actions(spec_pod("a"), ready(c("a", S.EXITED, code=1, ago=-3600)), NOW, {"a": 20})
    assert a.start == [] and a.backoff == {"a": 20}


def test_liveness_failure_kills_and_restarts_unless_never() -> None:
    rt = ready(c("a", S.RUNNING))
    a = compute_pod_actions(spec_pod("a"), rt, NOW, probe_kills={"a": "liveness"})
    assert a.kill == {"a-0": "liveness"} and a.start == ["a"]
    a = compute_pod_actions(spec_pod("a", policy="Never"), rt, NOW, probe_kills={"a": "liveness"})
    assert a.kill == {"a-0": "liveness"} and a.start == []


def test_dead_sandbox_restarts_the_pod_but_not_a_finished_one() -> None:
    rt = PodRuntime(sandbox_id="old", sandbox_ready=False, containers=[c("a", S.RUNNING)])
    a = compute_pod_actions(spec_pod("a"), rt, NOW)
    assert a.kill_pod and a.create_sandbox and a.start == ["a"]
    done = PodRuntime(sandbox_id="old", sandbox_ready=False, containers=[c("a", S.EXITED, code=0)])
    assert compute_pod_actions(spec_pod("a", policy="OnFailure"), done, NOW).idle


def test_restart_count_goes_on_across_a_new_sandbox_or_a_wiped_runtime() -> None:
    pod = spec_pod("a", inits=("i",))
    assert next_attempt(pod, ready(), "a", False) == 0  # never ran
    assert next_attempt(pod, ready(c("a", S.EXITED, attempt=3, code=1)), "a", False) == 4
    # the runtime lost every container (new sandbox, node state wiped): the API's status tells how many ran
    pod["status"] = {"containerStatuses": [{"name": "a", "restartCount": 3, "containerID": "runc://x"}],
                     "initContainerStatuses": [{"name": "i", "restartCount": 0, "containerID": "runc://y"}]}
    assert next_attempt(pod, PodRuntime(sandbox_id="new", sandbox_ready=True), "a", False) == 4
    assert next_attempt(pod, PodRuntime(sandbox_id="new", sandbox_ready=True), "i", True) == 1
    # a status the kubelet wrote before the first container was created (waiting, no containerID)
    pod["status"]["containerStatuses"] = [{"name": "a", "restartCount": 0, "state": {"waiting": {}}}]
    assert next_attempt(pod, ready(), "a", False) == 0


def test_finished_pod_releases_its_sandbox_and_old_attempts_are_collected() -> None:
    a = compute_pod_actions(spec_pod("a", policy="Never"), ready(c("a", S.EXITED, code=0)), NOW)
    assert a.kill_pod and not a.create_sandbox and a.start == []
    rt = ready(c("a", S.EXITED, 0, 1), c("a", S.EXITED, 1, 1), c("a", S.RUNNING, 2))
    assert compute_pod_actions(spec_pod("a"), rt, NOW).remove == ["a-0"]


def test_a_container_left_created_by_a_crash_is_recreated() -> None:
    a = compute_pod_actions(spec_pod("a"), ready(c("a", S.CREATED)), NOW)
    assert a.kill == {"a-0": "not started"} and a.start == ["a"]


def status_of(pod: dict, rt: PodRuntime, **kw) -> dict:
    return compute_status(pod, rt, StatusInputs(host_ip="192.0.2.1", **kw), pod_finished(pod, rt))


def test_status_phases_and_reasons() -> None:
    st = status_of(spec_pod("a", "b"), ready(c("a", S.RUNNING)))
    assert st["phase"] == "Running"
    cs = {s["name"]: s for s in st["containerStatuses"]}
    assert cs["a"]["ready"] and cs["b"]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    conds = {x["type"]: x["status"] for x in st["conditions"]}
    assert conds["Ready"] == "False" and conds["Initialized"] == "True" and st["podIP"] == "10.0.0.2"
    st = status_of(spec_pod("a", policy="Never"), ready(c("a", S.EXITED, code=2)))
    assert st["phase"] == "Failed"
    assert st["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2
    st = status_of(spec_pod("a", policy="OnFailure"), ready(c("a", S.EXITED, code=0)))
    assert st["phase"] == "Succeeded"
    st = status_of(spec_pod("a"), ready(c("a", S.EXITED, 0, 1), c("a", S.EXITED, 1, 1)), backoff={"a": 5})
    a = st["containerStatuses"][0]
    assert a["state"]["waiting"]["reason"] == "CrashLoopBackOff" and a["restartCount"] == 1
    assert a["lastState"]["terminated"]["containerID"] == "runc://a-1"


def test_pending_while_initialising() -> None:
    st = status_of(spec_pod("app", inits=("i",)), ready(c("i", S.RUNNING, init=True)))
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


def test_readiness_and_startup_results_drive_ready() -> None:
    from kubelet.status import ProbeView
    st = status_of(spec_pod("a"), ready(c("a", S.RUNNING)), probes=ProbeView(ready={"a": False}))
    assert not st["containerStatuses"][0]["ready"]
    st = status_of(spec_pod("a"), ready(c("a", S.RUNNING)), probes=ProbeView(started={"a": False}))
    assert st["containerStatuses"][0]["started"] is False and not st["containerStatuses"][0]["ready"]


def test_ephemeral_containers_start_once_in_the_running_pod_and_report_their_own_statuses() -> None:
    pod = spec_pod("app")
    pod["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "i"}]
    assert compute_pod_actions(pod, ready(c("app", S.RUNNING)), NOW).start_ephemeral == ["dbg"]
    # never restarted, whatever the pod's restartPolicy; the app container is left alone
    done = ready(c("app", S.RUNNING), c("dbg", S.EXITED, code=1))
    assert compute_pod_actions(pod, done, NOW).idle
    status = status_of(pod, done)
    assert [s["name"] for s in status["containerStatuses"]] == ["app"] and status["phase"] == "Running"
    dbg = status["ephemeralContainerStatuses"][0]
    assert dbg["name"] == "dbg" and dbg["state"]["terminated"]["exitCode"] == 1
    # once the API's status shows it ran, not again (a new sandbox, a wiped runtime state)
    pod["status"] = {"ephemeralContainerStatuses": [dbg]}
    assert compute_pod_actions(pod, ready(c("app", S.RUNNING)), NOW).idle
    # a pod that will never run again starts none
    del pod["status"]
    pod["spec"]["restartPolicy"] = "Never"
    assert compute_pod_actions(pod, ready(c("app", S.EXITED, code=0)), NOW).start_ephemeral == []
