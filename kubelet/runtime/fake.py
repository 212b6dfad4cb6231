"""In-memory runtime: the Runtime protocol (like RuncRuntime) with nothing touching the machine. It drives the
kubelet's pod workers in unit tests and on hollow nodes (kubelet/hollow.py): no thread, process or file per pod.

Tests drive it: `finish(cid, exit_code, reason)` makes a container exit, `write_log` adds log lines,
`exec_handler` answers execs (buffered and streamed; `exec_streams` keeps what streamed execs were sent),
`fail(method, error)` makes the next call of a method raise, `calls` records every call in order (unless
record_calls is False), `images` is a FakeImageStore (`images.missing` / `images.pull_errors` to make pulls fail).
Sandbox IPs come from `pod_cidr` (the first host address is left for the gateway); `reserve_ip(uid, ip)` gives
a pod's next sandbox that address (a restarted hollow node keeps its pods' IPs).
"""
from __future__ import annotations

import copy
import hashlib
import ipaddress
import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Callable

from images.auth import Keychain
from images.errors import ImageError, ImageNotFound
from kubelet.runtime.interface import (STDERR, STDOUT, ContainerConfig, ContainerState, ContainerStats,
                                       ContainerStatus, ExecResult, LogLine, LogOptions, NotFound, PodStats,
                                       RuntimeError_, SandboxConfig, SandboxState, SandboxStatus)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _copy_status(status: ContainerStatus) -> ContainerStatus:
    return replace(status, labels=dict(status.labels))


@dataclass
class _Container:
    status: ContainerStatus
    config: ContainerConfig
    logs: list[LogLine] = field(default_factory=list)


@dataclass
class FakeExecStream:
    """A streamed exec: replays the exec_handler's answer as output, records what the caller sent."""
    result: ExecResult
    tty: bool
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False
    sizes: list[tuple[int, int]] = field(default_factory=list)
    terminated: bool = False
    closed: bool = False

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        if self.result.stdout:
            yield STDOUT, self.result.stdout
        if self.result.stderr:
            yield (STDOUT if self.tty else STDERR), self.result.stderr

    async def write_stdin(self, data: bytes) -> None:
        self.stdin.extend(data)

    def close_stdin(self) -> None:
        self.stdin_closed = True

    def resize(self, width: int, height: int) -> None:
        if self.tty:
            self.sizes.append((width, height))

    async def wait(self) -> int:
        return self.result.exit_code

    async def terminate(self) -> None:
        self.terminated = True

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeImage:
    name: str
    id: str


@dataclass
class FakePull:
    image: FakeImage
    bytes: int = 0


class FakeImageStore:
    """Every image is there (or pulls at once), except those in `missing`; `pull_errors` make pulls fail."""

    def __init__(self) -> None:
        self.missing: set[str] = set()
        self.pull_errors: dict[str, str] = {}     # ref -> message of the ImageError its pull raises
        self.pulls: list[str] = []

    def resolve(self, ref: str) -> FakeImage | None:
        return None if ref in self.missing else FakeImage(ref, "sha256:" + hashlib.sha256(ref.encode()).hexdigest())

    def pull(self, ref: str, keychain: Keychain | None = None) -> FakePull:
        self.pulls.append(ref)
        if ref in self.pull_errors:
            raise ImageError(self.pull_errors[ref])
        self.missing.discard(ref)
        image = self.resolve(ref)
        assert image is not None
        return FakePull(image, 1024)

    def config(self, ref: str) -> dict:
        if ref in self.missing:
            raise ImageNotFound(f"image {ref} not found")
        return {"config": {}}

    def prepare_rootfs(self, ref: str, container_id: str) -> Path:
        return Path("/nonexistent") / container_id

    def release_rootfs(self, container_id: str) -> None:
        pass


