"""A container that writes its stdout as fast as it can must not fill the node's disk: the log is rotated at
--container-log-max-size keeping --container-log-max-files files (Kubernetes' containerLogMaxSize/MaxFiles), and
conmon's --log-size-max is a backstop when rotation lags. `logs` still returns the latest lines."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from images.store import ImageStore
from kubelet.runtime.interface import ContainerConfig, LogOptions, SandboxConfig
from kubelet.runtime.logs import rotated_logs
from kubelet.runtime.runc import RuncRuntime
from tests.support.runtime import busybox, image_store, node_runtime  # noqa: F401  (fixtures)
from tests.util import unique, wait_for

pytestmark = pytest.mark.root

MAX_SIZE = 64 * 1024
MAX_FILES = 3
LINES = 100_000  # ~10 MB of log with the CRI prefix: 50 times what may be kept
# a line of ~100 bytes per iteration, then DONE; busybox sh writes it as fast as conmon takes it
FLOOD = ["sh", "-c", f'i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo "line $i {"x" * 40}"; done; '
         'echo DONE; sleep 3600']
# The rotation tests write at a pace the rotation (every poll here, every relist in the kubelet) keeps up with:
# 100 lines (~10 KB) then 10 ms, so conmon's backstop never has to cut a file (the test below shows that cut).
PACED_LINES = 20_000  # ~2 MB: still 10 times what may be kept
PACED = ["sh", "-c", f'i=0; while [ $i -lt {PACED_LINES} ]; do i=$((i+1)); echo "line $i {"x" * 40}"; '
         'if [ $((i % 100)) -eq 0 ]; then sleep 0.01; fi; done; echo DONE; sleep 3600']


@pytest.fixture
async def runtime(image_store: ImageStore, busybox: str) -> AsyncIterator[RuncRuntime]:  # noqa: F811
    async with node_runtime(image_store, container_log_max_size=MAX_SIZE, container_log_max_files=MAX_FILES) as rt:
        yield rt


async def flood(rt: RuncRuntime, busybox: str, command: list[str] = FLOOD) -> str:  # noqa: F811
    sandbox = await rt.run_sandbox(SandboxConfig(name="pod", namespace="default", uid=unique("uid")))
    cid = await rt.create_container(sandbox, ContainerConfig(name="flood", image=busybox, command=command))
    await rt.start_container(cid)
    return cid


def log_files(rt: RuncRuntime, cid: str) -> list[Path]:
    log = rt.containers.paths(cid).log
    return [*rotated_logs(log), *([log] if log.exists() else [])]


def total_size(files: list[Path]) -> int:
    size = 0
    for f in files:
        try:
            size += f.stat().st_size
        except FileNotFoundError:
            pass  # rotated away meanwhile
    return size


async def tail(rt: RuncRuntime, cid: str, n: int) -> list[str]:
    return [line.text async for line in rt.logs(cid, LogOptions(tail=n))]


async def test_rotation_keeps_the_log_directory_bounded_and_logs_reads_the_latest(runtime: RuncRuntime,
                                                                                 busybox: str) -> None:  # noqa: F811
    cid = await flood(runtime, busybox, PACED)
    bound = 2 * MAX_SIZE * MAX_FILES  # each file is cut at conmon's backstop of 2 x the rotation size at worst
    largest = 0
    rotations = 0

    async def done() -> bool:
        # what the kubelet's relist loop does every relist period, here every poll
        nonlocal largest, rotations
        rotations += await asyncio.to_thread(runtime.rotate_logs)
        largest = max(largest, total_size(log_files(runtime, cid)))
        assert largest <= bound, f"container logs take {largest} bytes, more than {bound}"
        return (await tail(runtime, cid, 1)) == ["DONE"]
    await wait_for(done, timeout=120, interval=0.02, message="the flood to end")
    assert rotations >= 2
    files = log_files(runtime, cid)
    assert len(files) <= MAX_FILES, files
    assert len(rotated_logs(runtime.containers.paths(cid).log)) == MAX_FILES - 1
    x = "x" * 40
    assert await tail(runtime, cid, 3) == [f"line {PACED_LINES - 1} {x}", f"line {PACED_LINES} {x}", "DONE"]
    assert total_size(files) <= bound


async def test_conmon_cuts_a_log_that_is_never_rotated(runtime: RuncRuntime, busybox: str) -> None:  # noqa: F811
    """Without the kubelet's rotation (it lags or is stuck) conmon's --log-size-max still bounds the file."""
    cid = await flood(runtime, busybox)
    largest = 0

    async def done() -> bool:
        nonlocal largest
        largest = max(largest, total_size(log_files(runtime, cid)))
        assert largest <= 2 * MAX_SIZE + 4096, f"the log grew to {largest} bytes"
        return (await tail(runtime, cid, 1)) == ["DONE"]
    await wait_for(done, timeout=120, interval=0.02, message="the flood to end")
    assert not rotated_logs(runtime.containers.paths(cid).log)


async def test_follow_goes_on_across_rotations(runtime: RuncRuntime, busybox: str) -> None:  # noqa: F811
    cid = await flood(runtime, busybox, PACED)
    seen: list[str] = []

    async def follow() -> None:
        async for line in runtime.logs(cid, LogOptions(follow=True)):
            seen.append(line.text)
            if line.text == "DONE":
                return

    async def rotate_forever() -> None:
        while True:
            await asyncio.to_thread(runtime.rotate_logs)
            await asyncio.sleep(0.02)
    rotator = asyncio.create_task(rotate_forever())
    try:
        await asyncio.wait_for(follow(), 120)
    finally:
        rotator.cancel()
    assert seen[-1] == "DONE"
    numbers = [int(t.split()[1]) for t in seen[:-1]]
    assert numbers[-1] == PACED_LINES
    assert numbers == sorted(numbers)
