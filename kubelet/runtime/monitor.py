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
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kubelet.runtime.interface import RuntimeError_
from kubelet.runtime.runccli import runc_message
from pklib.fdwait import read_line, wait_process

CONMON = shutil.which("conmon") or "/usr/bin/conmon"


@dataclass
class MonitorPaths:
    """Files of one container's monitor, all under the container's state directory."""
    dir: Path

    @property
    def log(self) -> Path:
        return self.dir / "ctr.log"

    @property
    def ctl(self) -> Path:
        """conmon's control FIFO (in the bundle dir): `2 0 0\n` makes it reopen the log file."""
        return self.dir / "ctl"

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


class ConmonLaunch:
    """A conmon started ahead of its container's bundle.

    conmon needs 2-3 ms to load (it links a dozen libraries) before it can run `runc create`; started first, it
    does that while the caller mounts the rootfs and writes config.json. It waits on its start pipe (`_OCI_STARTPIPE`, as podman uses it)
    until `create()`; `cancel()` stops it if the bundle cannot be made.
    """

    def __init__(self, proc: subprocess.Popen[bytes], start_fd: int, sync_fd: int, name: str,
                 paths: MonitorPaths) -> None:
        self._proc = proc
        self._start_fd = start_fd  # our end of the start pipe; -1 once conmon was let go
        self._sync_fd = sync_fd
        self._name = name
        self._paths = paths

    @classmethod
    def spawn(cls, cid: str, name: str, bundle: Path, paths: MonitorPaths, runc_binary: str, runc_root: str,
              tty: bool, log_size_max: int = 0, stdin: bool = False, stdin_once: bool = False) -> ConmonLaunch:
        """`log_size_max` > 0: conmon starts the log afresh once it grows beyond that many bytes (a backstop
        for the kubelet's rotation, which keeps the older lines)."""
        for d in (paths.exit_dir, paths.persist, paths.dir / "sockets"):
            d.mkdir(parents=True, exist_ok=True)
        start_r, start_w = os.pipe()
        sync_r, sync_w = os.pipe()
        argv = [CONMON, "--cid", cid, "--cuuid", cid, "--name", name, "--runtime", runc_binary,
                "--runtime-arg", f"--root={runc_root}", "--bundle", str(bundle),
                "--exit-dir", str(paths.exit_dir), "--persist-dir", str(paths.persist),
                "--log-path", f"k8s-file:{paths.log}", "-P", str(paths.conmon_pid), "-p", str(paths.container_pid),
                "--socket-dir-path", str(paths.dir / "sockets"), "--syslog=false", "--log-level=error"]
        if tty:
            argv.append("--terminal")
        if stdin:  # kept open for attached clients; without stdinOnce it outlives them
            argv += ["--stdin"] + ([] if stdin_once else ["--leave-stdin-open"])
        if log_size_max > 0:
            argv += ["--log-size-max", str(log_size_max)]
        try:
            # subprocess.Popen + a pidfd to reap it, not asyncio's subprocess: see pklib.fdwait.
            # cwd: on an OOM kill conmon also creates a file `oom` in its working directory, so that must be
            # the container's own directory, not wherever the kubelet was started.
            with open(paths.stderr, "wb") as err:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                        pass_fds=(start_r, sync_w), cwd=paths.dir,
                                        env={"_OCI_STARTPIPE": str(start_r), "_OCI_SYNCPIPE": str(sync_w),
                                             "PATH": os.environ.get("PATH", "")})
        except BaseException:
            os.close(start_w)
            os.close(sync_r)
            raise
        finally:
            os.close(start_r)
            os.close(sync_w)
        os.set_blocking(sync_r, False)
        return cls(proc, start_w, sync_r, name, paths)

    async def create(self, timeout: float = 30) -> int:
        """Let conmon run `runc create`; returns the container's init PID (state `created`)."""
        try:
            try:
                os.write(self._start_fd, b"go")
            except BrokenPipeError:
                pass  # conmon is gone already: the sync pipe is at EOF and its stderr tells why
            os.close(self._start_fd)
            self._start_fd = -1
            # conmon's monitor reports {"pid": N} (or a negative pid and a message) on the sync pipe once runc
            # create returned; it keeps its end open while the container lives, so read one line, not to EOF
            try:
                data = await read_line(self._sync_fd, timeout)
                # the first conmon process exits as soon as its monitor child is detached
                await wait_process(self._proc, timeout)
            except TimeoutError:
                raise RuntimeError_(f"creating container {self._name}: conmon gave no answer in {timeout}s") from None
        finally:
            self._close()
        try:
            msg = json.loads(data.splitlines()[0]) if data.strip() else {}
        except ValueError:
            msg = {}
        pid = int(msg.get("pid", msg.get("data", -1)))
        if pid <= 0:
            detail = runc_message(msg.get("message", "").encode()) if msg.get("message") else (
                self._paths.stderr.read_text(errors="replace").strip() or "conmon exited")
            raise RuntimeError_(f"creating container {self._name}: {detail}")
        return pid

    async def cancel(self) -> None:
        """Stop a conmon that was not let go yet (it is still our child, waiting on its start pipe)."""
        if self._start_fd >= 0 and self._proc.poll() is None:
            self._proc.kill()
            await wait_process(self._proc, 10)
        self._close()

    def _close(self) -> None:
        for fd in (self._start_fd, self._sync_fd):
            if fd >= 0:
                os.close(fd)
        self._start_fd = self._sync_fd = -1
        self._proc.poll()  # reap the first conmon process if it exited and nobody waited (a cancelled create)


