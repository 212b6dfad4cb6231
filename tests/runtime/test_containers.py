"""Container lifecycle, limits, process settings, exec and logs with real runc + conmon + the busybox image."""
from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from pathlib import Path

import pytest

from images.store import ImageStore
from kubelet.runtime.interface import (ContainerConfig, ContainerState, ExecTimeout, InvalidConfig, LogOptions,
                                       Mount, NotFound, Resources, RuntimeError_, SandboxConfig, SecurityContext)
from kubelet.runtime.runc import RuncRuntime
from tests.util import wait_for

pytestmark = pytest.mark.root

CRI_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d (stdout|stderr) [FP] .*$")


@pytest.fixture
async def sandbox(runtime: RuncRuntime) -> str:
    return await runtime.run_sandbox(SandboxConfig(name="pod", namespace="default", uid="uid-pod"))


async def start(rt: RuncRuntime, sandbox: str, config: ContainerConfig) -> str:
    cid = await rt.create_container(sandbox, config)
    await rt.start_container(cid)
    return cid


async def exited(rt: RuncRuntime, cid: str, timeout: float = 15):
    async def done():
        s = await rt.container_status(cid)
        return s if s.state == ContainerState.EXITED else None
    return await wait_for(done, timeout=timeout, message=f"container {cid} to exit")


async def log_text(rt: RuncRuntime, cid: str) -> list[str]:
    return [line.text async for line in rt.logs(cid, LogOptions())]


