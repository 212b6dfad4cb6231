"""What the kubelet's HTTP API (server.py, portforward.py) may ask of the node: find a pod's container or
network namespace, and the runtime's exec, logs and stats entry points. A narrow seam: the server never
touches the pod workers, their caches or the API client."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

from kubelet.plan import PodRuntime
from kubelet.relist import PodStore
from kubelet.runtime.interface import (ContainerState, ExecStream, LogLine, LogOptions, PodStats, Runtime,
                                       RuntimeError_, SandboxState)


class HostError(Exception):
    """A request the node cannot serve: the HTTP code, the Status reason and a message for the user."""
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass
class PodUsage:
    pod: dict[str, Any]
    stats: PodStats
    container_names: dict[str, str]   # container id -> name


class PodHost(Protocol):
    @property
    def node_name(self) -> str: ...
    async def find_container(self, namespace: str, pod: str, container: str, previous: bool = False) -> str: ...
    def logs(self, container_id: str, options: LogOptions) -> AsyncIterator[LogLine]: ...
    async def start_exec(self, container_id: str, container: str, cmd: list[str], stdin: bool,
                         tty: bool) -> ExecStream: ...
    async def attach(self, container_id: str, container: str, stdin: bool, tty: bool) -> ExecStream: ...
    async def pod_netns(self, namespace: str, pod: str) -> str: ...
    async def pod_usage(self) -> list[PodUsage]: ...


class NodeHost:
    """PodHost over the runtime and the pods bound to this node."""

    def __init__(self, node_name: str, pods: PodStore, runtime: Runtime,
                 runtime_state: Callable[[str], Awaitable[PodRuntime]]) -> None:
        self._node_name = node_name
        self.pods = pods
        self.runtime = runtime
        self.runtime_state = runtime_state

    @property
    def node_name(self) -> str:
        return self._node_name

    def _pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod = self.pods.get(f"{namespace}/{name}")
        if pod is None:
            raise HostError(404, "NotFound", f'pod "{name}" not found on this node')
        return pod

    async def find_container(self, namespace: str, pod: str, container: str, previous: bool = False) -> str:
        obj = self._pod(namespace, pod)
        init = container in {c["name"] for c in obj["spec"].get("initContainers") or []}
        apps = obj["spec"]["containers"] + (obj["spec"].get("ephemeralContainers") or [])
        if not init and container not in {c["name"] for c in apps}:
            raise HostError(400, "BadRequest", f"container {container} is not valid for pod {pod}")
        rt = await self.runtime_state(obj["metadata"]["uid"])
        found = rt.previous(container, init) if previous else rt.latest(container, init)
        if found is None:
            if previous:
                raise HostError(400, "BadRequest", f'previous terminated container "{container}" in pod "{pod}" '
                                                   "not found")
            raise HostError(400, "BadRequest", f'container "{container}" in pod "{pod}" is waiting to start')
        return found.id

    def logs(self, container_id: str, options: LogOptions) -> AsyncIterator[LogLine]:
        return self.runtime.logs(container_id, options)

    async def start_exec(self, container_id: str, container: str, cmd: list[str], stdin: bool,
                         tty: bool) -> ExecStream:
        status = await self.runtime.container_status(container_id)
        if status.state != ContainerState.RUNNING:
            raise HostError(400, "BadRequest", f"container {container} is not running")
        try:
            return await self.runtime.start_exec(container_id, cmd, stdin=stdin, tty=tty)
        except (RuntimeError_, OSError) as e:
            raise HostError(400, "BadRequest", f"cannot start {cmd!r}: {e}") from None

    async def attach(self, container_id: str, container: str, stdin: bool, tty: bool) -> ExecStream:
        status = await self.runtime.container_status(container_id)
        if status.state != ContainerState.RUNNING:
            raise HostError(400, "BadRequest", f"container {container} is not running")
        try:
            return await self.runtime.attach(container_id, stdin=stdin, tty=tty)
        except (RuntimeError_, OSError) as e:
            raise HostError(400, "BadRequest", f"cannot attach to container {container}: {e}") from None

    async def pod_netns(self, namespace: str, pod: str) -> str:
        obj = self._pod(namespace, pod)
        rt = await self.runtime_state(obj["metadata"]["uid"])
        if rt.sandbox_id is None or not rt.sandbox_ready:
            raise HostError(400, "BadRequest", f"pod {pod} has no running sandbox (it is not running)")
        try:
            status = await self.runtime.sandbox_status(rt.sandbox_id)
        except RuntimeError_ as e:
            raise HostError(400, "BadRequest", f"pod {pod}: {e}") from None
        if not status.netns:
            raise HostError(400, "BadRequest", f"pod {pod} has no network namespace")
        return status.netns

    async def pod_usage(self) -> list[PodUsage]:
        """Usage of this node's running pods and their containers (from their cgroups)."""
        out = []
        by_uid = {p["metadata"]["uid"]: p for p in self.pods.list()}
        for sandbox in await self.runtime.list_sandboxes():
            pod = by_uid.get(sandbox.config.uid)
            if pod is None or sandbox.state != SandboxState.READY:
                continue
            try:
                stats = await self.runtime.pod_stats(sandbox.id)
            except RuntimeError_:
                continue  # removed meanwhile
            names = {c.id: c.labels.get("pkube.io/container", c.name)
                     for c in await self.runtime.list_containers(sandbox.id)}
            out.append(PodUsage(pod, stats, names))
        return out
