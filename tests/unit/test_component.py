"""pklib.component: the exit codes and one-line errors every `pkube COMPONENT` shares."""
from __future__ import annotations

import os
import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Coroutine

import pytest

from pklib.component import (GC_THRESHOLD, ConfigError, LostLeadership, add_client_flags, check_flags,
                             dump_heap, dump_tasks_on_sigusr1, make_client, run_event_loop, run_until_signalled,
                             serve_http)
from pklib.errors import ConnectionFailed
from pklib.kubeconfig import KubeconfigError


def flags(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_client_flags(p)
    return p.parse_args(list(argv))


def test_token_without_server_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--token needs --server"):
        make_client(flags("--token", "t"), "pkube-test")


def test_server_flag_builds_a_client() -> None:
    client = make_client(flags("--server", "http://127.0.0.1:1", "--token", "t"), "pkube-test")
    asyncio.run(client.close())


def test_check_flags_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    def bad() -> None:
        raise ValueError("--count must be positive")

    assert check_flags(bad, (ValueError,)) == 2
    assert capsys.readouterr().err == "error: --count must be positive\n"
    assert check_flags(lambda: None) is None


def raising(exc: BaseException) -> Callable[[], Coroutine[Any, Any, None]]:
    async def run() -> None:
        raise exc
    return run


def test_reported_failure_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_until_signalled(raising(ConnectionFailed("cannot reach the API server")),
                               report=(ConnectionFailed,)) == 1
    assert capsys.readouterr().err == "error: cannot reach the API server\n"


def test_failure_inside_a_task_group_is_found(capsys: pytest.CaptureFixture[str]) -> None:
    group = ExceptionGroup("tasks", [ExceptionGroup("inner", [ConnectionFailed("gone")])])
    assert run_until_signalled(raising(group), report=(ConnectionFailed,)) == 1
    assert capsys.readouterr().err == "error: gone\n"


def test_lost_leadership_exits_1_silently(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_until_signalled(raising(ExceptionGroup("tasks", [LostLeadership()]))) == 1
    assert capsys.readouterr().err == ""


def test_unreported_config_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_until_signalled(raising(KubeconfigError("no kubeconfig"))) == 2
    assert capsys.readouterr().err == "error: no kubeconfig\n"


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        run_until_signalled(raising(ZeroDivisionError("bug")), report=(ConnectionFailed,))


def test_clean_return_exits_0() -> None:
    async def run() -> None:
        return None
    assert run_until_signalled(run) == 0


def test_port_in_use_is_a_config_error() -> None:
    from aiohttp import web

    async def scenario() -> str:
        first = await serve_http(web.Application(), "127.0.0.1", 0)
        port = first.addresses[0][1]
        try:
            with pytest.raises(ConfigError) as info:
                await serve_http(web.Application(), "127.0.0.1", port, what="/metrics")
            return str(info.value)
        finally:
            await first.cleanup()

    message = asyncio.run(scenario())
    assert message.startswith("cannot serve /metrics on 127.0.0.1:") and "in use" in message


STUBBORN = '''
import asyncio, sys
from pklib.component import run_until_signalled

async def run() -> None:
    swallowed = 0
    print("ready", flush=True)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:  # a cancellation lost below the main task, as a buggy library may do
            swallowed += 1
            if swallowed > int(sys.argv[1]):
                raise

sys.exit(run_until_signalled(run, stop_grace=2.0))
'''


@pytest.mark.parametrize("swallowed, code", [(1, 0), (10 ** 6, 1)])
def test_a_component_that_loses_a_cancellation_still_stops_after_sigterm(swallowed: int, code: int) -> None:
    """One SIGTERM (all a dead supervisor's pdeathsig sends) stops a component even when a cancellation is lost
    inside it: it is cancelled again, and one that never stops exits 1 after the grace."""
    import signal
    import subprocess
    import sys
    import time
    p = subprocess.Popen([sys.executable, "-c", STUBBORN, str(swallowed)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__)))))
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert p.wait(timeout=30) == code
        assert time.monotonic() - t0 < 15
        _, err = p.communicate()
        if code:
            assert "did not stop within 2s of the signal; exiting now" in err, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigusr1_logs_where_every_task_waits(caplog: pytest.LogCaptureFixture) -> None:
    async def parked(event: asyncio.Event) -> None:
        await event.wait()

    async def main() -> None:
        event = asyncio.Event()
        task = asyncio.create_task(parked(event), name="parked-task")
        dump_tasks_on_sigusr1(asyncio.get_running_loop())
        await asyncio.sleep(0)
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100):
            if "parked-task" in caplog.text:
                break
            await asyncio.sleep(0.01)
        event.set()
        await task
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)

    with caplog.at_level(logging.WARNING, logger="pkube.component"):
        asyncio.run(main())
    dump = next(r.getMessage() for r in caplog.records if "parked-task" in r.getMessage())
    assert "in parked" in dump and "in wait" in dump  # the chain of awaits, down to Event.wait


