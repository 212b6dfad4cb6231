"""Pod sandboxes: the network namespace (kubelet/network), UTS+IPC namespaces, the pod files, a state file.

UTS and IPC namespaces are held by bind-mounting their nsfs files (what `ip netns` does for network
namespaces), made by a short-lived kubelet thread (hold_uts_ipc). Compared with a pause container this costs no
process at all instead of a runc container + conmon per pod, keeps sandbox setup
within a few tens of milliseconds, and leaves nothing to crash and restart. (A shared PID namespace needs a
live init process: a pod with shareProcessNamespace gets one, `unshare --pid=FILE --fork` of PAUSE started in its
own session (it outlives a kubelet restart), whose PID namespace is held at FILE and joined by every container of
the pod, as Kubernetes' pause process is; it ends with the sandbox.)

A sandbox is returned with its IP and an empty network namespace; the veth, address and routes are wired in a
thread meanwhile (`_wire`), side by side with the creation of its first containers (runc create only needs the
namespace to exist), and a container starts only once they are there (`network_ready`, called by the runtime's
start_container). Kubernetes' CRI finishes the network before RunPodSandbox returns; the order here keeps its
guarantee (a container's process never runs without its network) and takes the ~20 ms of netlink off a pod's start.
A failed wiring, or one a kubelet stop cut short, makes the sandbox not ready: the pod worker makes a new one.
"""
from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import errno
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pklib.fdwait import reaped_on_error, wait_process
from pklib.netns import in_thread

from kubelet.network.manager import NodeNetwork, PodNetworkInfo
from kubelet.runtime.podfiles import DNSConfig, HostAlias, write_pod_files
from kubelet.runtime.statefile import OwnerIndex, load_state, save_state
from kubelet.runtime.interface import (InvalidConfig, NotFound, RuntimeError_, SandboxConfig, SandboxState,
                                       SandboxStatus)

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2
_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,62}[a-z0-9])?$")


# A hostNetwork sandbox's "namespace": the kubelet's own, for port-forward and probes (containers get no
# network namespace of their own in their OCI spec, so they stay in the one runc starts in: the same).
HOST_NETNS = "/proc/self/ns/net"


def unmount(path: Path) -> None:
    """Lazy-unmount a bind mount; not mounted / missing is fine (idempotent teardown)."""
    if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")


CLONE_NEWUTS, CLONE_NEWIPC = 0x04000000, 0x08000000
MS_BIND = 0x1000


async def hold_uts_ipc(ns_dir: Path, hostname: str, ipc_ns: bool = True) -> tuple[Path, Path | None]:
    """New UTS (with `hostname`) and, unless `ipc_ns` is False (hostIPC), IPC namespaces held by bind mounts.

    Made in a fresh thread of the kubelet (as pklib.netns makes network namespaces): it unshares them, sets the
    hostname and bind-mounts its /proc/thread-self/ns files, then ends, taking the namespaces' other user with it;
    `unshare --uts=FILE --ipc=FILE hostname NAME` did the same at the cost of two processes per pod."""
    ns_dir.mkdir(parents=True, exist_ok=True)
    uts, ipc = ns_dir / "uts", (ns_dir / "ipc" if ipc_ns else None)
    uts.touch()
    if ipc:
        ipc.touch()
    name = hostname.encode()

    def make() -> None:
        def check(ret: int, what: str) -> None:
            if ret != 0:
                err = ctypes.get_errno()
                raise RuntimeError_(f"creating UTS/IPC namespaces: {what}: {os.strerror(err)}")
        check(_libc.unshare(CLONE_NEWUTS | (CLONE_NEWIPC if ipc else 0)), "unshare")
        check(_libc.sethostname(name, len(name)), f"sethostname {hostname!r}")
        for kind, path in (("uts", uts), ("ipc", ipc)):
            if path is not None:
                check(_libc.mount(f"/proc/thread-self/ns/{kind}".encode(), str(path).encode(), b"none", MS_BIND,
                                  None), f"mount {path}")

    await asyncio.to_thread(in_thread, make)
    return uts, ipc


# The init of a shared PID namespace, as Kubernetes' pause: shows as `pause`, reaps the orphans of every container
# (they become its children) and otherwise sleeps. Perl is in every Debian (perl-base is essential).
PAUSE = ["perl", "-e", '$0 = "pause"; $SIG{CHLD} = sub {}; while (1) { 1 while waitpid(-1, 1) > 0; sleep 3600 }']


