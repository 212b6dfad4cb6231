"""Container monitor: Debian `conmon`, as CRI-O uses it.

conmon double-forks into its own session, runs `runc create`, then owns the container's stdio: it writes the
CRI-format log and, when the container exits, the exit code (to `<exit dir>/<id>` and `<persist dir>/exit`),
and an `oom` file in the persist dir if the cgroup saw an OOM kill. So containers and their logs survive the
kubelet; a new kubelet only reads these files.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kubelet.runtime.interface import RuntimeError_

CONMON = shutil.which("conmon") or "/usr/bin/conmon"


@dataclass
class MonitorPaths:
    """Files of one container's monitor, all under the container's state directory."""
    dir: Path

    @property
    def log(self) -> Path:
        return self.dir / "ctr.log"

    @property
    def exit_dir(self) -> Path:
        return self.dir / "exits"

    @property
    def persist(self) -> Path:
        return self.dir / "persist"

    @property
    def exit_file(self) -> Path:
        return self.persist / "exit"

    @property
    def oom_file(self) -> Path:
        return self.persist / "oom"

    @property
    def conmon_pid(self) -> Path:
        return self.dir / "conmon.pid"

    @property
    def container_pid(self) -> Path:
        return self.dir / "ctr.pid"

    @property
    def stderr(self) -> Path:
        return self.dir / "conmon.err"


async def create_with_conmon(cid: str, name: str, bundle: Path, paths: MonitorPaths, runc_binary: str,
                             runc_root: str, tty: bool, timeout: float = 30) -> int:
    """Start conmon, which runs `runc create`; returns the container's init PID (state `created`)."""
    for d in (paths.exit_dir, paths.persist, paths.dir / "sockets"):
        d.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    argv = [CONMON, "--cid", cid, "--cuuid", cid, "--name", name, "--runtime", runc_binary,
            "--runtime-arg", f"--root={runc_root}", "--bundle", str(bundle),
            "--exit-dir", str(paths.exit_dir), "--persist-dir", str(paths.persist),
            "--log-path", f"k8s-file:{paths.log}", "-P", str(paths.conmon_pid), "-p", str(paths.container_pid),
            "--socket-dir-path", str(paths.dir / "sockets"), "--syslog=false", "--log-level=error"]
    if tty:
        argv.append("--terminal")
    try:
        with open(paths.stderr, "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err,
                pass_fds=(write_fd,), env={"_OCI_SYNCPIPE": str(write_fd), "PATH": os.environ.get("PATH", "")})
        os.close(write_fd)
        write_fd = -1
        await proc.wait()  # the first conmon process exits once its monitor child is detached
        # The monitor reports {"pid": N} (or a negative pid and a message) on the sync pipe after runc create.
        data = await asyncio.wait_for(asyncio.to_thread(_read_line, read_fd), timeout)
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
    try:
        msg = json.loads(data.splitlines()[0]) if data.strip() else {}
    except ValueError:
        msg = {}
    pid = int(msg.get("pid", msg.get("data", -1)))
    if pid <= 0:
        detail = msg.get("message") or paths.stderr.read_text(errors="replace").strip() or "conmon exited"
        raise RuntimeError_(f"creating container {name}: {detail.strip()}")
    return pid


def _read_line(fd: int) -> bytes:
    """Up to the first newline or EOF (the monitor may keep its end open while the container lives)."""
    data = b""
    while b"\n" not in data and (chunk := os.read(fd, 4096)):
        data += chunk
    return data


def conmon_alive(paths: MonitorPaths) -> bool:
    try:
        pid = int(paths.conmon_pid.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(CONMON.encode())


def read_exit(paths: MonitorPaths) -> tuple[int, float] | None:
    """(exit code, finish time) once conmon recorded the exit."""
    try:
        text = paths.exit_file.read_text().strip()
        return int(text), paths.exit_file.stat().st_mtime
    except (FileNotFoundError, ValueError):
        return None
