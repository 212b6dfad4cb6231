"""Removing a sandbox removes everything it made, and removing twice is fine."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from images.store import ImageStore
from kubelet.network.netns import create_netns
from kubelet.runtime import cgroups
from kubelet.runtime.interface import ContainerConfig, NotFound, SandboxConfig
from kubelet.runtime.runc import RuncRuntime
from kubelet.runtime.sandbox import hold_uts_ipc
from tests.support.leftovers import leftovers, processes_mentioning
from tests.util import wait_for

pytestmark = pytest.mark.root


async def test_remove_sandbox_leaves_nothing_behind(runtime: RuncRuntime, busybox: str) -> None:
    sid = await runtime.run_sandbox(SandboxConfig(name="gone", namespace="default", uid="uid-gone"))
    cids = []
    for name in ("one", "two"):
        cids.append(await runtime.create_container(sid, ContainerConfig(name=name, image=busybox,
                                                                        command=["sleep", "3600"])))
        await runtime.start_container(cids[-1])
    created = await leftovers(runtime, node_too=False, mount_markers=tuple(cids))
    assert {"netns", "veth", "ip allocations", "runc containers", "mounts", "cgroups"} <= created.keys()
    assert len(created["mounts"]) == 4  # two rootfs overlays + the UTS and IPC namespace files

    await runtime.remove_sandbox(sid)
    assert await leftovers(runtime, node_too=False, mount_markers=tuple(cids)) == {}
    await runtime.remove_sandbox(sid)  # idempotent
    assert await runtime.list_sandboxes() == []
    with pytest.raises(NotFound):
        await runtime.sandbox_status(sid)


async def test_shared_pid_namespace_is_joined_by_every_container_and_ends_with_the_sandbox(
        runtime: RuncRuntime, busybox: str) -> None:
    """shareProcessNamespace: the sandbox holds one PID namespace (its init is PID 1), every container joins it;
    stopping the sandbox ends all of it, holder included."""
    sid = await runtime.run_sandbox(SandboxConfig(name="shared", namespace="default", uid="uid-shared",
                                                  share_pid=True))
    cids = []
    for name, seconds in (("one", "3601"), ("two", "3602")):
        cids.append(await runtime.create_container(sid, ContainerConfig(name=name, image=busybox,
                                                                        command=["sleep", seconds])))
        await runtime.start_container(cids[-1])
    ps = (await runtime.exec(cids[1], ["ps", "-o", "pid,args"])).stdout.decode().splitlines()
    assert ps[1].split() == ["1", "pause"] and any(line.endswith(" sleep 3601") for line in ps), ps
    # an orphan is adopted by that init, which reaps it when it ends: no zombie is left
    await runtime.exec(cids[0], ["sh", "-c", "sleep 0.2 & exit 0"])

    async def no_zombie() -> bool:
        ps = (await runtime.exec(cids[1], ["ps", "-o", "stat,args"])).stdout.decode().splitlines()[1:]
        return not any("sleep 0.2" in line or line.startswith("Z") for line in ps)  # a zombie's args are gone
    await wait_for(no_zombie, 10, 0.1, message="the orphan reaped")
    holder = processes_mentioning(f"--pid={runtime.config.state_dir / 'sandboxes' / sid / 'ns' / 'pid'}")
    assert len(holder) == 1  # the unshare holding it, found by what leftovers() looks for

    await runtime.stop_sandbox(sid)
    await runtime.remove_sandbox(sid)
    assert await leftovers(runtime, node_too=False, mount_markers=tuple(cids)) == {}


async def test_stopped_sandbox_releases_network_but_keeps_status(runtime: RuncRuntime, busybox: str) -> None:
    sid = await runtime.run_sandbox(SandboxConfig(name="stopped", namespace="default", uid="uid-stopped"))
    cid = await runtime.create_container(sid, ContainerConfig(name="c", image=busybox, command=["sleep", "3600"]))
    await runtime.start_container(cid)
    await runtime.stop_sandbox(sid)
    await runtime.stop_sandbox(sid)  # idempotent
    left = await leftovers(runtime, node_too=False)
    assert "netns" not in left and "veth" not in left and "ip allocations" not in left
    assert (await runtime.sandbox_status(sid)).state.value == "notready"
    assert (await runtime.container_status(cid)).exit_code == 137


async def test_restart_reclaims_what_an_interrupted_setup_left(runtime: RuncRuntime, image_store: ImageStore,
                                                                busybox: str) -> None:
    # what a kubelet killed in the middle of run_sandbox / create_container leaves behind
    crashed = "f" * 32
    leaked = runtime.network.ipam.allocate(crashed)
    create_netns(runtime.network.names(crashed)[0])
    await hold_uts_ipc(runtime.sandboxes.dir / crashed / "ns", "crashed")
    half_container = "e" * 32
    (runtime.containers.dir / half_container).mkdir()
    image_store.prepare_rootfs(busybox, half_container)
    sid = await runtime.run_sandbox(SandboxConfig(name="live", namespace="default", uid="uid-live"))

    await runtime.ensure_node()
    allocations = runtime.network.ipam.allocations()
    assert str(leaked) not in allocations and list(allocations.values()) == [sid]
    assert [s.id for s in await runtime.list_sandboxes()] == [sid]
    left = await leftovers(runtime, node_too=False, mount_markers=(crashed, half_container))
    assert left.keys() <= {"netns", "veth", "ip allocations", "mounts"}  # only the live sandbox's
    assert left["netns"] == [runtime.network.names(sid)[0]]
    assert all(sid in m for m in left["mounts"])


async def test_replacement_sandbox_of_the_same_pod_keeps_the_pod_cgroup(runtime: RuncRuntime, busybox: str) -> None:
    config = SandboxConfig(name="same", namespace="default", uid="uid-same")
    old, new = await runtime.run_sandbox(config), await runtime.run_sandbox(config)
    cids = []
    for sid in (old, new):
        cids.append(await runtime.create_container(sid, ContainerConfig(name="c", image=busybox,
                                                                        command=["sleep", "3600"])))
        await runtime.start_container(cids[-1])
    await runtime.remove_sandbox(old)
    assert (await runtime.container_status(cids[1])).state.value == "running"
    assert (await runtime.exec(cids[1], ["true"])).exit_code == 0
    await runtime.remove_sandbox(new)
    assert await leftovers(runtime, node_too=False) == {}


async def test_destroy_node_kills_a_process_a_crashed_runtime_left_in_a_cgroup(runtime: RuncRuntime) -> None:
    # a runtime SIGKILLed between `runc create` and `start` leaves `runc init` inside a container cgroup that no
    # runc state lists: removing the node must kill it rather than fail with EBUSY on the cgroup
    stray_rel = f"{runtime.config.cgroup_parent}/podstray/{'d' * 32}"
    dirs = cgroups.nested_dirs(stray_rel)
    stray = subprocess.Popen(["sleep", "3600"])
    try:
        joined = 0
        for d in dirs.values():
            os.makedirs(d, exist_ok=True)
            try:
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write(str(stray.pid))
                joined += 1
            except OSError:  # a v1 cpuset cgroup takes no process before its cpus/mems are set
                pass
        assert joined
        await runtime.destroy_node()
        assert stray.wait(timeout=10) == -signal.SIGKILL
        assert not any(os.path.exists(d) for d in dirs.values())
        assert await leftovers(runtime, node_too=False) == {}
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


async def test_a_pods_sandboxes_are_listed_apart_from_the_others_before_and_after_a_restart(
        runtime: RuncRuntime, image_store: ImageStore) -> None:
    a = await runtime.run_sandbox(SandboxConfig(name="a", namespace="default", uid="uid-a"))
    b1 = await runtime.run_sandbox(SandboxConfig(name="b", namespace="default", uid="uid-b"))
    b2 = await runtime.run_sandbox(SandboxConfig(name="b", namespace="default", uid="uid-b"))
    restarted = RuncRuntime(runtime.config, image_store)  # a new kubelet reads the records again
    for rt in (runtime, restarted):
        assert [s.id for s in await rt.list_sandboxes("uid-a")] == [a]
        assert sorted(s.id for s in await rt.list_sandboxes("uid-b")) == sorted([b1, b2])
        assert {s.config.uid for s in await rt.list_sandboxes("uid-b")} == {"uid-b"}
        assert await rt.list_sandboxes("uid-none") == []
    await runtime.stop_sandbox(b1)
    await runtime.remove_sandbox(b1)
    for rt in (runtime, restarted):
        assert [s.id for s in await rt.list_sandboxes("uid-b")] == [b2]
        assert sorted(s.id for s in await rt.list_sandboxes()) == sorted([a, b2])
