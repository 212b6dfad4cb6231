"""Thin async wrapper around the `runc` command line, always with pkube's own `--root` state directory."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import time
from typing import Any, Iterable

import orjson

from kubelet.runtime.interface import NotFound, RuntimeError_
from pklib.fdwait import run_process, wait_fd

RUNC = shutil.which("runc") or "/usr/sbin/runc"
EXEC_FIFO = "exec.fifo"   # runc's create/start handshake, in the container's directory under --root
INIT_CHECK = 0.1          # while waiting on the FIFO, look whether the init process died (as runc does)


class Runc:
    def __init__(self, root: str) -> None:
        self.root = root
        self.binary = RUNC
        # container id -> ((inode, mtime, size) of its state.json, (init PID, init start time)): runc's state file
        # is ~30 KB (the whole OCI config) and its init never changes, so each file is parsed once
        self._inits: dict[str, tuple[tuple[int, int, int], tuple[int, int]]] = {}

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]

    async def run(self, *args: str, timeout: float = 30) -> bytes:
        try:
            code, out, err = await run_process(self.argv(*args), timeout)
        except TimeoutError:
            raise RuntimeError_(f"runc {args[0]} timed out after {timeout}s") from None
        if code != 0:
            msg = runc_message(err)
            if "does not exist" in msg or "not exist" in msg:
                raise NotFound(msg)
            raise RuntimeError_(f"runc {args[0]}: {msg}")
        return out

    async def state(self, cid: str) -> dict[str, Any] | None:
        """{"id", "status", "pid"} of the container as runc sees it, or None when runc does not know it; read from
        runc's state file as list_states reads it (a `runc state` is a Go binary's start, ~8 ms, on every stop)."""
        return (await self.list_states([cid])).get(cid)

    async def start(self, cid: str, init_pid: int | None = None, timeout: float = 30) -> None:
        """`runc start`: let a `created` container's init process exec the container's command.

        runc's own handshake, done here without a second runc process (a runc start is a Go binary starting up,
        ~8 ms, a fifth of create+start): the init blocks opening `<root>/<id>/exec.fifo` for writing; the starter
        opens it for reading, reads the byte the init writes until the init's exec closes its end, and removes
        the FIFO, after which runc reports the container `running`. When that FIFO is not there (the container
        is not `created`, or a runc that works otherwise) or the init PID is unknown, `runc start` decides and
        words the error.
        """
        fifo = os.path.join(self.root, cid, EXEC_FIFO)
        fd = -1
        if init_pid is not None:  # opening the FIFO lets the init go on: only with a PID to watch it by
            try:
                fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                pass
        if fd >= 0 and not stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)
            fd = -1
        if fd < 0 or init_pid is None:
            await self.run("start", cid, timeout=timeout)
            return
        try:
            released = await _release_init(fd, init_pid, timeout)
        finally:
            os.close(fd)
        if not released:
            raise RuntimeError_("runc start: container process is already dead")
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass

    async def kill(self, cid: str, signal: str) -> None:
        try:
            await self.run("kill", cid, signal)
        except RuntimeError_ as e:
            # the process may have exited between our check and the signal; that is what we wanted anyway
            if "not running" not in str(e) and "process already finished" not in str(e) and not isinstance(e, NotFound):
                raise

    async def delete(self, cid: str) -> None:
        try:
            await self.run("delete", "--force", cid)
        except NotFound:
            pass

    async def list_states(self, ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """id -> {"id", "status", "pid"} of every container under this root (or of those of `ids` that exist), as
        `runc list` reports them.

        Read from runc's own state files, by runc's rule, without starting runc (a Go binary's start, ~8 ms, on
        every pod sync): the init process gone, a zombie, or another process with its PID (its start time
        differs) -> `stopped`, pid 0; its exec FIFO still there -> `created`; else `running` (pkube never pauses
        containers). A container whose state file is not written yet is left out, as runc leaves it out. Files
        that cannot be read as runc writes them: `runc list` decides. The root is the kubelet's own (under its
        runtime dir), mounted into no container: nothing a pod runs can plant files there."""
        wanted = None if ids is None else set(ids)
        try:
            return await asyncio.to_thread(self._read_states, wanted)
        except (OSError, ValueError, KeyError, TypeError):
            out = await self.run("list", "--format", "json")
            return {c["id"]: c for c in json.loads(out or b"null") or [] if wanted is None or c["id"] in wanted}

    def _read_states(self, wanted: set[str] | None = None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not os.path.isdir(self.root):
            return out  # runc makes its root with its first container
        present = os.listdir(self.root)
        for gone in set(list(self._inits)) - set(present):  # list(): one step under the GIL (lists run in threads)
            self._inits.pop(gone, None)
        for cid in present:
            if wanted is not None and cid not in wanted:
                continue
            cdir = os.path.join(self.root, cid)
            init = self._init(cid, os.path.join(cdir, "state.json"))
            if init is None:
                continue  # being created (runc writes the file once the init exists) or being deleted
            pid, start = init
            if pid <= 0 or _start_time(pid) != start:
                status, pid = "stopped", 0
            elif os.path.exists(os.path.join(cdir, EXEC_FIFO)):
                status = "created"
            else:
                status = "running"
            out[cid] = {"id": cid, "status": status, "pid": pid}
        return out

    def _init(self, cid: str, path: str) -> tuple[int, int] | None:
        """(init PID, its start time) from the container's state.json; parsed again only when the file changed."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._inits.get(cid)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            with open(path, "rb") as f:
                state = orjson.loads(f.read())
        except FileNotFoundError:
            return None
        if str(state["id"]) != cid:
            raise ValueError(f"{path} is the state of {state['id']!r}")
        init = (int(state["init_process_pid"]), int(state["init_process_start"]))
        self._inits[cid] = (key, init)
        return init


async def _release_init(fd: int, pid: int, timeout: float) -> bool:
    """Read the exec FIFO (non-blocking fd) until the init process closed it by exec'ing the command: True once
    it wrote its byte; False when it died without writing."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # readable means: the init wrote, or closed its end after opening it (never before it opened it)
            async with asyncio.timeout(INIT_CHECK):
                await wait_fd(fd)
        except TimeoutError:
            if not data and not _alive(pid):
                return bool(_read_nowait(fd))  # it may have written and exited since we last looked
            continue
        try:
            chunk = os.read(fd, 64)
        except BlockingIOError:
            continue
        if not chunk:
            return bool(data)
        data += chunk
    raise RuntimeError_(f"runc start: the container process did not start within {timeout}s")


def _read_nowait(fd: int) -> bytes:
    try:
        return os.read(fd, 64)
    except BlockingIOError:
        return b""


def _start_time(pid: int) -> int | None:
    """When the live process `pid` started (/proc/PID/stat field 22, clock ticks since boot); None when there is
    no such process or it is a zombie (a PID runc recorded may have been reused since: the start time tells)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return _start_time(pid) is not None


def runc_message(err: bytes) -> str:
    """runc logs `time=... level=error msg="..."`; keep just the message."""
    text = err.decode(errors="replace").strip()
    for line in reversed(text.splitlines()):
        if 'msg="' in line:
            return line.split('msg="', 1)[1].rstrip('"').replace('\\"', '"')
    return text or "failed"
