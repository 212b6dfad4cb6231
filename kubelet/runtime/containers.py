"""Containers: an OCI bundle per container, created by conmon+runc, its state in `<state>/containers/<id>/`.

`meta.json` holds what only pkube knows (sandbox, name, image, times, cgroup directories, final reason);
runc's state and conmon's exit/oom files hold the rest. A fresh object on the same state directory therefore
finds every container again, running or exited.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import resource
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from images.errors import ImageError
from images.rootfs import read_in_root
from kubelet.runtime import cgroups
from kubelet.runtime.interface import (ContainerConfig, ContainerState, ContainerStatus, ImageService, InvalidConfig,
                                       NotFound, RuntimeError_)
from kubelet.runtime.logs import rotate
from kubelet.runtime.monitor import ConmonLaunch, MonitorPaths, conmon_alive, read_exit, reopen_log
from kubelet.runtime.oci import SandboxRefs, build_spec
from kubelet.runtime.runccli import Runc
from kubelet.runtime.statefile import OwnerIndex, load_state, save_state

EXIT_WAIT = 10.0  # after SIGKILL, how long the kernel + conmon may take to report the exit
LOG_MAX_SIZE = 10 * 1024 * 1024  # Kubernetes' containerLogMaxSize default (10Mi)
LOG_MAX_FILES = 5                # and containerLogMaxFiles


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _ts(value: str | float | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    return datetime.fromisoformat(value)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


class Containers:
    def __init__(self, state_dir: Path, runc: Runc, images: ImageService, log_max_size: int = LOG_MAX_SIZE,
                 log_max_files: int = LOG_MAX_FILES) -> None:
        self.dir = state_dir / "containers"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.runc = runc
        self.images = images
        self.log_max_size = log_max_size
        self.log_max_files = log_max_files
        self._index = OwnerIndex(self.dir, "meta.json", lambda meta: meta["sandbox_id"])

    def _cdir(self, cid: str) -> Path:
        if not (len(cid) == 32 and all(c in "0123456789abcdef" for c in cid)):
            raise NotFound(f"container {cid!r} not found")
        return self.dir / cid

    def paths(self, cid: str) -> MonitorPaths:
        return MonitorPaths(self._cdir(cid))

    def meta(self, cid: str) -> dict[str, Any]:
        return load_state(self._cdir(cid) / "meta.json", f"container {cid}")

    def _save(self, meta: dict[str, Any]) -> None:
        save_state(self._cdir(meta["id"]) / "meta.json", meta)

    def ids(self, sandbox_id: str | None = None) -> list[str]:
        """The containers (of one sandbox)."""
        return self._index.ids(sandbox_id)

    async def create(self, sandbox: dict[str, Any], config: ContainerConfig, cgroup_parent_rel: str) -> str:
        cid = uuid.uuid4().hex
        cdir = self._cdir(cid)
        cdir.mkdir(parents=True)
        cgroups_path = f"{cgroup_parent_rel}/{cid}"
        monitor: ConmonLaunch | None = None
        try:
            # conmon loads (~2 ms) while the bundle is made; it runs `runc create` only once told to
            # conmon's own limit is a backstop at twice the rotation size, for a container that writes faster
            # than rotate_logs() runs (it starts that log afresh, losing its lines: rotation keeps them)
            monitor = ConmonLaunch.spawn(cid, config.name, cdir, MonitorPaths(cdir), self.runc.binary,
                                         self.runc.root, config.tty, log_size_max=2 * self.log_max_size,
                                         stdin=config.stdin, stdin_once=config.stdin_once)
            # a target's (ephemeral --target), else the pod's own shared one (shareProcessNamespace), else a new one
            pid_ns = (await self._pid_namespace(config.pid_namespace_of) if config.pid_namespace_of
                      else sandbox.get("pid_ns") or None)
            await asyncio.to_thread(self._write_bundle, cid, sandbox, config, cgroups_path, pid_ns)
            pid = await monitor.create()
            # meta.json comes last: a directory without one is a creation cut short (gc_incomplete). runc has made
            # the cgroups now; remember where, they are needed after the process exits (OOM, stats)
            self._save({"id": cid, "sandbox_id": sandbox["id"], "name": config.name, "image": config.image,
                        "labels": config.labels, "config": dataclasses.asdict(config), "created_at": _now(),
                        "cgroups": cgroups.owned(cgroups.process_cgroups(pid), cgroups_path)})
        except BaseException:
            if monitor is not None:
                await monitor.cancel()
            await self._destroy(cid)
            raise
        return cid

    async def _pid_namespace(self, target: str) -> str:
        """The PID namespace of a running container, to join (an ephemeral container's targetContainerName)."""
        state = await self.runc.state(target)
        if state is None or state["status"] != "running":
            raise RuntimeError_(f"the target container {target} is not running")
        return f"/proc/{int(state['pid'])}/ns/pid"

    def _write_bundle(self, cid: str, sandbox: dict[str, Any], config: ContainerConfig, cgroups_path: str,
                      pid_ns: str | None = None) -> None:
        """The rootfs mount and config.json (blocking file and mount work: runs in a worker thread)."""
        try:
            rootfs = Path(self.images.prepare_rootfs(config.image, cid))
            image_config = self.images.config(config.image)
        except ImageError as e:
            raise RuntimeError_(f"container {config.name}: {e}") from None
        try:  # the image's files, never a host file a hostile image links to (and never a FIFO that blocks)
            passwd = read_in_root(rootfs, "/etc/passwd") or ""
            group = read_in_root(rootfs, "/etc/group") or ""
        except ImageError as e:
            raise InvalidConfig(f"container {config.name}: {e}") from None
        refs = SandboxRefs(netns=sandbox["netns"], ipc_ns=sandbox["ipc"], uts_ns=sandbox["uts"],
                           hostname=sandbox["hostname"], pod_files=sandbox["pod_files"],
                           host_network=bool(sandbox.get("host_network")), host_pid=bool(sandbox.get("host_pid")),
                           host_ipc=bool(sandbox.get("host_ipc")))
        spec = build_spec(config, image_config, str(rootfs), refs, cgroups_path, passwd=passwd, group=group,
                          host_nofile_hard=resource.getrlimit(resource.RLIMIT_NOFILE)[1], pid_ns=pid_ns)
        for m in config.mounts:
            if not os.path.exists(m.host_path):
                raise InvalidConfig(f"volume mount {m.container_path}: host path {m.host_path} does not exist")
        (self._cdir(cid) / "config.json").write_bytes(orjson.dumps(spec, option=orjson.OPT_INDENT_2))

    def rotate_logs(self) -> int:
        """Rotate the log of every container whose log grew beyond the maximum size (blocking file work: a
        stat per container when nothing is to be done). Returns how many were rotated."""
        rotated = 0
        for p in self.dir.iterdir():
            paths = MonitorPaths(p)
            try:
                if rotate(paths.log, self.log_max_size, self.log_max_files, lambda: reopen_log(paths)):
                    rotated += 1
            except OSError:
                continue  # removed meanwhile
        return rotated

    async def gc_incomplete(self) -> None:
        """Destroy containers whose creation was cut short before their state was written (at kubelet start)."""
        for p in self.dir.iterdir():
            if not (p / "meta.json").exists():
                await self._destroy(p.name)

    async def start(self, cid: str) -> None:
        meta = self.meta(cid)
        try:
            await self.runc.start(cid, _read_pid(self.paths(cid).container_pid))
        except RuntimeError_ as e:
            raise RuntimeError_(f"container {meta['name']} cannot be started: {e}") from None
        meta["started_at"] = _now()
        self._save(meta)

    async def stop(self, cid: str, timeout: float) -> None:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL (CRI StopContainer)."""
        self.meta(cid)
        paths = self.paths(cid)
        state = await self.runc.state(cid)
        if state is None or state["status"] == "stopped" or read_exit(paths):
            return
        if state["status"] == "created":
            # never started: nothing to signal gracefully; deleting it makes conmon record the exit
            await self.runc.delete(cid)
            return
        if timeout > 0:
            await self.runc.kill(cid, "TERM")
            if await self._wait_exit(cid, paths, timeout):
                return
        await self.runc.kill(cid, "KILL")
        if not await self._wait_exit(cid, paths, EXIT_WAIT):
            raise RuntimeError_(f"container {cid} did not exit after SIGKILL")

    async def _wait_exit(self, cid: str, paths: MonitorPaths, timeout: float) -> bool:
        """Until conmon recorded the exit; without a monitor (it was killed) ask runc whether the process ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if read_exit(paths):
                return True
            if not conmon_alive(paths):
                state = await self.runc.state(cid)
                if state is None or state["status"] == "stopped":
                    return True
            await asyncio.sleep(0.02)
        return bool(read_exit(paths))

    async def remove(self, cid: str) -> None:
        """Kill if needed and delete everything of the container (CRI RemoveContainer); idempotent."""
        if self._cdir(cid).exists():
            await self._destroy(cid)

    async def _destroy(self, cid: str) -> None:
        paths = self.paths(cid)
        await self.runc.delete(cid)  # --force: kills a running container, removes its cgroups
        await self._wait_exit(cid, paths, EXIT_WAIT)  # let conmon write the log tail and exit
        await asyncio.to_thread(self._remove_files, cid, paths.dir)

    def _remove_files(self, cid: str, cdir: Path) -> None:
        """The rootfs and the container's own directory (blocking file work: runs in a worker thread)."""
        self.images.release_rootfs(cid)
        shutil.rmtree(cdir, ignore_errors=True)

    async def status(self, cid: str) -> ContainerStatus:
        self.meta(cid)
        return self._status(cid, await self.runc.state(cid))

    async def statuses(self, cids: list[str]) -> list[ContainerStatus]:
        """Like status() for many containers with a single runc call (a kubelet relists often)."""
        states = await self.runc.list_states(cids)
        out = []
        for cid in cids:
            try:
                out.append(self._status(cid, states.get(cid)))
            except NotFound:
                continue  # removed meanwhile
        return out

    def _status(self, cid: str, state: dict[str, Any] | None) -> ContainerStatus:
        meta = self.meta(cid)
        paths = self.paths(cid)
        exited = read_exit(paths)
        pid = 0
        if exited:
            cstate = ContainerState.EXITED
        elif state is None:
            cstate = ContainerState.UNKNOWN
        elif state["status"] == "running":
            cstate, pid = ContainerState.RUNNING, int(state["pid"])
        elif state["status"] == "created":
            cstate, pid = ContainerState.CREATED, int(state["pid"])
        elif conmon_alive(paths):
            cstate = ContainerState.RUNNING  # runc saw the exit first; conmon is about to record it
        else:
            # conmon records the exit and then exits: it may have done both since the first look
            exited = read_exit(paths)
            cstate = ContainerState.EXITED
        status = ContainerStatus(id=cid, sandbox_id=meta["sandbox_id"], name=meta["name"], image=meta["image"],
                                 state=cstate, pid=pid, created_at=_ts(meta["created_at"]),
                                 started_at=_ts(meta.get("started_at")), log_path=str(paths.log),
                                 labels=meta.get("labels", {}))
        if exited:
            status.exit_code, finished = exited
            status.finished_at = _ts(finished)
            if "reason" not in meta:
                meta["reason"] = self._reason(meta, paths, status.exit_code)
                self._save(meta)
            status.reason = meta["reason"]
        elif cstate in (ContainerState.EXITED, ContainerState.UNKNOWN):
            # the monitor died before recording the exit (killed with the node agent's cgroup, say)
            status.reason = "ContainerStatusUnknown"
        return status

    @staticmethod
    def _reason(meta: dict[str, Any], paths: MonitorPaths, exit_code: int) -> str:
        # conmon watches the cgroup's OOM events; the cgroup's own counter covers a monitor that missed it
        if paths.oom_file.exists() or cgroups.oom_kills(meta.get("cgroups", {})) > 0:
            return "OOMKilled"
        return "Completed" if exit_code == 0 else "Error"

    def spec(self, cid: str) -> dict[str, Any]:
        return orjson.loads((self._cdir(cid) / "config.json").read_bytes())
