"""Pod status from (pod, runtime state, probe results): phase, conditions, container statuses, qosClass.

Pure functions, like Kubernetes' kubelet generateAPIPodStatus/getPhase: the agent calls compute_status after
every sync and writes the result only if it differs from what the API server has.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pklib.api.timefmt import format_time, now_rfc3339
from pklib.api.disruption import DISRUPTION_TARGET
from pklib.api.qos import qos_class

from kubelet.plan import PodRuntime, RuntimeContainer, init_progress, restart_policy
from kubelet.runtime.interface import ContainerState

EVICTED_REASON = "Evicted"
TERMINATION_BY_KUBELET = "TerminationByKubelet"   # the DisruptionTarget condition's reason for a kubelet eviction

CONTAINER_ID_SCHEME = "runc://"


@dataclass
class ProbeView:
    """What the probes say about the pod's containers (by name); absent names count as passing."""
    ready: dict[str, bool] = field(default_factory=dict)
    started: dict[str, bool] = field(default_factory=dict)


@dataclass
class StatusInputs:
    host_ip: str
    probes: ProbeView = field(default_factory=ProbeView)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (reason, message): pull/config errors
    backoff: dict[str, float] = field(default_factory=dict)            # name -> seconds of CrashLoopBackOff left
    image_ids: dict[str, str] = field(default_factory=dict)            # image ref -> image id (digest)
    evicted: str | None = None                                         # the eviction message: the pod is Failed


def _time(t: datetime | None) -> str | None:
    return format_time(t) if t is not None else None


def _terminated(c: RuntimeContainer) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": c.exit_code if c.exit_code is not None else 137,
                           "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
                           "startedAt": _time(c.started_at), "finishedAt": _time(c.finished_at),
                           "containerID": CONTAINER_ID_SCHEME + c.id}
    return out


def container_status(spec: dict[str, Any], rt: PodRuntime, init: bool, inputs: StatusInputs,
                     default_waiting: str) -> dict[str, Any]:
    name = spec["name"]
    last = rt.latest(name, init)
    prev = rt.previous(name, init)
    status: dict[str, Any] = {"name": name, "image": spec.get("image", ""),
                              "imageID": inputs.image_ids.get(spec.get("image", ""), ""),
                              "ready": False, "started": False, "restartCount": last.attempt if last else 0,
                              "state": {}, "lastState": {}}
    if last is not None:
        status["containerID"] = CONTAINER_ID_SCHEME + last.id
    if name in inputs.waiting:
        reason, message = inputs.waiting[name]
        status["state"] = {"waiting": {"reason": reason, "message": message}}
        if last is not None and last.state == ContainerState.EXITED:
            status["lastState"] = {"terminated": _terminated(last)}
        return status
    if last is None or last.state in (ContainerState.CREATED, ContainerState.UNKNOWN):
        status["state"] = {"waiting": {"reason": default_waiting}}
    elif last.state == ContainerState.RUNNING:
        started = inputs.probes.started.get(name, True)
        status["state"] = {"running": {"startedAt": _time(last.started_at)}}
        status["started"] = started
        status["ready"] = started and inputs.probes.ready.get(name, True) and not init
        if prev is not None and prev.state == ContainerState.EXITED:
            status["lastState"] = {"terminated": _terminated(prev)}
    elif name in inputs.backoff:
        wait = inputs.backoff[name]
        status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                       f"back-off {int(round(wait))}s restarting failed container={name}"}}
        status["lastState"] = {"terminated": _terminated(last)}
    else:
        status["state"] = {"terminated": _terminated(last)}
        if prev is not None and prev.state == ContainerState.EXITED:
            status["lastState"] = {"terminated": _terminated(prev)}
    return status


