"""The pure planner: what must happen to bring one pod's runtime state to its spec (no side effects).

Modelled on Kubernetes' kuberuntime_manager.go computePodActions: a missing or dead sandbox means the whole pod
restarts (kill everything, new sandbox) unless the pod is already finished; init containers run one at a time,
each to success; app containers are (re)started per restartPolicy, subject to CrashLoopBackOff; a container
whose liveness or startup probe failed is killed (and restarted if the policy allows). The agent executes the
returned PodActions; unit tests feed hand-made runtime states.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubelet.runtime.interface import ContainerState

INIT_LABEL = "pkube.io/init"  # runtime container labels written by the agent and read back here
NAME_LABEL = "pkube.io/container"
ATTEMPT_LABEL = "pkube.io/attempt"
POD_UID_LABEL = "pkube.io/pod-uid"


@dataclass
class RuntimeContainer:
    """One runtime container of the pod as the planner and status code see it."""
    id: str
    name: str
    init: bool
    attempt: int
    state: ContainerState
    exit_code: int | None = None
    reason: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    image: str = ""


@dataclass
class PodRuntime:
    sandbox_id: str | None = None        # the newest sandbox of the pod
    sandbox_ready: bool = False
    ip: str = ""
    stale_sandboxes: list[str] = field(default_factory=list)  # older sandboxes of the same pod
    containers: list[RuntimeContainer] = field(default_factory=list)

    def latest(self, name: str, init: bool) -> RuntimeContainer | None:
        """The newest attempt of a container (what its status reports)."""
        mine = [c for c in self.containers if c.name == name and c.init == init]
        return max(mine, key=lambda c: c.attempt) if mine else None

    def previous(self, name: str, init: bool) -> RuntimeContainer | None:
        mine = sorted((c for c in self.containers if c.name == name and c.init == init), key=lambda c: c.attempt)
        return mine[-2] if len(mine) > 1 else None


@dataclass
class PodActions:
    kill_pod: bool = False               # stop every container and the sandbox
    create_sandbox: bool = False
    remove_sandboxes: list[str] = field(default_factory=list)
    start_init: str | None = None        # the next init container to (re)start
    start: list[str] = field(default_factory=list)        # app containers to (re)start
    start_ephemeral: list[str] = field(default_factory=list)  # ephemeral containers to start (once, never again)
    kill: dict[str, str] = field(default_factory=dict)    # running container id -> why
    remove: list[str] = field(default_factory=list)       # dead containers no status needs any more
    backoff: dict[str, float] = field(default_factory=dict)  # container name -> seconds until it may restart

    @property
    def idle(self) -> bool:
        return not (self.kill_pod or self.create_sandbox or self.remove_sandboxes or self.start_init or self.start
                    or self.start_ephemeral or self.kill or self.remove)


def restart_policy(pod: dict[str, Any]) -> str:
    return pod["spec"].get("restartPolicy") or "Always"


def should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def init_progress(pod: dict[str, Any], rt: PodRuntime) -> tuple[bool, str | None, bool]:
    """(all init containers succeeded, the init container to look at next, an init container failed for good)."""
    if any(not c.init for c in rt.containers):
        return True, None, False  # app containers exist: initialisation finished earlier (Kubernetes does the same)
    policy = restart_policy(pod)
    for spec in pod["spec"].get("initContainers") or []:
        last = rt.latest(spec["name"], True)
        if last is None or last.state != ContainerState.EXITED:
            return False, spec["name"], False
        if last.exit_code != 0:
            return False, spec["name"], policy == "Never"
    return True, None, False


def pod_finished(pod: dict[str, Any], rt: PodRuntime) -> bool:
    """No container will ever run again: every app container exited and the policy restarts none of them."""
    done, _, failed = init_progress(pod, rt)
    if failed:
        return True
    if not done:
        return False
    policy = restart_policy(pod)
    if policy == "Always":
        return False
    for spec in pod["spec"]["containers"]:
        last = rt.latest(spec["name"], False)
        if last is None or last.state != ContainerState.EXITED or should_restart(policy, last.exit_code):
            return False
    return True


def next_attempt(pod: dict[str, Any], rt: PodRuntime, name: str, init: bool) -> int:
    """The attempt number (what restartCount reports) of the container about to start.

    The newest attempt the runtime knows, plus one. When the runtime has none although the container ran
    before (its sandbox was recreated, or the node's runtime state was wiped by `cluster down` and `up`), the
    count goes on from the status the API holds, as Kubernetes' kubelet does (it reads the count back from
    the log directory there): restartCount never goes back to 0 for a pod that keeps its identity.
    """
    last = rt.latest(name, init)
    if last is not None:
        return last.attempt + 1
    statuses = (pod.get("status") or {}).get("initContainerStatuses" if init else "containerStatuses") or []
    known = next((s for s in statuses if s.get("name") == name), None)
    if known is None or not known.get("containerID"):
        return 0  # never ran
    return int(known.get("restartCount", 0)) + 1


def backoff_left(c: RuntimeContainer, delay: float, now: datetime) -> float:
    """Seconds until a dead container may be restarted: `delay` after it finished. At most `delay`: a finish time
    after `now` means the wall clock was stepped back since, and must not hold the restart for the step too."""
    if delay <= 0 or c.finished_at is None:
        return 0.0
    return max(0.0, delay - max(0.0, (now - c.finished_at).total_seconds()))


def compute_pod_actions(pod: dict[str, Any], rt: PodRuntime, now: datetime,
                        backoff_delays: dict[str, float] | None = None,
                        probe_kills: dict[str, str] | None = None) -> PodActions:
    """`backoff_delays`: container name -> current CrashLoopBackOff delay (0 or absent: restart at once).
    `probe_kills`: container name -> message, for running containers whose liveness/startup probe failed."""
    delays = backoff_delays or {}
    kills = probe_kills or {}
    actions = PodActions(remove_sandboxes=list(rt.stale_sandboxes))
    policy = restart_policy(pod)
    finished = pod_finished(pod, rt)

    if not rt.sandbox_ready:
        if finished or (policy == "Never" and rt.containers):
            # a finished pod, or a Never pod whose sandbox died under it: nothing may run again
            actions.kill_pod = bool(rt.sandbox_id) and any(c.state == ContainerState.RUNNING for c in rt.containers)
            return actions
        # sandbox lost (or never made): everything starts over in a new one
        actions.kill_pod = rt.sandbox_id is not None
        actions.create_sandbox = True
        actions.remove.extend(c.id for c in rt.containers)
        first_init = next(iter(pod["spec"].get("initContainers") or []), None)
        if first_init is not None:
            actions.start_init = first_init["name"]
        else:
            actions.start = [c["name"] for c in pod["spec"]["containers"]]
        return actions

    _gc_old_attempts(rt, actions)
    done, next_init, init_failed = init_progress(pod, rt)
    if init_failed:
        actions.kill_pod = any(c.state == ContainerState.RUNNING for c in rt.containers)
        return actions
    if not done:
        assert next_init is not None
        last = rt.latest(next_init, True)
        if last is None:
            actions.start_init = next_init
        elif last.state in (ContainerState.CREATED, ContainerState.UNKNOWN):
            actions.kill[last.id] = "not started"  # a create cut short (kubelet crash): do it again
            actions.start_init = next_init
        elif last.state == ContainerState.EXITED:  # failed, and the policy restarts it
            wait = backoff_left(last, delays.get(next_init, 0.0), now)
            if wait > 0:
                actions.backoff[next_init] = wait
            else:
                actions.start_init = next_init
        return actions

    for spec in pod["spec"]["containers"]:
        name = spec["name"]
        last = rt.latest(name, False)
        if last is None:
            actions.start.append(name)
        elif last.state == ContainerState.RUNNING:
            if name in kills:
                actions.kill[last.id] = kills[name]
                if policy != "Never":
                    actions.start.append(name)
        elif last.state in (ContainerState.CREATED, ContainerState.UNKNOWN):
            actions.kill[last.id] = "not started"
            actions.start.append(name)
        elif should_restart(policy, last.exit_code):
            wait = backoff_left(last, delays.get(name, 0.0), now)
            if wait > 0:
                actions.backoff[name] = wait
            else:
                actions.start.append(name)
    if finished:
        actions.kill_pod = True  # nothing will run again: free the sandbox (its IP) now
    else:
        # ephemeral containers (kubectl debug) run once in the running pod (their names are unique in it): not
        # again in a new sandbox, nor after the runtime's state was lost, once the API's status shows they ran
        ran = {s.get("name") for s in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []
               if s.get("containerID")}
        actions.start_ephemeral = [c["name"] for c in pod["spec"].get("ephemeralContainers") or []
                                   if rt.latest(c["name"], False) is None and c["name"] not in ran]
    return actions


def _gc_old_attempts(rt: PodRuntime, actions: PodActions) -> None:
    """Keep the newest two attempts per container: the current one and the one lastState reports."""
    by_name: dict[tuple[str, bool], list[RuntimeContainer]] = {}
    for c in rt.containers:
        by_name.setdefault((c.name, c.init), []).append(c)
    for attempts in by_name.values():
        attempts.sort(key=lambda c: c.attempt)
        actions.remove.extend(c.id for c in attempts[:-2] if c.state == ContainerState.EXITED)