async def test_memory_hog_is_oom_killed(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        name="hog", image=busybox, command=["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        resources=Resources(memory_limit_bytes=32 * 1024 * 1024)))
    status = await exited(runtime, cid)
    assert (status.reason, status.exit_code) == ("OOMKilled", 137)
    # conmon also drops a file `oom` in its working directory: the container's own, not the kubelet's
    assert (runtime.containers.paths(cid).dir / "oom").exists()


async def test_same_allocation_without_limit_completes(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        name="fits", image=busybox, command=["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        resources=Resources(memory_limit_bytes=256 * 1024 * 1024)))
    status = await exited(runtime, cid)
    assert (status.reason, status.exit_code) == ("Completed", 0)


async def test_cpu_limit_throttles_a_busy_loop(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        name="spin", image=busybox, command=["sh", "-c", "while :; do :; done"],
        resources=Resources(cpu_limit_millis=200, cpu_request_millis=100)))

    async def throttled():
        return (await runtime.container_stats(cid)).cpu_throttled_periods > 0
    await wait_for(throttled, timeout=10, message="cgroup nr_throttled > 0")
    before, t0 = (await runtime.container_stats(cid)).cpu_usage_ns, time.monotonic()
    await asyncio.sleep(1.0)  # the measurement window (not a synchronisation)
    used = ((await runtime.container_stats(cid)).cpu_usage_ns - before) / 1e9 / (time.monotonic() - t0)
    assert used < 0.35, f"a 200m limit let the loop use {used:.2f} CPUs"
    pod = await runtime.pod_stats(sandbox)
    assert pod.cpu_usage_ns >= pod.containers[0].cpu_usage_ns > 0
    spec = runtime.containers.spec(cid)["linux"]["resources"]["cpu"]
    assert (spec["quota"], spec["period"], spec["shares"]) == (20000, 100000, 102)


async def test_env_args_working_dir_and_user(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        name="proc", image=busybox, command=["sh", "-c"],
        args=['echo "foo=$FOO path=$PATH"; pwd; id; echo "arg0=$0"', "zero"],
        env=[("FOO", "bar"), ("PATH", "/bin")], working_dir="/tmp",
        security=SecurityContext(run_as_user=65534, run_as_non_root=True)))
    status = await exited(runtime, cid)
    assert status.exit_code == 0 and status.reason == "Completed"
    assert await log_text(runtime, cid) == ["foo=bar path=/bin", "/tmp", "uid=65534(nobody) gid=65534(nogroup)",
                                            "arg0=zero"]


async def test_image_user_name_and_entrypoint_from_a_built_image(runtime: RuncRuntime, sandbox: str, busybox: str,
                                                                  image_store: ImageStore, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox}\nUSER nobody\nWORKDIR /tmp\n"
                                         'ENTRYPOINT ["sh", "-c", "id; pwd; echo $0"]\nCMD ["from-cmd"]\n')
    image = str(image_store.build(tmp_path, tag=f"pkube.local/{uuid.uuid4().hex[:8]}:user",
                                  progress=lambda _line: None).name)
    try:
        default = await start(runtime, sandbox, ContainerConfig(name="dflt", image=image))
        custom = await start(runtime, sandbox, ContainerConfig(name="args", image=image, args=["from-args"]))
        for cid in (default, custom):
            assert (await exited(runtime, cid)).exit_code == 0
        assert await log_text(runtime, default) == ["uid=65534(nobody) gid=65534(nogroup)", "/tmp", "from-cmd"]
        assert (await log_text(runtime, custom))[2] == "from-args"
        with pytest.raises(InvalidConfig, match="non-numeric user \\(nobody\\)"):
            await runtime.create_container(sandbox, ContainerConfig(
                name="strict", image=image, security=SecurityContext(run_as_non_root=True)))
    finally:
        for c in await runtime.list_containers(sandbox):
            await runtime.remove_container(c.id)
        image_store.remove(image)


async def test_run_as_non_root_refuses_a_root_image_and_leaves_nothing(runtime: RuncRuntime, sandbox: str,
                                                                       busybox: str) -> None:
    with pytest.raises(InvalidConfig, match="runAsNonRoot and image will run as root"):
        await runtime.create_container(sandbox, ContainerConfig(
            name="root", image=busybox, command=["true"], security=SecurityContext(run_as_non_root=True)))
    assert await runtime.list_containers(sandbox) == []
    assert list(Path(runtime.containers.dir).iterdir()) == []


async def test_bad_requests_fail_clearly_and_leave_nothing(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    with pytest.raises(RuntimeError_, match="not found"):
        await runtime.create_container(sandbox, ContainerConfig(name="x", image="pkube.local/nope:1", command=["true"]))
    with pytest.raises(InvalidConfig, match="host path /nonexistent-pkt does not exist"):
        await runtime.create_container(sandbox, ContainerConfig(
            name="y", image=busybox, command=["true"], mounts=[Mount("/data", "/nonexistent-pkt")]))
    with pytest.raises(InvalidConfig, match="invalid pod hostname"):
        await runtime.run_sandbox(SandboxConfig(name="Not_A_Hostname", namespace="default", uid="uid-bad"))
    with pytest.raises(NotFound):
        await runtime.start_container("0" * 32)
    assert await runtime.list_containers() == [] and len(await runtime.list_sandboxes()) == 1
    assert list(Path(runtime.containers.dir).iterdir()) == []


async def test_exec_returns_output_and_exit_code(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        name="idle", image=busybox, command=["sleep", "3600"], env=[("GREETING", "hi")]))
    r = await runtime.exec(cid, ["sh", "-c", 'echo "$GREETING out"; echo err >&2; exit 3'])
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"hi out\n", b"err\n")
    r = await runtime.exec(cid, ["cat"], stdin=b"from stdin")
    assert (r.exit_code, r.stdout) == (0, b"from stdin")
    r = await runtime.exec(cid, ["sh", "-c", "tty"], tty=True)
    assert r.exit_code == 0 and r.stdout.startswith(b"/dev/pts/")
    t0 = time.monotonic()
    with pytest.raises(ExecTimeout, match="timed out after 0.5s"):
        await runtime.exec(cid, ["sleep", "30"], timeout=0.5)
    assert time.monotonic() - t0 < 5
    ps = (await runtime.exec(cid, ["ps", "-o", "args"])).stdout.decode()
    assert "sleep 30" not in ps  # the timed-out command was stopped, not left running


