"""Waiting in the event loop for a raw file descriptor (pipe, FIFO, pty, pidfd) to become ready.

The runtime talks to its helpers over plain pipes and FIFOs (conmon's sync pipe, runc's exec FIFO, exec ptys).
Waiting for them in the event loop rather than in a worker thread costs no thread per wait (a kubelet may hold
many idle terminals) and no thread hand-off on the container start path. The same goes for a child's exit: on
Python 3.11 asyncio's default child watcher starts a thread per subprocess (~2 ms per spawn); a pidfd does not.
"""
from __future__ import annotations

import asyncio
import os
import subprocess


async def wait_fd(fd: int, write: bool = False) -> None:
    """Until `fd` is readable (or writable). Cancel it, or wrap it in a timeout, to stop waiting."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)

    def wake() -> None:
        if not ready.done():  # the fd may be reported ready again before the waiter ran
            ready.set_result(None)
    add(fd, wake)
    try:
        await ready
    finally:
        remove(fd)


async def read_line(fd: int, timeout: float) -> bytes:
    """From a non-blocking pipe: up to the first newline, or what came before EOF. TimeoutError after `timeout`."""
    data = b""
    async with asyncio.timeout(timeout):
        while b"\n" not in data:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                await wait_fd(fd)
                continue
            if not chunk:
                break
            data += chunk
    return data


async def wait_process(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Exit status of a child started with subprocess.Popen. TimeoutError after `timeout`."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return proc.wait()  # reaped already
    try:
        async with asyncio.timeout(timeout):
            await wait_fd(pidfd)  # a pidfd turns readable when the process exits
    finally:
        os.close(pidfd)
    return proc.wait()
