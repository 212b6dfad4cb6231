"""Streamed exec through the runtime interface (`start_exec`): the real runtime with runc, and the fake."""
from __future__ import annotations

import asyncio

import pytest

from kubelet.runtime.fake import FakeRuntime
from kubelet.runtime.interface import (STDERR, STDOUT, ContainerConfig, ExecResult, ExecStream, RuntimeError_,
                                       SandboxConfig)
from kubelet.runtime.runc import RuncRuntime


@pytest.mark.root
async def test_output_arrives_before_input_ends_and_the_exit_code_follows(runtime: RuncRuntime,
                                                                          busybox: str) -> None:
    sid = await runtime.run_sandbox(SandboxConfig(name="pod", namespace="default", uid="uid-exec-stream"))
    cid = await runtime.create_container(sid, ContainerConfig(name="app", image=busybox, command=["sleep", "3600"]))
    await runtime.start_container(cid)

    stream = await runtime.start_exec(cid, ["sh", "-c", "echo ready; read line; echo \"got $line\"; echo oops >&2; "
                                                      "exit 4"], stdin=True)
    try:
        outputs = stream.output()
        # the first line comes while the command still waits for its input: it is streamed, not buffered
        assert await asyncio.wait_for(anext(outputs), 10) == (STDOUT, b"ready\n")
        await stream.write_stdin(b"hello\n")
        rest = [chunk async for chunk in outputs]
        assert b"".join(c for ch, c in rest if ch == STDOUT) == b"got hello\n"
        assert b"".join(c for ch, c in rest if ch == STDERR) == b"oops\n"
        assert await stream.wait() == 4
    finally:
        stream.close()

    await runtime.stop_container(cid, timeout=0)
    with pytest.raises(RuntimeError_, match="container app is not running"):
        await runtime.start_exec(cid, ["true"])


async def test_fake_streams_the_handlers_answer_and_records_input() -> None:
    rt = FakeRuntime()
    sid = await rt.run_sandbox(SandboxConfig(name="p", namespace="ns", uid="u"))
    cid = await rt.create_container(sid, ContainerConfig(name="c", image="busybox"))
    with pytest.raises(RuntimeError_, match="not running"):
        await rt.start_exec(cid, ["sh"])
    await rt.start_container(cid)
    rt.exec_handler = lambda c, cmd: ExecResult(2, b"out", b"err")

    stream: ExecStream = await rt.start_exec(cid, ["sh"], stdin=True, tty=True)
    await stream.write_stdin(b"ls\n")
    stream.resize(80, 24)
    stream.close_stdin()
    assert [chunk async for chunk in stream.output()] == [(STDOUT, b"out"), (STDOUT, b"err")]  # a TTY merges
    assert await stream.wait() == 2
    [recorded] = rt.exec_streams
    assert (bytes(recorded.stdin), recorded.sizes, recorded.stdin_closed) == (b"ls\n", [(80, 24)], True)
    assert ("start_exec", (cid, ["sh"])) in rt.calls
