"""Running a command in a running container with `runc exec` (exec probes, `pkctl exec`, `kubectl exec`).

runc copies the container's process settings (env, cwd, user, capabilities) and replaces only the arguments.
With a TTY, runc needs a terminal on its own stdio: it gets the slave end of a fresh pty, we use the master.
runc relays between that terminal and the container's console, and copies our window size to the console when
it receives SIGWINCH (which is how a resize reaches the command).

`start_exec` gives a live session (output as it is produced, stdin as it arrives, resize: an
`interface.ExecStream`); `run_exec` — the buffered form exec probes use — is built on it.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import struct
import subprocess
import termios
import tty as tty_mod
from typing import IO, AsyncIterator

from kubelet.runtime.interface import STDERR, STDOUT, ExecResult, ExecTimeout, RuntimeError_
from kubelet.runtime.runccli import Runc
from pklib.fdwait import read_chunk, wait_fd, wait_process
from pklib.timeouts import wait_for

KILL_GRACE = 2.0
CHUNK = 65536


class ExecSession:
    """One running `runc exec` (an interface.ExecStream). `runc exec` is started with subprocess.Popen (vfork) and
    its pipes or pty are read in the event loop (pklib.fdwait says why not asyncio's subprocess)."""

    def __init__(self, proc: subprocess.Popen[bytes], master: int | None) -> None:
        self.proc = proc
        self._master = master  # the pty master with a TTY; None with pipes (non-blocking, read and written here)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                os.set_blocking(pipe.fileno(), False)

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(stream, chunk) pairs — STDOUT or STDERR — as the command writes them, until it closed its output."""
        if self._master is not None:
            while True:
                chunk = await _read_pty(self._master)
                if not chunk:
                    return
                yield STDOUT, chunk
        queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()

        async def pump(pipe: IO[bytes] | None, channel: int) -> None:
            while pipe is not None and (chunk := await read_chunk(pipe.fileno(), CHUNK)):
                await queue.put((channel, chunk))
            await queue.put((channel, b""))

        tasks = [asyncio.create_task(pump(self.proc.stdout, STDOUT)),
                 asyncio.create_task(pump(self.proc.stderr, STDERR))]
        try:
            open_streams = 2
            while open_streams:
                channel, chunk = await queue.get()
                if chunk:
                    yield channel, chunk
                else:
                    open_streams -= 1
        finally:
            for t in tasks:
                t.cancel()

    async def write_stdin(self, data: bytes) -> None:
        if self._master is not None:
            await _write_all(self._master, data)
        elif self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                await _write_all(self.proc.stdin.fileno(), data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the command stopped reading: like a terminal, drop what it will never read

    def close_stdin(self) -> None:
        """End of input. With a TTY the terminal stays open (as in Kubernetes): the command ends it with `exit`."""
        if self._master is None and self.proc.stdin is not None:
            self.proc.stdin.close()

    def resize(self, width: int, height: int) -> None:
        if self._master is None or self.proc.poll() is not None:
            return
        fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        self.proc.send_signal(signal.SIGWINCH)  # runc copies our terminal's size to the container's console

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    async def wait(self) -> int:
        code = await wait_process(self.proc, None)
        return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention

    async def terminate(self) -> None:
        """runc forwards the signal to the exec'd process — SIGHUP with a terminal (an interactive shell ignores
        SIGTERM), else SIGTERM; SIGKILL runc itself if that is not enough."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP if self._master is not None else signal.SIGTERM)
            try:
                await wait_process(self.proc, KILL_GRACE)
            except TimeoutError:
                self.proc.kill()
                await wait_process(self.proc, None)

    def close(self) -> None:
        if self._master is not None:
            os.close(self._master)
            self._master = None
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


async def start_exec(runc: Runc, cid: str, cmd: list[str], stdin: bool, tty: bool) -> ExecSession:
    if not cmd:
        raise RuntimeError_("exec: no command given")
    if not tty:
        proc = subprocess.Popen(runc.argv("exec", cid, *cmd), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return ExecSession(proc, None)
    master, slave = pty.openpty()
    # the container's own console (runc's) does the line discipline; ours must pass bytes through untouched.
    # runc makes it raw too, but only after it started relaying: early output would get a second \r
    tty_mod.setraw(slave)
    try:
        proc = subprocess.Popen(runc.argv("exec", "--tty", cid, *cmd), stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return ExecSession(proc, master)


async def run_exec(runc: Runc, cid: str, cmd: list[str], stdin: bytes | None, tty: bool,
                   timeout: float | None) -> ExecResult:
    """The whole exec at once: stdin written and closed, output collected until the command exits."""
    session = await start_exec(runc, cid, cmd, stdin is not None, tty)
    out, err = bytearray(), bytearray()

    async def run() -> int:
        if stdin:
            await session.write_stdin(stdin)
        session.close_stdin()
        async for channel, chunk in session.output():
            (out if channel == STDOUT else err).extend(chunk)
        return await session.wait()

    try:
        code = await wait_for(run(), timeout)
    except asyncio.TimeoutError:
        await session.terminate()
        raise ExecTimeout(f"command {cmd!r} timed out after {timeout}s") from None
    finally:
        if session.running:
            await session.terminate()
        session.close()
    return ExecResult(code, bytes(out), bytes(err))


async def _read_pty(fd: int) -> bytes:
    """One chunk from a (non-blocking) pty master; b"" once every slave holder closed it (EIO on Linux).
    Waits in the event loop rather than in a thread: a kubelet may hold many idle terminals."""
    while True:
        try:
            return os.read(fd, CHUNK)
        except BlockingIOError:
            await wait_fd(fd)
        except OSError:
            return b""


async def _write_all(fd: int, data: bytes) -> None:
    """All of `data` to a non-blocking pty master or pipe."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await wait_fd(fd, write=True)  # the command does not read as fast as the user types: wait for room
