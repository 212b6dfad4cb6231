"""CRI log reading: partial lines, tail, since, limit and follow."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

from kubelet.runtime.interface import LogOptions
from kubelet.runtime.logs import read_logs, rotate, rotated_logs

LOG = (
    "2026-01-01T00:00:01.000000001+00:00 stdout F one\n"
    "2026-01-01T00:00:02.000000000+00:00 stderr P par\n"
    "2026-01-01T00:00:02.500000000+00:00 stdout F two\n"
    "2026-01-01T00:00:03.000000000+00:00 stderr F tial\n"
    "garbage line\n"
    "2026-01-01T00:00:04.000000000+00:00 stdout F \n"
)


async def collect(path: Path, options: LogOptions, finished=None) -> list[tuple[str, str]]:
    return [(line.stream, line.text) async for line in read_logs(path, options, finished)]


async def test_partial_lines_are_joined_per_stream(tmp_path: Path) -> None:
    (tmp_path / "log").write_text(LOG)
    assert await collect(tmp_path / "log", LogOptions()) == [
        ("stdout", "one"), ("stdout", "two"), ("stderr", "partial"), ("stdout", "")]


async def test_tail_since_limit_and_timestamps(tmp_path: Path) -> None:
    (tmp_path / "log").write_text(LOG)
    assert await collect(tmp_path / "log", LogOptions(tail=2)) == [("stderr", "partial"), ("stdout", "")]
    assert await collect(tmp_path / "log", LogOptions(tail=0)) == []
    since = datetime(2026, 1, 1, 0, 0, 2, 600000, tzinfo=timezone.utc)
    assert await collect(tmp_path / "log", LogOptions(since=since)) == [("stderr", "partial"), ("stdout", "")]
    assert await collect(tmp_path / "log", LogOptions(limit_bytes=8)) == [("stdout", "one"), ("stdout", "two")]
    first = [line async for line in read_logs(tmp_path / "log", LogOptions(tail=3))][0]
    assert first.format(timestamps=True) == "2026-01-01T00:00:02.500000000+00:00 two"


async def test_missing_log_is_empty(tmp_path: Path) -> None:
    assert await collect(tmp_path / "none", LogOptions(follow=True)) == []


async def test_follow_reads_appended_lines_until_finished(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_text("2026-01-01T00:00:01+00:00 stdout F first\n")
    done = asyncio.Event()

    async def finished() -> bool:
        return done.is_set()

    task = asyncio.create_task(collect(path, LogOptions(follow=True), finished))
    await asyncio.sleep(0)
    with path.open("a") as f:
        f.write("2026-01-01T00:00:02+00:00 stdout P sec")
        f.flush()
        f.write("ond\n2026-01-01T00:00:02+00:00 stdout F ond\n")
    # the monitor wrote its last line just before the container exited: follow must still return it
    with path.open("a") as f:
        f.write("2026-01-01T00:00:03+00:00 stderr F last\n")
    done.set()
    assert await asyncio.wait_for(task, 5) == [("stdout", "first"), ("stdout", "secondond"), ("stderr", "last")]


def test_rotate_renames_asks_the_writer_to_reopen_and_keeps_max_files(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    reopened: list[int] = []

    def reopen() -> bool:
        reopened.append(1)
        log.write_text("")  # what conmon does: a fresh file at the log path
        return True

    log.write_text("x" * 10)
    assert not rotate(log, 10, 3, reopen)  # not beyond the maximum yet
    for i in range(4):
        log.write_text(f"{i}" * 11)
        assert rotate(log, 10, 3, reopen)
    kept = rotated_logs(log)
    assert [p.read_text() for p in kept] == ["2" * 11, "3" * 11]  # the 2 newest, oldest first
    assert len(reopened) == 4 and log.read_text() == ""


def test_rotate_without_a_writer_leaves_the_log_in_place(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text("x" * 100)
    assert not rotate(log, 10, 3, lambda: False)
    assert log.read_text() == "x" * 100 and rotated_logs(log) == []
