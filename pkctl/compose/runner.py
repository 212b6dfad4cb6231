"""What `pkctl compose up/down/ps/logs` do against the API server (the objects come from convert.py)."""
from __future__ import annotations

import asyncio
import copy
import sys
import time
from typing import Any, Callable

from pklib.client import Client
from pklib.errors import ApiError, is_already_exists, is_not_found
from pklib.resources import DEPLOYMENTS, NAMESPACES, NETWORKPOLICIES, PODS, PVCS, SERVICES, Resource, for_kind

from ..errors import CommandError
from ..printers import docker_ports
from ..commands.logs import stream_logs
from .convert import NETWORK_LABEL, PROJECT_LABEL, SERVICE_LABEL, Plan
from .model import Project

Obj = dict[str, Any]
Say = Callable[[str], None]
POLL = 0.25


def _resource(obj: Obj) -> Resource:
    res = for_kind(obj["apiVersion"], obj["kind"])
    assert res is not None, obj["kind"]
    return res


def _policy_text(policy: Obj) -> str:
    """How `up`/`down` name a policy: as Compose names the network (<project>_<net>), or the published ports'."""
    meta = policy["metadata"]
    net = (meta.get("labels") or {}).get(NETWORK_LABEL)
    return f"Network {meta['namespace']}_{net}" if net else f"Network policy {meta['name']}"


async def apply_policies(c: Client, project: str, policies: list[Obj], say: Say) -> None:
    """The plan's NetworkPolicies, and away with the project's others (a network or published port it lost)."""
    try:
        for policy in policies:
            say(f"{_policy_text(policy)}  {await apply(c, policy)}")
        await remove_policies(c, project, say, keep=frozenset(p["metadata"]["name"] for p in policies))
    except ApiError as e:
        if not is_not_found(e):
            raise
        # this API server does not serve the kind: the names resolve, the networks just do not isolate
        print("warning: the cluster does not serve networking.k8s.io/v1 NetworkPolicy: the project's networks "
              "are not isolated from each other", file=sys.stderr)


async def remove_policies(c: Client, project: str, say: Say, keep: frozenset[str] = frozenset()) -> None:
    for policy in (await c.list(NETWORKPOLICIES, project, label_selector=_selector(project))).get("items") or []:
        if policy["metadata"]["name"] in keep:
            continue
        try:
            await c.delete(NETWORKPOLICIES, policy["metadata"]["name"], project)
        except ApiError as e:
            if not is_not_found(e):
                raise
        say(f"{_policy_text(policy)}  Removed")


async def _exists(c: Client, res: Resource, name: str, ns: str | None) -> Obj | None:
    try:
        return await c.get(res, name, ns)
    except ApiError as e:
        if is_not_found(e):
            return None
        raise


async def apply(c: Client, obj: Obj) -> str:
    """Create the object, or bring an existing one to it; "Created", "Updated" or "Running" (unchanged)."""
    res, meta = _resource(obj), obj["metadata"]
    ns = meta.get("namespace") if res.namespaced else None
    try:
        await c.create(res, obj, ns)
        return "Created"
    except ApiError as e:
        if not is_already_exists(e):
            raise
    current = await c.get(res, meta["name"], ns)
    if res == PVCS:  # a claim keeps what it was made with (its data is the point)
        return "Exists"
    if res == PODS:  # a pod's spec is (mostly) immutable: replace it when it differs
        if _pod_spec_matches(current, obj):
            return "Running"
        await c.delete(res, meta["name"], ns, grace_period_seconds=0)
        await _gone(c, res, meta["name"], ns, 60)
        await c.create(res, obj, ns)
        return "Recreated"
    body = copy.deepcopy(current)
    body["metadata"]["labels"] = {**(current["metadata"].get("labels") or {}), **(meta.get("labels") or {})}
    if "spec" in obj:
        spec = copy.deepcopy(obj["spec"])
        if res == SERVICES:  # allocated by the server; keep them
            for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if key in current.get("spec", {}) and key not in spec:
                    spec[key] = current["spec"][key]
        body["spec"] = {**current.get("spec", {}), **spec}
    if body == current:
        return "Running"
    await c.update(res, body)
    return "Updated"


def _pod_spec_matches(current: Obj, want: Obj) -> bool:
    have = current.get("spec") or {}
    return all(have.get(k) == v for k, v in want["spec"].items() if k != "containers") and \
        [c.get("image") for c in have.get("containers") or []] == [c["image"] for c in want["spec"]["containers"]]


