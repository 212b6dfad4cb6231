"""Create and start with real conmon + runc: what `created` and `running` mean, and starts that cannot happen."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from kubelet.runtime.interface import (ContainerConfig, ContainerState, ContainerStatus, LogOptions, RuntimeError_,
                                      SandboxConfig)
from kubelet.runtime.runc import RuncRuntime
from tests.util import wait_for, wait_for_sync

pytestmark = pytest.mark.root


@pytest.fixture
async def sandbox(runtime: RuncRuntime) -> str:
    return await runtime.run_sandbox(SandboxConfig(name="pod", namespace="default", uid="uid-start"))


async def log_text(rt: RuncRuntime, cid: str) -> list[str]:
    return [line.text async for line in rt.logs(cid, LogOptions())]


async def runc_says(rt: RuncRuntime, cid: str) -> str:
    """The container's status from `runc state` itself (Runc.state reads runc's files instead)."""
    return json.loads(await rt.runc.run("state", cid))["status"]


async def test_command_runs_only_once_started_and_runc_agrees(runtime: RuncRuntime, sandbox: str,
                                                              busybox: str) -> None:
    cid = await runtime.create_container(sandbox, ContainerConfig(
        name="app", image=busybox, command=["sh", "-c", "echo started; exec sleep 3600"]))
    created = await runtime.container_status(cid)
    assert created.state == ContainerState.CREATED and created.pid > 0
    assert (await runtime.runc.state(cid) or {}).get("status") == "created" == await runc_says(runtime, cid)
    assert await log_text(runtime, cid) == []  # the init waits: nothing of the command ran

    await runtime.start_container(cid)
    running = await runtime.container_status(cid)
    assert (running.state, running.pid) == (ContainerState.RUNNING, created.pid)
    assert running.started_at is not None
    assert (await runtime.runc.state(cid) or {}).get("status") == "running" == await runc_says(runtime, cid)
    assert await wait_for(lambda: log_text(runtime, cid), message="the command's output") == ["started"]
    # the command replaced the shell in the container's init process
    # (the shell prints before it execs: poll, the exec follows within moments)
    wait_for_sync(lambda: Path(f"/proc/{running.pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep",
                  message="sleep replacing the shell")

    with pytest.raises(RuntimeError_, match="container app cannot be started: .*already running"):
        await runtime.start_container(cid)
    assert (await runtime.container_status(cid)).state == ContainerState.RUNNING


async def test_states_read_from_runcs_files_agree_with_runc_list(runtime: RuncRuntime, sandbox: str,
                                                                 busybox: str) -> None:
    created = await runtime.create_container(sandbox, ContainerConfig(name="c", image=busybox, command=["sleep", "60"]))
    running = await runtime.create_container(sandbox, ContainerConfig(name="r", image=busybox, command=["sleep", "60"]))
    await runtime.start_container(running)
    done = await runtime.create_container(sandbox, ContainerConfig(name="d", image=busybox, command=["true"]))
    await runtime.start_container(done)

    async def exited() -> bool:
        return (await runtime.container_status(done)).state == ContainerState.EXITED
    await wait_for(exited, message="the short container's exit")
    ours = await runtime.runc.list_states()
    listed = json.loads(await runtime.runc.run("list", "--format", "json"))
    theirs = {c["id"]: {"id": c["id"], "status": c["status"], "pid": c["pid"]} for c in listed}
    assert {cid: ours[cid]["status"] for cid in (created, running, done)} == {
        created: "created", running: "running", done: "stopped"}
    assert ours == theirs
    assert ours[running]["pid"] == (await runtime.container_status(running)).pid > 0 and ours[done]["pid"] == 0


async def test_start_fails_fast_when_the_created_process_died(runtime: RuncRuntime, sandbox: str,
                                                              busybox: str) -> None:
    cid = await runtime.create_container(sandbox, ContainerConfig(name="doomed", image=busybox, command=["true"]))
    pid = (await runtime.container_status(cid)).pid
    os.kill(pid, signal.SIGKILL)  # the init process this test created, by PID

    t0 = time.monotonic()
    with pytest.raises(RuntimeError_, match="container doomed cannot be started"):
        await runtime.start_container(cid)
    assert time.monotonic() - t0 < 5

    async def exited() -> ContainerStatus | None:
        # runc reports the killed init as running until its monitor has reaped it: wait for that, bounded.
        status = await runtime.container_status(cid)
        return status if status.state == ContainerState.EXITED else None
    status = await wait_for(exited, message="the killed container to show as exited")
    assert status.started_at is None
    await runtime.remove_container(cid)
    assert await runtime.list_containers() == []


async def test_a_command_runc_cannot_create_is_reported_and_leaves_nothing(runtime: RuncRuntime, sandbox: str,
                                                                          busybox: str) -> None:
    with pytest.raises(RuntimeError_, match="creating container ghost: .*/no/such/binary"):
        await runtime.create_container(sandbox, ContainerConfig(name="ghost", image=busybox,
                                                                command=["/no/such/binary"]))
    assert await runtime.list_containers() == []
    assert list(Path(runtime.containers.dir).iterdir()) == []
