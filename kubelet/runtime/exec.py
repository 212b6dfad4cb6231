"""Running a command in a running container with `runc exec` (exec probes, `pkctl exec`).

runc copies the container's process settings (env, cwd, user, capabilities) and replaces only the arguments.
With a TTY, runc needs a terminal on its own stdio: it gets the slave end of a fresh pty, we read the master.
"""
from __future__ import annotations

import asyncio
import os
import pty
import signal

from kubelet.runtime.interface import ExecResult, ExecTimeout, RuntimeError_
from kubelet.runtime.runccli import Runc

KILL_GRACE = 2.0


async def run_exec(runc: Runc, cid: str, cmd: list[str], stdin: bytes | None, tty: bool,
                   timeout: float | None) -> ExecResult:
    if not cmd:
        raise RuntimeError_("exec: no command given")
    if tty:
        return await _exec_tty(runc, cid, cmd, stdin, timeout)
    proc = await asyncio.create_subprocess_exec(
        *runc.argv("exec", cid, *cmd),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        await _terminate(proc)
        raise ExecTimeout(f"command {cmd!r} timed out after {timeout}s") from None
    return ExecResult(proc.returncode if proc.returncode is not None else -1, out, err)


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """runc forwards SIGTERM to the exec'd process; SIGKILL runc itself if that is not enough."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def _exec_tty(runc: Runc, cid: str, cmd: list[str], stdin: bytes | None, timeout: float | None) -> ExecResult:
    master, slave = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(*runc.argv("exec", "--tty", cid, *cmd),
                                                    stdin=slave, stdout=slave, stderr=slave,
                                                    start_new_session=True)
    finally:
        os.close(slave)
    try:
        if stdin:
            os.write(master, stdin)
        output = await asyncio.wait_for(asyncio.to_thread(_drain, master), timeout)
        code = await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        await _terminate(proc)
        raise ExecTimeout(f"command {cmd!r} timed out after {timeout}s") from None
    finally:
        os.close(master)
    return ExecResult(code, output, b"")


def _drain(fd: int) -> bytes:
    """Read the pty master until every slave holder closed it (EIO on Linux)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