async def test_logs_are_cri_formatted_and_follow_sees_new_lines(runtime: RuncRuntime, sandbox: str,
                                                                 busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        name="talk", image=busybox, command=["sh", "-c", "echo one; echo two >&2; echo three; exec sleep 3600"]))
    status = await runtime.container_status(cid)

    async def three_lines():
        return len(await log_text(runtime, cid)) == 3
    await wait_for(three_lines, message="three log lines")
    raw = Path(status.log_path).read_text().splitlines()
    assert all(CRI_LINE.match(line) for line in raw), raw
    # stdout and stderr are separate pipes, so only the order within one stream is defined
    assert sorted(line.split(" ", 3)[1:] for line in raw) == [["stderr", "F", "two"], ["stdout", "F", "one"],
                                                              ["stdout", "F", "three"]]
    tail = [line async for line in runtime.logs(cid, LogOptions(tail=1, timestamps=True))]
    ts, stream, _, text = raw[-1].split(" ", 3)
    assert [(line.stream, line.format(timestamps=True)) for line in tail] == [(stream, f"{ts} {text}")]

    seen: list[str] = []

    async def follow() -> None:
        async for line in runtime.logs(cid, LogOptions(follow=True)):
            seen.append(line.text)
            if line.text == "late":
                return
    task = asyncio.create_task(follow())

    async def caught_up() -> bool:
        return len(seen) == 3
    await wait_for(caught_up, message="follow to return the existing lines")
    await runtime.exec(cid, ["sh", "-c", "echo late > /proc/1/fd/1"])
    await asyncio.wait_for(task, 10)
    assert sorted(seen[:3]) == ["one", "three", "two"] and seen[3:] == ["late"]


async def test_follow_ends_when_the_container_exits(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        name="brief", image=busybox, command=["sh", "-c", "echo first; sleep 0.5; echo last"]))

    async def follow_all() -> list[str]:
        return [line.text async for line in runtime.logs(cid, LogOptions(follow=True))]
    assert await asyncio.wait_for(follow_all(), 15) == ["first", "last"]
    assert (await runtime.container_status(cid)).reason == "Completed"


def pidfds() -> int:
    """How many pidfds this process holds."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
        except OSError:
            continue  # the listing's own fd, closed meanwhile
    return count


async def test_watch_exits_tells_at_once_when_a_container_ends(runtime: RuncRuntime, sandbox: str,
                                                               busybox: str) -> None:
    """What lets the kubelet relist on an exit instead of polling: a container live when the watch began (a
    restarted kubelet's) and one created after both wake it, and its exit is recorded by then."""
    before = pidfds()
    early = await start(runtime, sandbox, ContainerConfig(name="early", image=busybox, command=["sleep", "1"]))
    exits: list[dict[str, tuple[str, bool]]] = []
    woken = asyncio.Event()

    def notify() -> None:
        exits.append(runtime.container_exits())
        woken.set()
    # a new runtime over the same state: the kubelet restarted while `early` ran
    restarted = RuncRuntime(runtime.config, runtime.images)
    restarted.watch_exits(notify)
    assert pidfds() == before + 1
    await asyncio.wait_for(woken.wait(), 10)
    assert exits[-1][early] == (sandbox, True)
    woken.clear()
    late = await start(restarted, sandbox, ContainerConfig(name="late", image=busybox, command=["sleep", "0.3"]))
    t0 = time.monotonic()
    await asyncio.wait_for(woken.wait(), 10)
    assert exits[-1][late] == (sandbox, True)
    assert time.monotonic() - t0 < 5
    # a watched container that is removed while it runs leaves no pidfd behind
    woken.clear()
    lasting = await start(restarted, sandbox, ContainerConfig(name="lasting", image=busybox, command=["sleep", "60"]))
    assert pidfds() == before + 1
    await restarted.remove_container(lasting)
    assert pidfds() == before


async def test_an_exit_recorded_between_two_looks_keeps_its_code(runtime: RuncRuntime, sandbox: str, busybox: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """conmon writes the exit file and then exits. A status taken in between those two steps first finds no
    exit file and then no conmon. It must still report the recorded code, not an unknown exit (137): a Job
    pod that exited 3 was once shown as killed."""
    cid = await start(runtime, sandbox, ContainerConfig(name="quick", image=busybox, command=["sh", "-c", "exit 3"]))
    await exited(runtime, cid)
    paths = runtime.containers.paths(cid)
    aside = paths.exit_file.with_name("exit.aside")
    paths.exit_file.rename(aside)  # the first look finds no record yet ...

    def conmon_records_then_exits(_paths: object) -> bool:
        aside.rename(paths.exit_file)  # ... conmon writes it and exits before the second look
        return False
    monkeypatch.setattr("kubelet.runtime.containers.conmon_alive", conmon_records_then_exits)
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, 3, "Error")


async def test_stop_sends_sigterm_first(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        name="polite", image=busybox,
        command=["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done"]))
    await wait_for(lambda: log_text(runtime, cid), message="trap installed")
    t0 = time.monotonic()
    await runtime.stop_container(cid, timeout=10)
    assert time.monotonic() - t0 < 5
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, 0, "Completed")
    assert await log_text(runtime, cid) == ["ready", "got TERM"]


