"""The in-memory runtime behaves like the real one at the interface (what kubelet unit tests rely on)."""
from __future__ import annotations

import pytest

from kubelet.runtime.fake import FakeRuntime
from kubelet.runtime.interface import (ContainerConfig, ContainerState, ExecResult, LogOptions, NotFound,
                                       RuntimeError_, SandboxConfig, SandboxState)


async def test_lifecycle_and_controls() -> None:
    rt = FakeRuntime()
    sid = await rt.run_sandbox(SandboxConfig(name="p", namespace="ns", uid="u"))
    cid = await rt.create_container(sid, ContainerConfig(name="c", image="busybox"))
    assert (await rt.container_status(cid)).state == ContainerState.CREATED
    await rt.start_container(cid)
    with pytest.raises(RuntimeError_):
        await rt.start_container(cid)
    rt.write_log(cid, "hello")
    assert [line.text async for line in rt.logs(cid, LogOptions(tail=1))] == ["hello"]
    rt.exec_handler = lambda c, cmd: ExecResult(7, b"out", b"")
    assert (await rt.exec(cid, ["probe"])).exit_code == 7
    rt.finish(cid, 137, "OOMKilled")
    status = await rt.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, 137, "OOMKilled")
    await rt.stop_sandbox(sid)
    assert (await rt.sandbox_status(sid)).state == SandboxState.NOT_READY
    with pytest.raises(RuntimeError_, match="not ready"):
        await rt.create_container(sid, ContainerConfig(name="d", image="busybox"))
    await rt.remove_sandbox(sid)
    assert await rt.list_containers() == [] and await rt.list_sandboxes() == []
    with pytest.raises(NotFound):
        await rt.container_status(cid)
    assert [name for name, _ in rt.calls][:3] == ["run_sandbox", "create_container", "start_container"]


async def test_injected_failure_is_raised_once() -> None:
    rt = FakeRuntime()
    rt.fail("run_sandbox", RuntimeError_("no IP left"))
    with pytest.raises(RuntimeError_, match="no IP left"):
        await rt.run_sandbox(SandboxConfig(name="p", namespace="ns", uid="u"))
    assert await rt.run_sandbox(SandboxConfig(name="p", namespace="ns", uid="u"))
