"""Event-loop waits on raw pipes and child processes (pklib.fdwait), with real pipes and processes."""
from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest

import uvloop

from pklib.fdwait import read_line, run_process, wait_process
from tests.util import wait_for


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    fds = {"r": r, "w": w}
    yield fds
    for fd in fds.values():
        if fd >= 0:
            os.close(fd)


async def test_read_line_stops_at_the_newline_while_the_writer_stays(pipe: dict[str, int]) -> None:
    reader = asyncio.create_task(read_line(pipe["r"], timeout=5))
    os.write(pipe["w"], b'{"pid": 42}')
    os.write(pipe["w"], b"\nmore")  # the write end stays open, as conmon keeps it: no EOF ends this read
    assert await reader == b'{"pid": 42}\nmore'


async def test_read_line_returns_what_came_before_eof(pipe: dict[str, int]) -> None:
    os.write(pipe["w"], b"partial")
    os.close(pipe["w"])
    pipe["w"] = -1
    assert await read_line(pipe["r"], timeout=5) == b"partial"


async def test_read_line_gives_up_after_its_timeout(pipe: dict[str, int]) -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await read_line(pipe["r"], timeout=0.2)
    assert 0.2 <= time.monotonic() - t0 < 3


async def test_wait_process_returns_the_exit_status() -> None:
    proc = subprocess.Popen(["sh", "-c", "sleep 0.1; exit 3"])
    assert await wait_process(proc, timeout=10) == 3
    assert await wait_process(proc, timeout=10) == 3  # reaped already: still the status


async def test_wait_process_times_out_on_a_process_that_keeps_running() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(TimeoutError):
            await wait_process(proc, timeout=0.2)
    finally:
        proc.kill()  # the process this test started
        assert await wait_process(proc, timeout=10) == -9


# stderr well beyond a pipe's 64 KiB buffer, written before stdout is closed: reading one pipe to its end before
# the other would leave the child blocked on the full one
NOISY = ["sh", "-c", "head -c 200000 /dev/zero >&2; echo out; exit 4"]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_run_process_gives_status_stdout_and_stderr_apart_on_either_loop(loop: str) -> None:
    run = uvloop.run if loop == "uvloop" else asyncio.run  # the kubelet runs on uvloop, the tests on asyncio
    code, out, err = run(run_process(NOISY, timeout=30))
    assert (code, out, err) == (4, b"out\n", b"\0" * 200000)


async def test_run_process_kills_and_reaps_a_process_past_its_timeout(tmp_path) -> None:
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await run_process(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert not os.path.exists(f"/proc/{int(pidfile.read_text())}")  # neither running nor a zombie


async def test_run_process_kills_and_reaps_the_process_when_cancelled(tmp_path) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(run_process(["sh", "-c", f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; "
                                                  "exec sleep 30"], timeout=60))

    async def started() -> bool:
        return pidfile.exists()
    await wait_for(started, message="the child's pid file")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not os.path.exists(f"/proc/{int(pidfile.read_text())}")
