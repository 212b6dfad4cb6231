"""The runc runtime: sandbox + container services over runc, conmon, pyroute2 and the image store."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

from pklib.kubeconfig import pkube_home

from kubelet.network.manager import NetworkConfig, NodeNetwork
from kubelet.runtime import cgroups, stats
from kubelet.runtime.containers import LOG_MAX_FILES, LOG_MAX_SIZE, Containers
from kubelet.runtime.attach import attach
from kubelet.runtime.exec import run_exec, start_exec
from kubelet.runtime.interface import (ContainerConfig, ContainerState, ContainerStats, ContainerStatus, ExecResult,
                                       ExecStream, ImageManager, LogLine, LogOptions, NotFound, PodStats,
                                       RuntimeError_, SandboxConfig, SandboxState, SandboxStatus)
from kubelet.runtime.logs import read_logs
from kubelet.runtime.monitor import ExitWatch, conmon_alive, read_exit
from kubelet.runtime.runccli import Runc
from kubelet.runtime.sandbox import Sandboxes

STOP_SANDBOX_GRACE = 0.0  # CRI StopPodSandbox kills; graceful stops are the kubelet's job before it


@dataclass
class RuntimeConfig:
    state_dir: Path = field(default_factory=lambda: pkube_home() / "runtime")
    pod_cidr: str = "10.244.0.0/24"
    cluster_cidr: str = ""  # all nodes' pod ranges (not masqueraded); empty: this node's pod CIDR
    bridge: str = "pkube0"
    nat_table: str = "pkube-nat"
    netns_prefix: str = "pkube-"
    veth_prefix: str = "pkv"
    cgroup_parent: str = "pkube"
    runc_root: Path | None = None          # default <state_dir>/runc, so `runc list` there shows only ours
    enable_forwarding: bool = True
    container_log_max_size: int = LOG_MAX_SIZE    # bytes; a bigger log is rotated (Kubernetes' containerLogMaxSize)
    container_log_max_files: int = LOG_MAX_FILES  # the current log plus rotated ones kept (containerLogMaxFiles)
    pod_pids_limit: int | None = None      # pids.max of each pod's cgroup (Kubernetes' podPidsLimit)


class RuncRuntime:
    """Implements the Runtime protocol (kubelet.runtime.interface)."""
    in_memory = False   # image, exit and log-rotation calls read files: the kubelet runs them in threads

    def __init__(self, config: RuntimeConfig, images: ImageManager) -> None:
        self.config = config
        self.images = images
        config.state_dir.mkdir(parents=True, exist_ok=True)
        runc_root = config.runc_root or config.state_dir / "runc"
        runc_root.mkdir(parents=True, exist_ok=True)
        self.runc = Runc(str(runc_root))
        self.network = NodeNetwork(NetworkConfig(
            pod_cidr=config.pod_cidr, ipam_dir=config.state_dir / "ipam", cluster_cidr=config.cluster_cidr,
            bridge=config.bridge,
            nat_table=config.nat_table, netns_prefix=config.netns_prefix, veth_prefix=config.veth_prefix,
            enable_forwarding=config.enable_forwarding))
        self.sandboxes = Sandboxes(config.state_dir, self.network, config.cgroup_parent)
        self.containers = Containers(config.state_dir, self.runc, images, config.container_log_max_size,
                                     config.container_log_max_files)
        self._exits: ExitWatch | None = None  # see watch_exits

    # --- node ---------------------------------------------------------------------------------------------

    async def ensure_node(self) -> None:
        """Bridge, NAT, and reclaim resources of sandboxes that no longer exist (crash leftovers)."""
        await asyncio.to_thread(self.network.ensure)
        self.sandboxes.gc_incomplete()
        await self.containers.gc_incomplete()
        await asyncio.to_thread(self.network.gc, set(self.sandboxes.ids()))

    async def destroy_node(self) -> None:
        """Remove every sandbox and the node's bridge and NAT table."""
        for sid in self.sandboxes.ids():
            await self.remove_sandbox(sid)
        parent = self.config.cgroup_parent
        try:
            cgroups.remove_tree(cgroups.nested_dirs(parent), parent)
        except OSError as e:
            raise RuntimeError_(f"removing cgroup parent {parent}: {e}") from None
        await asyncio.to_thread(self.network.destroy)

    # --- sandboxes ----------------------------------------------------------------------------------------

    async def run_sandbox(self, config: SandboxConfig) -> str:
        sandbox_id: str = (await self.sandboxes.create(config))["id"]
        if self.config.pod_pids_limit:
            # the pod cgroup exists before its first container: runc creates the containers' cgroups below it
            try:
                await asyncio.to_thread(cgroups.set_pids_limit, self.sandboxes.cgroup_rel(config.uid),
                                        self.config.pod_pids_limit)
            except OSError as e:
                await self.remove_sandbox(sandbox_id)
                raise RuntimeError_(f"setting the pids limit of pod {config.uid}: {e}") from None
        return sandbox_id

    async def stop_sandbox(self, sandbox_id: str) -> None:
        self.sandboxes.load(sandbox_id)
        for cid in self.containers.ids(sandbox_id):
            await self.containers.stop(cid, STOP_SANDBOX_GRACE)
        await self.sandboxes.release(sandbox_id)

    async def remove_sandbox(self, sandbox_id: str) -> None:
        """Everything of the pod goes: containers, netns, IP, UTS/IPC, cgroup parent, files. Idempotent."""
        try:
            state = self.sandboxes.load(sandbox_id)
        except NotFound:
            return
        cids = self.containers.ids(sandbox_id)
        pod_rel = self.sandboxes.cgroup_rel(state["config"]["uid"])
        dirs = stats.pod_dirs([self.containers.meta(c).get("cgroups", {}) for c in cids], pod_rel)
        for cid in cids:
            await self.remove_container(cid)
        await self.sandboxes.release(sandbox_id)
        uid = state["config"]["uid"]
        # the pod cgroup belongs to the pod: a replacement sandbox of the same pod may still be using it
        if not any(s != sandbox_id for s in self.sandboxes.ids(uid)):
            try:
                cgroups.remove_tree({**cgroups.nested_dirs(pod_rel), **dirs}, pod_rel)
            except OSError as e:
                raise RuntimeError_(f"removing the pod cgroup of sandbox {sandbox_id}: {e}") from None
        await asyncio.to_thread(self.sandboxes.remove, sandbox_id)  # blocking file work

    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        return self.sandboxes.status(self.sandboxes.load(sandbox_id))

    async def list_sandboxes(self, uid: str | None = None) -> list[SandboxStatus]:
        out = []
        for sid in self.sandboxes.ids(uid):
            try:
                out.append(await self.sandbox_status(sid))
            except NotFound:
                continue  # removed meanwhile
        return out

    # --- containers ---------------------------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        state = self.sandboxes.load(sandbox_id)
        if state["state"] != SandboxState.READY.value:
            raise RuntimeError_(f"sandbox {sandbox_id} is not ready")
        try:
            cid = await self.containers.create(state, config, self.sandboxes.cgroup_rel(state["config"]["uid"]))
        except RuntimeError_:
            # the sandbox's wiring, running beside this, may have failed and removed the netns runc was to join
            # (runc then says only "can't get final child's PID from pipe"): that failure is the one to report
            await self.sandboxes.network_ready(sandbox_id)
            raise
        if self._exits is not None:
            self._exits.add(cid, self.containers.paths(cid))
        return cid

    async def start_container(self, container_id: str) -> None:
        # a new sandbox's network is wired while its first containers are created: they start once it is
        await self.sandboxes.network_ready(self.containers.meta(container_id)["sandbox_id"])
        await self.containers.start(container_id)

    async def stop_container(self, container_id: str, timeout: float) -> None:
        await self.containers.stop(container_id, timeout)

    async def remove_container(self, container_id: str) -> None:
        if self._exits is not None:
            self._exits.discard(container_id)
        await self.containers.remove(container_id)

    async def container_status(self, container_id: str) -> ContainerStatus:
        return await self.containers.status(container_id)

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        return await self.containers.statuses(self.containers.ids(sandbox_id))

    def watch_exits(self, notify: Callable[[], None]) -> None:
        """notify() (in the event loop) right after any container exits, live now or created from now on: a pidfd
        on each container's conmon (monitor.ExitWatch)."""
        if self._exits is not None:
            self._exits.close()
        self._exits = ExitWatch(notify)
        for cid in self.containers.ids():
            self._exits.add(cid, self.containers.paths(cid))

    def container_exits(self) -> dict[str, tuple[str, bool]]:
        """Container id -> (sandbox id, exited), from the state files only (no runc call): lets a kubelet relist
        every second cheaply; list_containers() stays the authority when it syncs a pod."""
        out = {}
        for cid in self.containers.ids():
            try:
                out[cid] = (self.containers.meta(cid)["sandbox_id"], read_exit(self.containers.paths(cid)) is not None)
            except NotFound:
                continue  # removed meanwhile
        return out

    def rotate_logs(self) -> int:
        """Rotate container logs grown beyond container_log_max_size (the kubelet calls it at each relist)."""
        return self.containers.rotate_logs()

    async def exec(self, container_id: str, cmd: list[str], stdin: bytes | None = None, tty: bool = False,
                   timeout: float | None = None) -> ExecResult:
        await self._running(container_id)
        return await run_exec(self.runc, container_id, cmd, stdin, tty, timeout)

    async def start_exec(self, container_id: str, cmd: list[str], stdin: bool = False,
                         tty: bool = False) -> ExecStream:
        await self._running(container_id)
        return await start_exec(self.runc, container_id, cmd, stdin, tty)

    async def attach(self, container_id: str, stdin: bool = False, tty: bool = False) -> ExecStream:
        await self._running(container_id)
        return attach(self.containers.paths(container_id), container_id, stdin, tty)

    async def _running(self, container_id: str) -> None:
        status = await self.containers.status(container_id)
        if status.state != ContainerState.RUNNING:
            raise RuntimeError_(f"container {status.name} is not running")

    async def logs(self, container_id: str, options: LogOptions) -> AsyncIterator[LogLine]:
        paths = self.containers.paths(container_id)
        self.containers.meta(container_id)

        async def finished() -> bool:
            # file checks only: this runs every poll interval while a follower waits for output
            return read_exit(paths) is not None or not conmon_alive(paths)

        async for line in read_logs(paths.log, options, finished):
            yield line

    async def container_stats(self, container_id: str) -> ContainerStats:
        return stats.container_stats(container_id, self.containers.meta(container_id).get("cgroups", {}))

    async def pod_stats(self, sandbox_id: str) -> PodStats:
        state = self.sandboxes.load(sandbox_id)
        cids = self.containers.ids(sandbox_id)
        metas = [self.containers.meta(c) for c in cids]
        dirs = stats.pod_dirs([m.get("cgroups", {}) for m in metas], self.sandboxes.cgroup_rel(state["config"]["uid"]))
        per_container = [stats.container_stats(m["id"], m.get("cgroups", {})) for m in metas]
        pod = stats.container_stats(sandbox_id, dirs)
        return PodStats(sandbox_id=sandbox_id, timestamp=pod.timestamp, cpu_usage_ns=pod.cpu_usage_ns,
                        memory_working_set_bytes=pod.memory_working_set_bytes, containers=per_container)
