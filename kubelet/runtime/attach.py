"""Attaching to a running container's own stdio (`kubectl attach`, `kubectl run -it`) through conmon.

conmon owns the container's stdio and serves it on its attach socket (`<socket dir>/<cuuid>/attach`, a
SOCK_SEQPACKET unix socket, as CRI-O uses it): every message it sends is one byte naming the stream (2 stdout,
3 stderr) and the bytes the container wrote; whatever a client sends goes to the container's stdin (when it was
started with `stdin: true`, conmon `--stdin`). A client shutting its sending side down closes the container's
stdin unless conmon was told `--leave-stdin-open` (a container without `stdinOnce`). A terminal's new size goes
through conmon's control FIFO (`1 <height> <width>`).

The socket path may be longer than a unix address allows, so it is reached through /proc/self/fd of its directory.
An `AttachSession` is an interface.ExecStream: the kubelet's API serves it like an exec; ending it only detaches.
"""
from __future__ import annotations

import asyncio
import os
import socket
from typing import AsyncIterator

from kubelet.runtime.interface import STDERR, STDOUT, RuntimeError_
from kubelet.runtime.monitor import MonitorPaths

CONMON_STDOUT, CONMON_STDERR = 2, 3
CHUNK = 65536
RESIZE_EVENT = 1  # conmon's WIN_RESIZE_EVENT on the control FIFO
RESIZE_SETTLE = 0.05  # seconds a new terminal size waits for a newer one


class AttachSession:
    """One client attached to a container's stdio (an interface.ExecStream)."""

    def __init__(self, sock: socket.socket, paths: MonitorPaths, stdin: bool, tty: bool) -> None:
        self._sock = sock
        self._paths = paths
        self._stdin = stdin
        self._tty = tty
        self._size: tuple[int, int] | None = None
        self._resize_pending: asyncio.TimerHandle | None = None

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        loop = asyncio.get_running_loop()
        while True:
            try:
                msg = await loop.sock_recv(self._sock, CHUNK)
            except OSError:
                return
            if not msg:
                return  # the container exited (conmon closed its sockets)
            if len(msg) > 1 and msg[0] in (CONMON_STDOUT, CONMON_STDERR):
                yield (STDERR if msg[0] == CONMON_STDERR and not self._tty else STDOUT), msg[1:]

    async def write_stdin(self, data: bytes) -> None:
        if not self._stdin or not data:
            return
        try:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)
        except OSError:
            pass  # conmon went away with the container: the output ends too

    def close_stdin(self) -> None:
        if self._stdin and not self._tty:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def resize(self, width: int, height: int) -> None:
        """Sizes that come in a burst (kubectl attach sends size+1 then the size, to make the program redraw)
        are written once, the last one: conmon 2.1 may act on only the first of several queued lines."""
        if not self._tty:
            return
        self._size = (width, height)
        if self._resize_pending is None:
            self._resize_pending = asyncio.get_running_loop().call_later(RESIZE_SETTLE, self._write_size)

    def _write_size(self) -> None:
        self._resize_pending = None
        if self._size is None:
            return
        width, height = self._size
        try:
            fd = os.open(self._paths.ctl, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # no conmon reading it any more
        try:
            os.write(fd, f"{RESIZE_EVENT} {height} {width}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    async def wait(self) -> int:
        return 0  # detaching is a success; the container's own exit is in its status

    async def terminate(self) -> None:
        """Detach only: the container runs on. (Shut down, not closed: output() may still be waiting on it.)"""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        if self._resize_pending is not None:
            self._resize_pending.cancel()
            self._resize_pending = None
        self._sock.close()


def attach(paths: MonitorPaths, cid: str, stdin: bool, tty: bool) -> AttachSession:
    sock_dir = paths.dir / "sockets" / cid
    try:
        dir_fd = os.open(sock_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise RuntimeError_(f"the container's monitor serves no attach socket: {e.strerror}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/attach")
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise RuntimeError_(f"cannot attach to the container: {e.strerror}") from None
    finally:
        os.close(dir_fd)
    return AttachSession(sock, paths, stdin, tty)