def conmon_alive(paths: MonitorPaths) -> bool:
    try:
        pid = int(paths.conmon_pid.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(CONMON.encode())


class ExitWatch:
    """Tells, in the event loop, when containers end: conmon records its container's exit and then exits, so a
    pidfd on each live container's conmon turns readable right after the exit file is written. The kubelet's relist
    then waits for an exit instead of polling the exit files every second."""

    def __init__(self, notify: Callable[[], None]) -> None:
        self._notify = notify
        self._fds: dict[str, int] = {}  # container id -> pidfd of its conmon

    def add(self, cid: str, paths: MonitorPaths) -> None:
        """Watch a container's conmon (again: nothing new). One that has ended already notifies at once."""
        if cid in self._fds:
            return
        loop = asyncio.get_running_loop()
        fd = _monitor_pidfd(cid, paths)
        if fd is None:
            loop.call_soon(self._notify)
            return
        self._fds[cid] = fd
        loop.add_reader(fd, self._ended, cid)

    def discard(self, cid: str) -> None:
        fd = self._fds.pop(cid, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def close(self) -> None:
        for cid in list(self._fds):
            self.discard(cid)

    def _ended(self, cid: str) -> None:
        self.discard(cid)
        self._notify()


def _monitor_pidfd(cid: str, paths: MonitorPaths) -> int | None:
    """A pidfd on the conmon of container `cid`; None when it has ended (or its exit is recorded already)."""
    try:
        pid = int(paths.conmon_pid.read_text())
        fd = os.pidfd_open(pid)
    except (OSError, ValueError):
        return None
    try:
        # the pidfd pins the process: check that it is this container's conmon (not a process that got its
        # PID later), and that the exit was not recorded before the pidfd was opened
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        mine = args[:1] == [CONMON.encode()] and b"--cid" in args and cid.encode() in args
        if mine and read_exit(paths) is None:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def reopen_log(paths: MonitorPaths) -> bool:
    """Ask a running conmon to reopen its log file (after it was renamed: a rotation). False without a conmon."""
    try:
        fd = os.open(paths.ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO: no reader (conmon exited); ENOENT: never had one
        return False
    try:
        os.write(fd, b"2 0 0\n")  # conmon's REOPEN_LOGS_EVENT; the two numbers are a (unused) window size
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def read_exit(paths: MonitorPaths) -> tuple[int, float] | None:
    """(exit code, finish time) once conmon recorded the exit."""
    try:
        text = paths.exit_file.read_text().strip()
        return int(text), paths.exit_file.stat().st_mtime
    except (FileNotFoundError, ValueError):
        return None