async def hold_pid_namespace(path: Path) -> None:
    """A new PID namespace whose init (PAUSE) stays up until end_pid_namespace, bind-mounted at `path`.

    `setsid --fork`: the holder is nobody's child here (nothing to reap), its own session (a kubelet stop or
    restart leaves it, as it leaves the containers); `--kill-child`: its init dies with it."""
    path.touch()
    # no pipes: the holder (setsid's child) would keep them open for ever
    proc = subprocess.Popen(["setsid", "--fork", "unshare", f"--pid={path}", "--fork", "--kill-child", *PAUSE],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with reaped_on_error(proc):
        code = await wait_process(proc, 10)  # setsid's own process exits at once
    deadline = time.monotonic() + 5
    while not os.path.ismount(path):  # unshare binds it once its child exists
        if code != 0 or time.monotonic() > deadline:
            end_pid_namespace(path)
            raise RuntimeError_(f"creating the pod's PID namespace at {path} failed")
        await asyncio.sleep(0.01)


_CMDLINE_READ = 64 * 1024  # the pause holder's argv is short


def _pid_namespace_members(path: Path) -> list[int]:
    """The processes in the PID namespace held at `path`, and the unshare holding it (its arguments name `path`)."""
    try:
        ns = os.stat(path)
    except FileNotFoundError:
        return []
    held = os.path.ismount(path)
    marker = f"--pid={path}".encode()
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if held:
                st = os.stat(f"/proc/{pid}/ns/pid")
                if (st.st_dev, st.st_ino) == (ns.st_dev, ns.st_ino):
                    out.append(int(pid))
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:  # a container's process may have a huge argv:
                if marker in f.read(_CMDLINE_READ).split(b"\0"):  # the holder's marker is near the start
                    out.append(int(pid))
        except OSError:
            continue  # exited meanwhile
    return out


def end_pid_namespace(path: Path) -> None:
    """Kill every process of the pod's PID namespace and its holder, then free the mount (blocking; idempotent)."""
    deadline = time.monotonic() + 10
    while members := _pid_namespace_members(path):
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError_(f"processes {members} of the pod's PID namespace do not end")
        time.sleep(0.02)
    unmount(path)


def _config_from_json(d: dict[str, Any]) -> SandboxConfig:
    d = dict(d)
    d["dns"] = DNSConfig(**d["dns"]) if d.get("dns") else None
    d["host_aliases"] = [HostAlias(**a) for a in d.get("host_aliases", [])]
    return SandboxConfig(**d)


class Sandboxes:
    """Sandbox-level resources only; the runtime facade stops/removes the containers first."""

    def __init__(self, state_dir: Path, network: NodeNetwork, cgroup_parent: str) -> None:
        self.dir = state_dir / "sandboxes"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.network = network
        self.cgroup_parent = cgroup_parent
        self._wiring: dict[str, asyncio.Task[None]] = {}  # sandbox id → its network being wired (see create)
        self._index = OwnerIndex(self.dir, "sandbox.json", lambda state: state["config"]["uid"])

    def _path(self, sandbox_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", sandbox_id):
            raise NotFound(f"sandbox {sandbox_id!r} not found")
        return self.dir / sandbox_id

    def load(self, sandbox_id: str) -> dict[str, Any]:
        return load_state(self._path(sandbox_id) / "sandbox.json", f"sandbox {sandbox_id}")

    def _save(self, state: dict[str, Any]) -> None:
        save_state(self._path(state["id"]) / "sandbox.json", state)

    def cgroup_rel(self, uid: str) -> str:
        return f"{self.cgroup_parent}/pod{uid}"

    async def create(self, config: SandboxConfig) -> dict[str, Any]:
        hostname = config.hostname or config.name
        if not _HOSTNAME.match(hostname):
            raise InvalidConfig(f"invalid pod hostname {hostname!r}: must be a lower case RFC 1123 name, "
                                "at most 64 characters")
        sandbox_id = uuid.uuid4().hex
        sdir = self._path(sandbox_id)
        sdir.mkdir(parents=True)
        state: dict[str, Any] = {"id": sandbox_id, "config": dataclasses.asdict(config), "hostname": hostname,
                                 "created_at": datetime.now(timezone.utc).isoformat(),
                                 "state": SandboxState.READY.value}

        prepared: list[PodNetworkInfo] = []

        async def network() -> None:
            if config.host_network:
                # The node's own namespace (the kubelet's: on a node that is a netns, that one), its address.
                state.update(ip=config.host_ip, netns=HOST_NETNS, host_network=True)
            else:
                # the IP and an empty netns now; the veth, address and routes while the first container is
                # created (network_ready: it starts only once they are there)
                net = await asyncio.to_thread(self.network.prepare, sandbox_id)
                prepared.append(net)
                state.update(ip=net.ip, netns=net.netns, network_pending=True)

        try:
            # the network (netlink, in a thread) and the UTS/IPC namespaces (a process) are made side by side;
            # both finish, failed or not, before anything is released
            net_done, namespaces = await asyncio.gather(
                network(), hold_uts_ipc(sdir / "ns", hostname, ipc_ns=not config.host_ipc), return_exceptions=True)
            for outcome in (net_done, namespaces):
                if isinstance(outcome, BaseException):
                    raise outcome
            assert not isinstance(namespaces, BaseException)
            uts, ipc = namespaces
            # no "ipc" path with hostIPC: the containers stay in the node's IPC namespace (as for the PID one)
            state.update(uts=str(uts), ipc=str(ipc) if ipc else "", host_pid=config.host_pid, host_ipc=config.host_ipc)
            if config.share_pid and not config.host_pid:
                state["pid_ns"] = str(sdir / "ns" / "pid")  # release() ends it at this path, saved or not
                await hold_pid_namespace(Path(state["pid_ns"]))
            files = write_pod_files(sdir / "etc", hostname, state["ip"], config.fqdn, config.host_aliases, config.dns)
            state["pod_files"] = {k: str(v) for k, v in files.items()}
            self._save(state)
        except BaseException:
            await self.release(sandbox_id)
            shutil.rmtree(sdir, ignore_errors=True)
            raise
        if prepared:
            self._wiring[sandbox_id] = asyncio.create_task(self._wire(sandbox_id, prepared[0]))
        return state

    async def _wire(self, sandbox_id: str, net: PodNetworkInfo) -> None:
        """Wire the prepared netns; the outcome goes to the state file (a failure makes the sandbox not ready)."""
        try:
            await asyncio.to_thread(self.network.wire, sandbox_id, net)
            error = None
        except Exception as e:  # the network was torn down (NodeNetwork.wire): the sandbox is made again
            error = str(e) or type(e).__name__
        finally:
            self._wiring.pop(sandbox_id, None)
        state = self.load(sandbox_id)
        state.pop("network_pending", None)
        if error is not None:
            state.update(network_error=error, state=SandboxState.NOT_READY.value)
        self._save(state)

    async def network_ready(self, sandbox_id: str) -> None:
        """Return once the sandbox's network is wired; RuntimeError_ if that failed or never finished (the
        kubelet stopped meanwhile). A container starts only after this."""
        task = self._wiring.get(sandbox_id)
        if task is not None:
            await asyncio.shield(task)
        state = self.load(sandbox_id)
        if state.get("network_error"):
            raise RuntimeError_(f"setting up the network of sandbox {sandbox_id} failed: {state['network_error']}")
        if state.get("network_pending"):
            raise RuntimeError_(f"the network of sandbox {sandbox_id} was never finished (the kubelet stopped "
                                "while it was set up)")

    async def release(self, sandbox_id: str) -> None:
        """Free the namespaces and the IP (StopPodSandbox); idempotent."""
        sdir = self._path(sandbox_id)
        wiring = self._wiring.get(sandbox_id)
        if wiring is not None:
            await asyncio.shield(wiring)  # a netlink thread still at work on it; never raises
        await asyncio.to_thread(self.network.teardown, sandbox_id)
        await asyncio.to_thread(end_pid_namespace, sdir / "ns" / "pid")
        for ns in ("uts", "ipc"):
            unmount(sdir / "ns" / ns)
        if (sdir / "sandbox.json").exists():
            state = self.load(sandbox_id)
            if state["state"] != SandboxState.NOT_READY.value:
                state["state"] = SandboxState.NOT_READY.value
                self._save(state)

    def remove(self, sandbox_id: str) -> None:
        shutil.rmtree(self._path(sandbox_id), ignore_errors=True)

    def gc_incomplete(self) -> None:
        """Remove what a sandbox creation cut short (the process died) left: no state file, maybe ns mounts.
        Only safe while no other process creates sandboxes in this state dir (at kubelet start)."""
        for p in self.dir.iterdir():
            if not (p / "sandbox.json").exists():
                end_pid_namespace(p / "ns" / "pid")
                for ns in ("uts", "ipc"):
                    unmount(p / "ns" / ns)
                shutil.rmtree(p, ignore_errors=True)

    def ids(self, uid: str | None = None) -> list[str]:
        """The sandboxes (of the pod `uid`)."""
        return self._index.ids(uid)

    def status(self, state: dict[str, Any]) -> SandboxStatus:
        ready = SandboxState(state["state"])
        if state.get("network_pending") and state["id"] not in self._wiring:
            ready = SandboxState.NOT_READY  # its wiring was cut short by a kubelet stop
        return SandboxStatus(id=state["id"], config=_config_from_json(state["config"]),
                             state=ready, ip=state.get("ip", ""),
                             created_at=datetime.fromisoformat(state["created_at"]), netns=state.get("netns", ""))
