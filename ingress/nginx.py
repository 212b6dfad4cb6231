"""The nginx master this controller runs: configuration swaps that never break a running proxy, graceful reloads.

Every file lives in the state directory: nginx.conf (the live configuration), certs/ (one PEM per certificate,
named by its digest, so a candidate configuration never changes a file the live one uses), nginx.pid, error.log.
A new configuration is written beside the live one and checked with `nginx -t` first; only a configuration that
passes replaces the live one, then SIGHUP makes the master start new workers with it while the old ones finish
their requests (nginx's graceful reload: no connection is dropped). nginx runs in the foreground (`daemon off`)
as this process' child; a master left by a controller that was killed is found again through the pid file
and stopped before a new one starts (and by `pkube ingress --cleanup` on `cluster down`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from pklib.fdwait import run_process
from pklib.files import write_atomic

from .render import Rendered

log = logging.getLogger("ingress.nginx")

CHECK_TIMEOUT = 30.0  # seconds `nginx -t` may take to judge a configuration


class NginxError(Exception):
    """nginx could not be started or refused a configuration (the message has nginx's own words)."""


def _is_our_master(pid: int, conf: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # the master rewrites its argv into one title: "nginx: master process /usr/sbin/nginx -p ... -c <conf> ..."
    return cmdline.startswith(b"nginx: master process") and f" -c {conf} ".encode() in cmdline.replace(b"\0", b" ")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def stop_master(pid: int, timeout: float = 10.0) -> None:
    """SIGQUIT (finish the open requests, then exit), SIGTERM after `timeout`, SIGKILL as a last resort."""
    for sig, wait in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def _orphaned_workers(group: int) -> list[int]:
    """nginx workers still in the process group of a master that is gone (a master killed with SIGKILL leaves its
    workers running, holding the listening sockets). The master started its own session, so its pid is the group."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            title = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(group) and title.startswith(b"nginx: "):
            found.append(int(entry.name))
    return found


def cleanup(state_dir: Path) -> list[str]:
    """Stop the nginx master recorded in `state_dir` if it still runs (after the controller was killed), or the
    workers it left if it was killed itself."""
    conf = state_dir / "nginx.conf"
    pid = _read_pid(state_dir / "nginx.pid")
    if not pid:
        return []
    if _is_our_master(pid, conf):
        stop_master(pid)
        if _alive(pid):
            return [f"nginx master {pid} did not stop"]
    elif not _alive(pid):
        orphans = _orphaned_workers(pid)
        for worker in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(w) for w in orphans):
            time.sleep(0.05)
        if left := [w for w in orphans if _alive(w)]:
            return [f"nginx workers {left} of a killed master did not stop"]
    return []


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Nginx:
    def __init__(self, binary: str, state_dir: Path):
        self.binary = binary
        self.dir = state_dir
        self.conf = state_dir / "nginx.conf"
        self.candidate = state_dir / "nginx.conf.new"
        self.certs_dir = state_dir / "certs"
        self.pid_file = state_dir / "nginx.pid"
        self.error_log = state_dir / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.reloads = 0

    def prepare(self) -> None:
        """Make the directories and stop a master a killed predecessor left running."""
        for d in (self.dir, self.certs_dir, self.dir / "tmp"):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        cleanup(self.dir)

    def _args(self, conf: Path) -> list[str]:
        return [self.binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.error_log)]

    async def check(self, conf: Path) -> str | None:
        """nginx's complaint about a configuration file, None when `nginx -t` accepts it."""
        try:
            code, out, err = await run_process([*self._args(conf), "-t", "-q"], timeout=CHECK_TIMEOUT)
        except TimeoutError:
            return f"nginx -t gave no answer in {CHECK_TIMEOUT:g}s"
        if code == 0:
            return None
        text = (out + err).decode(errors="replace")
        lines = [ln for ln in text.splitlines() if "[emerg]" in ln or "[alert]" in ln]
        return "; ".join(lines) or text.strip() or f"nginx -t exited {code}"

    async def apply(self, rendered: Rendered) -> bool:
        """Install `rendered` if nginx accepts it and (re)load; False (live configuration untouched) if not."""
        for name, pem in rendered.certs.items():
            path = self.certs_dir / name
            if not path.exists():
                fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
                os.replace(path.with_suffix(".tmp"), path)
        write_atomic(self.candidate, rendered.config)
        problem = await self.check(self.candidate)
        if problem is not None:
            log.error("nginx refused the new configuration, keeping the running one: %s", problem)
            return False
        if self.conf.exists() and self.conf.read_text() == rendered.config and self.running():
            self.candidate.unlink(missing_ok=True)
            return True
        os.replace(self.candidate, self.conf)
        for stale in self.certs_dir.glob("*.pem"):
            if stale.name not in rendered.certs and stale.name != "default.pem":
                stale.unlink(missing_ok=True)
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGHUP)
            self.reloads += 1
        else:
            await self.start()
        return True

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, timeout: float = 10.0) -> None:
        stderr = self.dir / "nginx.stderr"
        # nginx quits (gracefully) with its controller, even one that is killed: the kernel sends the master
        # SIGQUIT when its parent dies (what the cluster supervisor does for its components with setpriv).
        setpriv = shutil.which("setpriv")
        guard = [setpriv, "--pdeathsig", "QUIT", "--"] if setpriv else []
        with open(stderr, "wb") as out:  # what nginx says before its error log is open (e.g. a port in use)
            self.proc = subprocess.Popen([*guard, *self._args(self.conf)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = stderr.read_text(errors="replace").strip().splitlines()
                self.proc = None
                raise NginxError(f"nginx exited at start: {err[-1] if err else self._last_error()}")
            if _read_pid(self.pid_file) == self.proc.pid:
                log.info("nginx master %d started", self.proc.pid)
                return
            await asyncio.sleep(0.02)
        raise NginxError("nginx did not write its pid file in time")

    def _last_error(self) -> str:
        try:
            lines = self.error_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no error log"
        return lines[-1] if lines else "no error log"

    async def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        await asyncio.to_thread(stop_master, proc.pid)
        proc.wait()
        self.pid_file.unlink(missing_ok=True)