async def _gone(c: Client, res: Resource, name: str, ns: str | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await _exists(c, res, name, ns) is not None:
        if time.monotonic() > deadline:
            raise CommandError(f"timed out waiting for {res.kind.lower()} {name} to be deleted")
        await asyncio.sleep(POLL)


def _selector(project: str, service: str | None = None) -> str:
    return f"{PROJECT_LABEL}={project}" + (f",{SERVICE_LABEL}={service}" if service else "")


async def service_pods(c: Client, project: str, service: str | None = None) -> list[Obj]:
    pods = await c.list(PODS, project, label_selector=_selector(project, service))
    return sorted(pods.get("items") or [], key=lambda p: (p["metadata"].get("labels", {}).get(SERVICE_LABEL, ""),
                                                          p["metadata"].get("creationTimestamp", ""),
                                                          p["metadata"]["name"]))


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _started(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Running", "Succeeded")


def _failure(pod: Obj) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                                     "CreateContainerError", "CreateContainerConfigError", "CrashLoopBackOff"):
            return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    return None


async def wait_service(c: Client, project: str, service: str, replicas: int, condition: str,
                       timeout: float) -> None:
    """Until the service's pods are started, ready (service_healthy) or completed (service_completed_successfully)."""
    started = time.monotonic()
    deadline = started + timeout
    check = {"service_started": _started, "service_healthy": _ready,
             "service_completed_successfully": lambda p: (p.get("status") or {}).get("phase") == "Succeeded"}[condition]
    while True:
        pods = [p for p in await service_pods(c, project, service) if not p["metadata"].get("deletionTimestamp")]
        if len([p for p in pods if check(p)]) >= replicas:
            return
        for p in pods:
            if (p.get("status") or {}).get("phase") == "Failed":
                raise CommandError(f"service {service!r} failed (pod {p['metadata']['name']})")
            # Give a failing pod a few seconds: a first pull or start may fail and then succeed.
            if (why := _failure(p)) is not None and time.monotonic() > started + 5:
                raise CommandError(f"service {service!r}: {why}")
        if time.monotonic() > deadline:
            what = {"service_started": "start", "service_healthy": "be healthy",
                    "service_completed_successfully": "complete"}[condition]
            raise CommandError(f"timed out after {timeout:.0f}s waiting for service {service!r} to {what}")
        await asyncio.sleep(POLL)


async def orphans(c: Client, project: Project, names: set[str] | None = None) -> list[tuple[Resource, str]]:
    """Objects of the project whose service is no longer in the file (Compose's "orphan containers"), and
    Services no longer in `names` (an alias the file dropped)."""
    out = []
    for res in (DEPLOYMENTS, PODS, SERVICES):
        for obj in (await c.list(res, project.name, label_selector=_selector(project.name))).get("items") or []:
            service = obj["metadata"].get("labels", {}).get(SERVICE_LABEL, "")
            dropped_name = res == SERVICES and names is not None and obj["metadata"]["name"] not in names
            if (service not in project.services or dropped_name) and \
                    not (res == PODS and obj["metadata"].get("ownerReferences")):
                out.append((res, obj["metadata"]["name"]))
    return out


async def up(c: Client, project: Project, plan: Plan, timeout: float, say: Say, remove_orphans: bool = False) -> None:
    ns = project.name
    current_ns = await _exists(c, NAMESPACES, ns, None)
    if current_ns is not None and current_ns.get("status", {}).get("phase") == "Terminating":
        say(f"Namespace {ns}  Waiting for the previous one to be deleted")
        await _gone(c, NAMESPACES, ns, None, timeout)
    say(f"Namespace {ns}  {await apply(c, plan.namespace)}")
    await apply_policies(c, ns, plan.policies, say)
    for pvc in plan.volumes:
        state = await apply(c, pvc)
        say(f"Volume {pvc['metadata']['name']}  {'Created' if state == 'Created' else 'Exists'}")
    for name in plan.order:
        svc = project.services[name]
        for dep, condition in svc.depends_on.items():
            if condition != "service_started":
                say(f"Service {dep}  Waiting ({condition})")
            await wait_service(c, ns, dep, 1, condition, timeout)
        for obj in plan.services[name]:
            state = await apply(c, obj)
            if obj["kind"] != "Service":
                say(f"Service {name}  {state}")
    for name in plan.order:
        svc = project.services[name]
        await wait_service(c, ns, name, max(svc.replicas, 0), "service_started", timeout)
        say(f"Service {name}  Started")
    left = await orphans(c, project, {o["metadata"]["name"] for objs in plan.services.values() for o in objs
                                      if o["kind"] == "Service"})
    if left and not remove_orphans:
        print(f"warning: found orphan objects ({', '.join(f'{r.kind.lower()}/{n}' for r, n in left)}) of services "
              "no longer in the file: `up --remove-orphans` removes them", file=sys.stderr)
    for res, name in left if remove_orphans else ():
        try:
            await c.delete(res, name, ns, propagation_policy="Background")
        except ApiError as e:
            if not is_not_found(e):
                raise
        say(f"{res.kind} {name}  Removed (orphan)")


async def down(c: Client, project: str, volumes: bool, timeout: float, say: Say) -> None:
    if await _exists(c, NAMESPACES, project, None) is None:
        say(f"Nothing to remove: project {project!r} is not running")
        return
    sel = _selector(project)
    for res in (DEPLOYMENTS, PODS, SERVICES):
        for obj in (await c.list(res, project, label_selector=sel)).get("items") or []:
            name = obj["metadata"]["name"]
            if res == PODS and obj["metadata"].get("ownerReferences"):
                continue  # its Deployment's ReplicaSet removes it
            try:
                await c.delete(res, name, project, propagation_policy="Background")
            except ApiError as e:
                if not is_not_found(e):
                    raise
            if res != PODS:
                say(f"{'Service' if res == DEPLOYMENTS else 'Endpoint'} {name}  Removed")
    deadline = time.monotonic() + timeout
    while await service_pods(c, project):  # their host ports are free once they are gone
        if time.monotonic() > deadline:
            raise CommandError(f"timed out waiting for the pods of project {project!r} to stop")
        await asyncio.sleep(POLL)
    try:
        await remove_policies(c, project, say)
    except ApiError as e:
        if not is_not_found(e):
            raise  # else not served here
    claims = (await c.list(PVCS, project, label_selector=sel)).get("items") or []
    if claims and not volumes:
        for claim in claims:
            say(f"Volume {claim['metadata']['name']}  Kept (down -v removes it)")
        return
    await c.delete(NAMESPACES, project)
    for claim in claims:
        say(f"Volume {claim['metadata']['name']}  Removed")
    await _gone(c, NAMESPACES, project, None, timeout)
    say(f"Namespace {project}  Removed")


def port_text(pod: Obj) -> str:
    return docker_ports((pod.get("spec") or {}).get("containers") or [])


def status_text(pod: Obj) -> str:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp"):
        return "removing"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "terminated" in state:
            return f"exited ({state['terminated'].get('exitCode', 0)})"
        if "waiting" in state:
            return f"waiting ({state['waiting'].get('reason', '')})"
        if "running" in state:
            probe = any(c.get("readinessProbe") for c in pod["spec"].get("containers") or [])
            return "running" + ((" (healthy)" if _ready(pod) else " (starting)") if probe else "")
    return str(status.get("phase") or "pending").lower()


async def ps(c: Client, project: str) -> list[list[str]]:
    rows = [["NAME", "IMAGE", "SERVICE", "STATUS", "PORTS"]]
    for pod in await service_pods(c, project):
        rows.append([pod["metadata"]["name"], pod["spec"]["containers"][0].get("image", ""),
                     pod["metadata"].get("labels", {}).get(SERVICE_LABEL, ""), status_text(pod), port_text(pod)])
    return rows


async def logs(c: Client, project: str, services: list[str], follow: bool) -> None:
    pods = [p for p in await service_pods(c, project)
            if not services or p["metadata"].get("labels", {}).get(SERVICE_LABEL) in services]
    if not pods:
        raise CommandError(f"no containers for {', '.join(services) if services else 'project ' + project}")
    width = max(len(p["metadata"]["name"]) for p in pods)

    async def one(pod: Obj) -> None:
        prefix = f"{pod['metadata']['name']:<{width}}  | ".encode()
        pending = bytearray()

        def write(chunk: bytes) -> None:
            pending.extend(chunk)
            *lines, rest = bytes(pending).split(b"\n")
            pending[:] = rest
            for line in lines:
                sys.stdout.buffer.write(prefix + line + b"\n")
            sys.stdout.buffer.flush()
        try:
            await stream_logs(c, project, pod["metadata"]["name"], {"follow": "true"} if follow else {}, write)
        except ApiError as e:
            sys.stdout.buffer.write(prefix + f"(no logs: {e.message})".encode() + b"\n")
        if pending:
            sys.stdout.buffer.write(prefix + bytes(pending) + b"\n")
    await asyncio.gather(*(one(p) for p in pods))


async def first_running_pod(c: Client, project: str, service: str) -> str:
    for pod in await service_pods(c, project, service):
        if (pod.get("status") or {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
            return str(pod["metadata"]["name"])
    raise CommandError(f"service {service!r} is not running")