class _Kept:
    """Objects the heap-dump test counts."""


def test_sigusr2_writes_a_heap_dump_with_the_tracemalloc_snapshot(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("PKUBE_HEAP_DIR", str(tmp_path))
    kept = [_Kept() for _ in range(1234)]
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(1)

    async def main() -> None:
        dump_tasks_on_sigusr1(asyncio.get_running_loop())
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(200):
            if list(tmp_path.glob("*.json")):
                break
            await asyncio.sleep(0.01)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)

    try:
        asyncio.run(main())
    finally:
        if started:
            tracemalloc.stop()
    [dump] = tmp_path.glob(f"heap-{os.getpid()}-*.json")
    doc = json.loads(dump.read_text())
    assert doc["by_type"]["_Kept"] >= len(kept) and doc["gc_objects"] >= len(kept)
    assert doc["malloc"]["arena"] >= doc["malloc"]["in_use"] > 0  # glibc's heap (this machine's libc has mallinfo2)
    snapshot = tracemalloc.Snapshot.load(str(dump.with_suffix(".tracemalloc")))
    assert snapshot.statistics("filename") and doc["traced_bytes"] > 0


def test_a_heap_dump_gives_pythons_own_arenas(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pymalloc's arenas (mmapped, so not in glibc's figures) are in the dump: the objects of 512 bytes or less.
    (Under tracemalloc Python reports none: its hooks wrap the allocator.)"""
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is tracing this process")
    monkeypatch.setenv("PKUBE_HEAP_DIR", str(tmp_path))
    kept = [_Kept() for _ in range(20_000)]
    doc = json.loads(dump_heap().with_suffix(".json").read_text())
    pymalloc = doc["pymalloc"]
    assert pymalloc["arenas_highwater"] >= pymalloc["arenas"] >= 1
    assert pymalloc["in_use"] >= sum(sys.getsizeof(k) for k in kept)


@pytest.mark.parametrize("setting, loop_module", [(None, "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_pkube_event_loop_picks_the_loop_components_run_on(monkeypatch: pytest.MonkeyPatch, setting: str | None,
                                                           loop_module: str) -> None:
    if setting is None:
        monkeypatch.delenv("PKUBE_EVENT_LOOP", raising=False)
    else:
        monkeypatch.setenv("PKUBE_EVENT_LOOP", setting)

    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]
    assert run_event_loop(which()) == loop_module


def test_components_run_with_the_tuned_gc_thresholds() -> None:
    async def thresholds() -> tuple[int, ...]:
        return gc.get_threshold()
    before = gc.get_threshold()
    try:
        assert run_event_loop(thresholds()) == GC_THRESHOLD
    finally:
        gc.set_threshold(*before)


FRAGMENTED = '''
import asyncio, sys, time
from pklib import component

def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

async def run() -> None:
    blocks = [bytes(1000) + bytes([i % 256]) for i in range(100_000)]  # ~100 MB from glibc (pymalloc: <= 512 B)
    blocks = blocks[::32] + blocks[-1:]  # keep 1 in 32, and the last: freed pages inside the heap, none at its top
    before = rss_mb()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and rss_mb() > before - 40:
        await asyncio.sleep(0.05)
    print(f"{before:.0f} {rss_mb():.0f} {len(blocks)}", flush=True)

component.TRIM_INTERVAL = 0.2
sys.exit(component.run_until_signalled(run))
'''


def test_a_component_gives_its_free_heap_pages_back_to_the_system() -> None:
    """A component whose heap is left fragmented by churn (many blocks freed, a few kept between them, so glibc
    cannot shrink the heap's top) returns the free pages within the minute: its RSS drops."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", FRAGMENTED], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0, out.stderr
    before, after, kept = (int(x) for x in out.stdout.split())
    assert kept > 3000
    assert after <= before - 40, (before, after)


def test_a_heap_with_little_free_is_not_trimmed() -> None:
    from pklib.component import trim_heap
    assert trim_heap(min_free=1 << 60) is False