class FakeRuntime:
    in_memory = True

    def __init__(self, pod_cidr: str = "10.244.0.0/24", record_calls: bool = True) -> None:
        self.images = FakeImageStore()
        self.sandboxes: dict[str, SandboxStatus] = {}
        self.containers: dict[str, _Container] = {}
        self.calls: list[tuple[str, tuple]] = []
        self.exec_handler: Callable[[str, list[str]], ExecResult] = lambda cid, cmd: ExecResult(0, b"", b"")
        self.exec_streams: list[FakeExecStream] = []
        self._failures: dict[str, Exception] = {}
        self._ids = itertools.count(1)
        self._network = ipaddress.ip_network(pod_cidr, strict=False)
        self._used_ips: dict[str, str] = {}      # ip -> sandbox id
        self._reserved: dict[str, str] = {}      # pod uid -> ip its next sandbox gets
        self.record_calls = record_calls
        self.rotations = 0
        self._exit_notify: Callable[[], None] | None = None

    def fail(self, method: str, error: Exception) -> None:
        self._failures[method] = error

    def _call(self, method: str, *args: object) -> None:
        if self.record_calls:
            self.calls.append((method, args))
        if method in self._failures:
            raise self._failures.pop(method)

    def _new_id(self) -> str:
        return f"{next(self._ids):032x}"

    def _sandbox(self, sandbox_id: str) -> SandboxStatus:
        try:
            return self.sandboxes[sandbox_id]
        except KeyError:
            raise NotFound(f"sandbox {sandbox_id} not found") from None

    def _container(self, container_id: str) -> _Container:
        try:
            return self.containers[container_id]
        except KeyError:
            raise NotFound(f"container {container_id} not found") from None

    # --- test controls ------------------------------------------------------------------------------------

    def finish(self, container_id: str, exit_code: int, reason: str = "") -> None:
        c = self._container(container_id).status
        c.state, c.exit_code, c.pid, c.finished_at = ContainerState.EXITED, exit_code, 0, _now()
        c.reason = reason or ("Completed" if exit_code == 0 else "Error")
        if self._exit_notify is not None:
            self._exit_notify()

    def write_log(self, container_id: str, text: str, stream: str = "stdout") -> None:
        now = _now()
        self._container(container_id).logs.append(LogLine(now, stream, text, now.isoformat()))

    def reserve_ip(self, uid: str, ip: str) -> None:
        self._reserved[uid] = ip

    def _allocate_ip(self, uid: str, sandbox_id: str) -> str:
        ip = self._reserved.pop(uid, "")
        if not ip or ip in self._used_ips:
            hosts = self._network.hosts()
            next(hosts, None)  # the gateway
            ip = next((str(a) for a in hosts if str(a) not in self._used_ips), "")
            if not ip:
                raise RuntimeError_(f"no free IP left in {self._network}")
        self._used_ips[ip] = sandbox_id
        return ip

    # --- sandboxes ----------------------------------------------------------------------------------------

    async def run_sandbox(self, config: SandboxConfig) -> str:
        self._call("run_sandbox", config)
        sid = self._new_id()
        self.sandboxes[sid] = SandboxStatus(id=sid, config=copy.deepcopy(config), state=SandboxState.READY,
                                            ip=config.host_ip if config.host_network
                                            else self._allocate_ip(config.uid, sid), created_at=_now(),
                                            netns=f"/run/netns/fake-{sid[-8:]}")
        return sid

    async def stop_sandbox(self, sandbox_id: str) -> None:
        self._call("stop_sandbox", sandbox_id)
        sandbox = self._sandbox(sandbox_id)
        for c in self.containers.values():
            if c.status.sandbox_id == sandbox_id and c.status.state == ContainerState.RUNNING:
                self.finish(c.status.id, 137)
        sandbox.state = SandboxState.NOT_READY

    async def remove_sandbox(self, sandbox_id: str) -> None:
        self._call("remove_sandbox", sandbox_id)
        if sandbox_id in self.sandboxes:
            for cid in [c for c, v in self.containers.items() if v.status.sandbox_id == sandbox_id]:
                del self.containers[cid]
            self._used_ips.pop(self.sandboxes.pop(sandbox_id).ip, None)

    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        return replace(self._sandbox(sandbox_id))

    async def list_sandboxes(self, uid: str | None = None) -> list[SandboxStatus]:
        # shallow copies (cheap: hollow nodes list often): a caller changing state does not change ours
        return [replace(s) for s in self.sandboxes.values() if uid is None or s.config.uid == uid]

    # --- containers ---------------------------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        self._call("create_container", sandbox_id, config)
        if self._sandbox(sandbox_id).state != SandboxState.READY:
            raise RuntimeError_(f"sandbox {sandbox_id} is not ready")
        cid = self._new_id()
        self.containers[cid] = _Container(ContainerStatus(
            id=cid, sandbox_id=sandbox_id, name=config.name, image=config.image, state=ContainerState.CREATED,
            created_at=_now(), labels=dict(config.labels)), copy.deepcopy(config))
        return cid

    async def start_container(self, container_id: str) -> None:
        self._call("start_container", container_id)
        c = self._container(container_id).status
        if c.state != ContainerState.CREATED:
            raise RuntimeError_(f"container {c.name} cannot be started: it is {c.state.value}")
        c.state, c.pid, c.started_at = ContainerState.RUNNING, 1000 + len(self.containers), _now()

    async def stop_container(self, container_id: str, timeout: float) -> None:
        self._call("stop_container", container_id, timeout)
        if self._container(container_id).status.state in (ContainerState.RUNNING, ContainerState.CREATED):
            self.finish(container_id, 137 if timeout <= 0 else 143)

    async def remove_container(self, container_id: str) -> None:
        self._call("remove_container", container_id)
        self.containers.pop(container_id, None)

    async def container_status(self, container_id: str) -> ContainerStatus:
        return _copy_status(self._container(container_id).status)

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        return [_copy_status(c.status) for c in self.containers.values()
                if sandbox_id is None or c.status.sandbox_id == sandbox_id]

    def container_exits(self) -> dict[str, tuple[str, bool]]:
        return {cid: (c.status.sandbox_id, c.status.state == ContainerState.EXITED) for cid, c in self.containers.items()}

    def watch_exits(self, notify: Callable[[], None]) -> None:
        self._exit_notify = notify

    def rotate_logs(self) -> int:
        self.rotations += 1
        return 0

    async def exec(self, container_id: str, cmd: list[str], stdin: bytes | None = None, tty: bool = False,
                   timeout: float | None = None) -> ExecResult:
        self._call("exec", container_id, cmd)
        if self._container(container_id).status.state != ContainerState.RUNNING:
            raise RuntimeError_("container is not running")
        return self.exec_handler(container_id, cmd)

    async def start_exec(self, container_id: str, cmd: list[str], stdin: bool = False,
                         tty: bool = False) -> FakeExecStream:
        self._call("start_exec", container_id, cmd)
        if self._container(container_id).status.state != ContainerState.RUNNING:
            raise RuntimeError_("container is not running")
        stream = FakeExecStream(self.exec_handler(container_id, cmd), tty)
        self.exec_streams.append(stream)
        return stream

    async def attach(self, container_id: str, stdin: bool = False, tty: bool = False) -> FakeExecStream:
        """A stream with no output: the fake container writes nothing after it started."""
        self._call("attach", container_id)
        if self._container(container_id).status.state != ContainerState.RUNNING:
            raise RuntimeError_("container is not running")
        return FakeExecStream(ExecResult(0, b"", b""), tty)

    async def logs(self, container_id: str, options: LogOptions) -> AsyncIterator[LogLine]:
        lines = [line for line in self._container(container_id).logs
                 if options.since is None or line.timestamp >= options.since]
        if options.tail is not None:
            lines = lines[-options.tail:] if options.tail else []
        for line in lines:
            yield line

    async def container_stats(self, container_id: str) -> ContainerStats:
        self._container(container_id)
        return ContainerStats(container_id, _now(), 0, 0, 0)

    async def pod_stats(self, sandbox_id: str) -> PodStats:
        self._sandbox(sandbox_id)
        stats = [await self.container_stats(c.status.id) for c in self.containers.values()
                 if c.status.sandbox_id == sandbox_id]
        return PodStats(sandbox_id, _now(), 0, 0, stats)
