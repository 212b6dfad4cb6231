"""The CRI-like boundary under the kubelet: sandbox, container and image services, their configs and statuses.

Shaped after Kubernetes' cri-api (RuntimeService / ImageService) but small and Pythonic. The kubelet turns a
Pod into these configs (it resolves volumes, subPaths, env sources, DNS policy); the runtime only runs them.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import AsyncIterator, Callable, Protocol

from images.auth import Keychain

__all__ = [
    "DNSConfig", "HostAlias", "SandboxConfig", "SandboxState", "SandboxStatus", "Mount", "Resources",
    "SecurityContext", "ContainerConfig", "ContainerState", "ContainerStatus", "ExecResult", "ContainerStats",
    "PodStats", "LogOptions", "LogLine", "RuntimeError_", "NotFound", "InvalidConfig", "ExecTimeout", "SandboxService",
    "ContainerService", "ImageService", "ImageManager", "ResolvedImage", "PulledImage", "Runtime", "ExecStream",
    "STDOUT", "STDERR",
]

STDOUT, STDERR = 1, 2  # the streams of ExecStream.output(), numbered as the pods/exec channels


class RuntimeError_(Exception):
    """A runtime operation failed; the message is meant for the user (it ends up in a pod's status)."""


class NotFound(RuntimeError_):
    pass


class ExecTimeout(RuntimeError_):
    """An exec did not finish within its timeout (an exec probe then fails)."""


class InvalidConfig(RuntimeError_):
    """The container cannot be created as configured (Kubernetes: CreateContainerConfigError)."""


@dataclass
class HostAlias:
    ip: str
    hostnames: list[str]


@dataclass
class DNSConfig:
    """What goes into the pod's resolv.conf (the kubelet computes it from dnsPolicy/dnsConfig)."""
    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


@dataclass
class SandboxConfig:
    name: str
    namespace: str
    uid: str
    hostname: str = ""            # defaults to the pod name
    fqdn: str = ""                # hostname.subdomain.namespace.svc.<domain> when the pod has a subdomain
    dns: DNSConfig | None = None  # None: the host's resolv.conf (dnsPolicy Default)
    host_aliases: list[HostAlias] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    # hostNetwork: the pod uses the node's network namespace (and address `host_ip`) instead of its own.
    host_network: bool = False
    host_ip: str = ""
    host_pid: bool = False        # hostPID: the containers see (and are in) the node's PID namespace
    host_ipc: bool = False        # hostIPC: the node's IPC namespace and its /dev/shm
    share_pid: bool = False       # shareProcessNamespace: the containers share one PID namespace, the sandbox's


class SandboxState(str, enum.Enum):
    READY = "ready"
    NOT_READY = "notready"


@dataclass
class SandboxStatus:
    id: str
    config: SandboxConfig
    state: SandboxState
    ip: str
    created_at: datetime
    netns: str                    # path of the network namespace file


@dataclass
class Mount:
    container_path: str
    host_path: str
    read_only: bool = False       # subPath is resolved by the caller into host_path


@dataclass
class Resources:
    cpu_limit_millis: int | None = None
    cpu_request_millis: int | None = None
    memory_limit_bytes: int | None = None
    pids_limit: int | None = None


@dataclass
class SecurityContext:
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool = False
    read_only_root_filesystem: bool = False
    privileged: bool = False
    allow_privilege_escalation: bool | None = None
    capabilities_add: list[str] = field(default_factory=list)
    capabilities_drop: list[str] = field(default_factory=list)
    seccomp_profile: str = "RuntimeDefault"  # RuntimeDefault | Unconfined | Localhost
    seccomp_localhost_path: str = ""         # Localhost: the profile file, resolved by the kubelet


@dataclass
class ContainerConfig:
    name: str
    image: str
    command: list[str] | None = None  # replaces the image ENTRYPOINT
    args: list[str] | None = None     # replaces the image CMD
    env: list[tuple[str, str]] = field(default_factory=list)
    working_dir: str = ""
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    security: SecurityContext = field(default_factory=SecurityContext)
    tty: bool = False
    stdin: bool = False        # the container's stdin stays open for attach (pod spec `stdin`)
    stdin_once: bool = False   # ... and is closed when the first attached client closes it (`stdinOnce`)
    pid_namespace_of: str = ""  # a running container whose PID namespace this one joins (ephemeral --target)
    labels: dict[str, str] = field(default_factory=dict)


class ContainerState(str, enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    image: str
    state: ContainerState
    pid: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""               # Completed, Error, OOMKilled
    log_path: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes                  # empty with a TTY: the terminal merges both streams


@dataclass
class ContainerStats:
    container_id: str
    timestamp: datetime
    cpu_usage_ns: int
    memory_usage_bytes: int
    memory_working_set_bytes: int
    cpu_throttled_periods: int = 0   # CFS periods in which the CPU limit held the container back


@dataclass
class PodStats:
    sandbox_id: str
    timestamp: datetime
    cpu_usage_ns: int
    memory_working_set_bytes: int
    containers: list[ContainerStats]


@dataclass
class LogOptions:
    follow: bool = False
    tail: int | None = None        # last N lines
    since: datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


@dataclass
class LogLine:
    timestamp: datetime
    stream: str                    # stdout | stderr
    text: str                      # without the trailing newline
    raw_timestamp: str = ""        # RFC3339Nano as written by the monitor (nanoseconds kept)

    def format(self, timestamps: bool = False) -> str:
        """What `kubectl logs [--timestamps]` prints for this line."""
        return f"{self.raw_timestamp} {self.text}" if timestamps else self.text


class ExecStream(Protocol):
    """A command running in a container (ContainerService.start_exec), streamed both ways.

    Read `output()` to its end, feed `write_stdin` meanwhile, then `wait()` for the exit code; `close()` at the end.
    """
    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(STDOUT or STDERR, chunk) as the command writes them, until it closed its output. With a TTY all
        output is STDOUT (the terminal merges the streams)."""
        ...

    async def write_stdin(self, data: bytes) -> None: ...

    def close_stdin(self) -> None:
        """End of input. With a TTY the terminal stays open (as in Kubernetes): the command ends it itself."""
        ...

    def resize(self, width: int, height: int) -> None:
        """The terminal's new size (TTY only; ignored otherwise)."""
        ...

    async def wait(self) -> int: ...

    async def terminate(self) -> None:
        """Stop the command (the client went away)."""
        ...

    def close(self) -> None: ...


class SandboxService(Protocol):
    async def run_sandbox(self, config: SandboxConfig) -> str: ...
    async def stop_sandbox(self, sandbox_id: str) -> None: ...
    async def remove_sandbox(self, sandbox_id: str) -> None: ...
    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus: ...
    async def list_sandboxes(self, uid: str | None = None) -> list[SandboxStatus]:
        """Every sandbox, or those of the pod with this uid."""
        ...


class ContainerService(Protocol):
    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str: ...
    async def start_container(self, container_id: str) -> None: ...
    async def stop_container(self, container_id: str, timeout: float) -> None: ...
    async def remove_container(self, container_id: str) -> None: ...
    async def container_status(self, container_id: str) -> ContainerStatus: ...
    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]: ...
    async def exec(self, container_id: str, cmd: list[str], stdin: bytes | None = None, tty: bool = False,
                   timeout: float | None = None) -> ExecResult: ...
    async def start_exec(self, container_id: str, cmd: list[str], stdin: bool = False,
                         tty: bool = False) -> ExecStream:
        """The command started in the running container (RuntimeError_ if it is not running); the caller
        drives the returned stream to its end and closes it."""
        ...
    async def attach(self, container_id: str, stdin: bool = False, tty: bool = False) -> ExecStream:
        """The running container's own stdio (RuntimeError_ if it is not running); ending the stream detaches."""
        ...
    def logs(self, container_id: str, options: LogOptions) -> AsyncIterator[LogLine]: ...
    async def container_stats(self, container_id: str) -> ContainerStats: ...
    async def pod_stats(self, sandbox_id: str) -> PodStats: ...


class ImageService(Protocol):
    """What the runtime needs from the image store (images.store.ImageStore satisfies it)."""
    def config(self, ref: str) -> dict: ...
    def prepare_rootfs(self, ref: str, container_id: str) -> Path: ...
    def release_rootfs(self, container_id: str) -> None: ...


class ResolvedImage(Protocol):
    @property
    def id(self) -> str: ...


class PulledImage(Protocol):
    @property
    def bytes(self) -> int: ...


class ImageManager(ImageService, Protocol):
    """What the kubelet's pull manager needs on top: is an image here, and fetch it (blocking calls: the
    kubelet runs them in a thread). `pull` raises images.errors.ImageError when it fails; `keychain` maps
    registry hosts to the credentials of the pod's pull secrets."""
    def resolve(self, ref: str) -> ResolvedImage | None: ...
    def pull(self, ref: str, keychain: Keychain | None = None) -> PulledImage: ...


class Runtime(SandboxService, ContainerService, Protocol):
    """Everything the pod workers use: RuncRuntime and FakeRuntime both satisfy it."""
    @property
    def in_memory(self) -> bool:
        """True when `images`, `container_exits` and `rotate_logs` return at once (FakeRuntime): the kubelet
        then calls them inline instead of in a worker thread (hundreds of hollow nodes share one process)."""
        ...
    @property
    def images(self) -> ImageManager: ...

    def container_exits(self) -> dict[str, tuple[str, bool]]:
        """Container id -> (sandbox id, exited), cheaply (no process per call): what a relist compares."""
        ...

    def watch_exits(self, notify: Callable[[], None]) -> None:
        """From now on, call notify() (in the event loop) soon after a container exits, one that is live now or
        one created later."""
        ...

    def rotate_logs(self) -> int:
        """Rotate container logs grown beyond the configured size; returns how many were rotated."""
        ...