def pod_phase(pod: dict[str, Any], rt: PodRuntime, finished: bool) -> str:
    """Kubernetes getPhase over the newest attempt of each app container."""
    done, _, init_failed = init_progress(pod, rt)
    if init_failed:
        return "Failed"
    if not done:
        return "Pending"
    policy = restart_policy(pod)
    running = waiting = succeeded = failed = 0
    for spec in pod["spec"]["containers"]:
        last = rt.latest(spec["name"], False)
        if last is None or last.state in (ContainerState.CREATED, ContainerState.UNKNOWN):
            waiting += 1
        elif last.state == ContainerState.RUNNING:
            running += 1
        elif last.exit_code == 0:
            succeeded += 1
        else:
            failed += 1
    if waiting and not running and not (succeeded or failed):
        return "Pending"
    if running or waiting:
        return "Running"
    if policy == "Always" or not finished:
        return "Running"  # everything exited, but will be restarted
    return "Failed" if failed else "Succeeded"


def _condition(old: dict[str, Any], type_: str, ok: bool, reason: str = "") -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = next((c for c in old.get("conditions") or [] if c.get("type") == type_), None)
    since = prev["lastTransitionTime"] if prev and prev.get("status") == status and prev.get(
        "lastTransitionTime") else now_rfc3339()
    cond: dict[str, Any] = {"type": type_, "status": status, "lastTransitionTime": since}
    if reason and not ok:
        cond["reason"] = reason
    return cond


def compute_status(pod: dict[str, Any], rt: PodRuntime, inputs: StatusInputs, finished: bool) -> dict[str, Any]:
    old = pod.get("status") or {}
    done, _, _ = init_progress(pod, rt)
    inits = [container_status(s, rt, True, inputs, "PodInitializing" if rt.sandbox_ready else "ContainerCreating")
             for s in pod["spec"].get("initContainers") or []]
    for s, st in zip(pod["spec"].get("initContainers") or [], inits):
        # an init container that finished its job counts as ready (what Kubernetes reports)
        last = rt.latest(s["name"], True)
        st["ready"] = bool(last and last.state == ContainerState.EXITED and last.exit_code == 0)
    app_waiting = "ContainerCreating" if done else "PodInitializing"
    apps = [container_status(s, rt, False, inputs, app_waiting) for s in pod["spec"]["containers"]]
    phase = pod_phase(pod, rt, finished)
    containers_ready = all(c["ready"] for c in apps) and phase == "Running"
    gates_ok = all(_gate_true(old, g.get("conditionType", "")) for g in pod["spec"].get("readinessGates") or [])
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            _condition(old, "PodReadyToStartContainers", rt.sandbox_ready),
            _condition(old, "Initialized", done, "ContainersNotInitialized"),
            _condition(old, "Ready", containers_ready and gates_ok, "ContainersNotReady"),
            _condition(old, "ContainersReady", containers_ready, "ContainersNotReady"),
            _condition(old, "PodScheduled", True),
        ],
        "hostIP": inputs.host_ip, "hostIPs": [{"ip": inputs.host_ip}],
        "startTime": old.get("startTime") or now_rfc3339(),
        "containerStatuses": apps,
        "qosClass": qos_class(pod.get("spec") or {}),
    }
    ip = rt.ip if rt.sandbox_ready else old.get("podIP", "")
    if ip:
        status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
    if inits:
        status["initContainerStatuses"] = inits
    ephemeral = [container_status(s, rt, False, inputs, "ContainerCreating")
                 for s in pod["spec"].get("ephemeralContainers") or []]
    if ephemeral:
        status["ephemeralContainerStatuses"] = ephemeral
    if inputs.evicted is not None:
        status.update(phase="Failed", reason=EVICTED_REASON, message=inputs.evicted)
        disruption = _condition(old, DISRUPTION_TARGET, True)
        disruption.update(reason=TERMINATION_BY_KUBELET, message=inputs.evicted)
        status["conditions"].append(disruption)
    # conditions set by others (readiness gates) are kept
    ours = {c["type"] for c in status["conditions"]}
    status["conditions"] += [c for c in old.get("conditions") or [] if c.get("type") not in ours]
    return status


def _gate_true(old: dict[str, Any], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in old.get("conditions") or [])


def same_status(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Nothing the kubelet reports differs (fields others own, like nominatedNodeName, do not count)."""
    return {k: v for k, v in old.items() if k in new or k in OWNED_STATUS} == new


OWNED_STATUS = ("phase", "conditions", "containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses",
                "podIP", "podIPs", "hostIP",
          "hostIPs", "startTime", "qosClass")

