"""Containers and logs outlive the process that created them; a new runtime object re-lists them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from images.store import ImageStore
from kubelet.runtime.interface import ContainerConfig, ContainerState, LogOptions, SandboxConfig
from kubelet.runtime.monitor import conmon_alive
from kubelet.runtime.runc import RuncRuntime
from tests.support.controlplane import ROOT
from tests.util import wait_for

pytestmark = pytest.mark.root


async def test_running_container_is_found_after_the_creator_is_killed(runtime: RuncRuntime,
                                                                      image_store: ImageStore,
                                                                      busybox: str) -> None:
    c = runtime.config
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.runtime.spawn_pod", str(c.state_dir), c.pod_cidr, c.bridge, c.nat_table,
         c.netns_prefix, c.veth_prefix, c.cgroup_parent, str(image_store.root), busybox],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        sid, cid = line.split()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)

    fresh = RuncRuntime(c, image_store)
    assert [s.id for s in await fresh.list_sandboxes()] == [sid]
    [status] = await fresh.list_containers(sid)
    assert (status.id, status.name, status.state) == (cid, "app", ContainerState.RUNNING)

    async def logged() -> list[str]:
        return [line.text async for line in fresh.logs(cid, LogOptions())]
    assert await wait_for(logged, message="the container's log line") == ["before-restart"]
    assert (await fresh.exec(cid, ["echo", "still here"])).stdout == b"still here\n"
    await fresh.stop_container(cid, timeout=0)
    assert (await fresh.container_status(cid)).state == ContainerState.EXITED


async def test_container_can_be_stopped_after_its_monitor_died(runtime: RuncRuntime, busybox: str) -> None:
    sid = await runtime.run_sandbox(SandboxConfig(name="orphan", namespace="default", uid="uid-orphan"))
    cid = await runtime.create_container(sid, ContainerConfig(name="app", image=busybox, command=["sleep", "3600"]))
    await runtime.start_container(cid)
    paths = runtime.containers.paths(cid)
    os.kill(int(paths.conmon_pid.read_text()), signal.SIGKILL)  # the conmon this test started, by PID

    async def monitor_gone() -> bool:
        return not conmon_alive(paths)
    await wait_for(monitor_gone, message="conmon to die")
    assert (await runtime.container_status(cid)).state == ContainerState.RUNNING

    await runtime.stop_container(cid, timeout=1)
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, None, "ContainerStatusUnknown")