async def test_stop_kills_after_the_timeout(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        name="stubborn", image=busybox,
        command=["sh", "-c", "trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.1; done"]))
    await wait_for(lambda: log_text(runtime, cid), message="trap installed")
    t0 = time.monotonic()
    await runtime.stop_container(cid, timeout=1)
    elapsed = time.monotonic() - t0
    status = await runtime.container_status(cid)
    assert (status.exit_code, status.reason) == (137, "Error")
    assert 1 <= elapsed < 8
    assert "got TERM" in await log_text(runtime, cid)


async def test_read_only_root_volumes_and_dropped_capabilities(runtime: RuncRuntime, sandbox: str, busybox: str,
                                                               tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "config").write_text("from host\n")
    (tmp_path / "rw").mkdir()
    script = ("cat /config/config; echo x > /config/new || echo ro-volume-refused; echo data > /data/out; "
              "touch /rootfile || echo rootfs-refused; touch /tmp/f && chown 1 /tmp/f || echo chown-refused")
    cid = await start(runtime, sandbox, ContainerConfig(
        name="fs", image=busybox, command=["sh", "-c", script],
        mounts=[Mount("/config", str(tmp_path / "ro"), read_only=True), Mount("/data", str(tmp_path / "rw")),
                Mount("/tmp", str(tmp_path / "rw"))],
        security=SecurityContext(read_only_root_filesystem=True, capabilities_drop=["CHOWN"])))
    await exited(runtime, cid)
    lines = await log_text(runtime, cid)
    assert lines[0] == "from host"
    assert {"ro-volume-refused", "rootfs-refused", "chown-refused"} <= set(lines)
    assert (tmp_path / "rw" / "out").read_text() == "data\n"
    assert not (tmp_path / "ro" / "new").exists()


async def test_pids_limit_stops_a_fork_loop(runtime: RuncRuntime, sandbox: str, busybox: str) -> None:
    cid = await start(runtime, sandbox, ContainerConfig(
        # room for runc init's own threads while it starts the container, not for 20 children of the shell
        name="forks", image=busybox, resources=Resources(pids_limit=12),
        command=["sh", "-c", "for i in $(seq 20); do sleep 60 & done; echo all-started"]))
    status = await exited(runtime, cid)
    lines = await log_text(runtime, cid)
    assert status.exit_code != 0 and "all-started" not in lines
    assert any("can't fork" in line for line in lines), lines
