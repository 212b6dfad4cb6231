"""CRI-format container logs (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`): the reader (tail, since, follow)
and the rotation (Kubernetes' containerLogMaxSize / containerLogMaxFiles).

Partial lines (tag P, written when a line exceeds the monitor's buffer) are joined with what follows on the
same stream until the full (F) part, as the kubelet does.

Rotation renames the log to `<log>.<UTC time>` and has the monitor reopen the log path, as the kubelet's
container log manager does with CRI ReopenContainerLog. Readers read the kept rotated files and then the current
one (so a rotation right after the last output hides nothing), and a follower moves on to the new file once the
old one is drained; a file that conmon's --log-size-max backstop cut in place is read again from its start.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, AsyncIterator, Awaitable, Callable, Iterable, Iterator

from kubelet.runtime.interface import LogLine, LogOptions

FOLLOW_POLL = 0.1


ROTATED_TIME = "%Y%m%d-%H%M%S.%f"
_ROTATED_SUFFIX = re.compile(r"\.\d{8}-\d{6}\.\d{6}")


def rotated_logs(log: Path) -> list[Path]:
    """The rotated files of `log`, oldest first."""
    try:
        names = os.listdir(log.parent)
    except FileNotFoundError:
        return []
    prefix = log.name
    return sorted(log.parent / n for n in names
                  if n.startswith(prefix) and _ROTATED_SUFFIX.fullmatch(n[len(prefix):]))


def rotate(log: Path, max_size: int, max_files: int, reopen: Callable[[], bool]) -> bool:
    """If `log` has grown beyond `max_size` bytes: rename it to `<log>.<UTC time>`, have its writer reopen the
    path (`reopen()`, False when there is no writer any more), and keep only the newest `max_files - 1` rotated
    files. True if it rotated."""
    try:
        if os.stat(log).st_size <= max_size:
            return False
    except FileNotFoundError:
        return False
    rotated = log.with_name(f"{log.name}.{datetime.now(timezone.utc).strftime(ROTATED_TIME)}")
    os.rename(log, rotated)
    if not reopen():
        os.rename(rotated, log)  # the writer is gone: the log stays where readers look for it
        return False
    old = rotated_logs(log)
    for path in old[:max(0, len(old) - (max_files - 1))]:
        path.unlink(missing_ok=True)
    return True


def _has_data(path: Path) -> bool:
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


def _replaced(path: Path, f: IO[str]) -> bool:
    """The file at `path` is no longer the one open as `f` (it was rotated)."""
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


def parse_line(raw: str) -> tuple[str, str, str, str] | None:
    """(timestamp, stream, tag, text) or None for a malformed line."""
    parts = raw.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("stdout", "stderr"):
        return None
    return parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else ""


class _Joiner:
    def __init__(self) -> None:
        self.pending: dict[str, list[str]] = {}

    def feed(self, raw: str) -> LogLine | None:
        parsed = parse_line(raw)
        if parsed is None:
            return None
        ts, stream, tag, text = parsed
        self.pending.setdefault(stream, []).append(text)
        if "P" in tag.split(":"):
            return None
        full = "".join(self.pending.pop(stream))
        try:
            when = datetime.fromisoformat(ts)
        except ValueError:
            return None
        return LogLine(timestamp=when, stream=stream, text=full, raw_timestamp=ts)


def _selected(line: LogLine, options: LogOptions) -> bool:
    return options.since is None or line.timestamp >= options.since


def _select(raws: Iterable[str], options: LogOptions, joiner: "_Joiner") -> deque[LogLine]:
    """The lines `options` asks for (since, then the last `tail`) out of raw CRI lines."""
    parsed = (joiner.feed(raw) for raw in raws)
    return deque((line for line in parsed if line is not None and _selected(line, options)),
                 maxlen=None if options.tail is None else max(0, options.tail))


def _rotated_lines(log: Path) -> Iterator[str]:
    for old in rotated_logs(log):
        try:
            with open(old, "r", errors="replace") as f:
                yield from f  # line by line: a kept file may be as large as --container-log-max-size
        except FileNotFoundError:
            continue  # removed by a rotation meanwhile


async def _open_log(path: Path, follow: bool, finished: Callable[[], Awaitable[bool]] | None) -> IO[str] | None:
    """The current log file. Between a rotation's rename and the writer reopening the path there is none for a
    moment: then wait for it (a follower until the container is gone, a one-off read for up to a second)."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            return open(path, "r", errors="replace")
        except FileNotFoundError:
            if not rotated_logs(path):
                return None  # never written (or removed with its container), not being rotated
            if follow and finished is not None:
                if await finished():
                    return None
            elif time.monotonic() > deadline:
                return None
            await asyncio.sleep(FOLLOW_POLL)


async def read_logs(path: Path, options: LogOptions,
                    finished: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[LogLine]:
    """Existing lines (respecting tail/since), then, with follow, new lines until `finished()` says the
    container is gone and nothing more arrived. `limit_bytes` bounds the bytes of text returned."""
    budget = options.limit_bytes

    def fits(line: LogLine) -> bool:
        nonlocal budget
        if budget is None:
            return True
        budget -= len(line.text) + 1
        return budget >= 0

    f = await _open_log(path, options.follow, finished)
    if f is None:
        return
    try:
        # Every line is scanned: `tail` needs the end, `since` compares every timestamp.
        current = f.readlines()
        # The writer may be half-way through its last line: that part waits for the rest (a follower's buffer).
        pending = current.pop() if current and not current[-1].endswith("\n") else ""
        joiner = _Joiner()
        selected = _select(current, options, joiner) if options.tail is not None else deque()
        if options.tail is None or len(selected) < options.tail:
            # Not enough in the current file: the kept rotated files come first (as docker logs reads a
            # json-file log), so a rotation right after the last output hides nothing.
            joiner = _Joiner()
            selected = _select(itertools.chain(_rotated_lines(path), current), options, joiner)
        for line in selected:
            if not fits(line):
                return
            yield line
        if not options.follow:
            return
        buf = pending
        while True:
            chunk = f.read()
            if not chunk and os.fstat(f.fileno()).st_size < f.tell():
                # Cut in place: conmon's --log-size-max backstop truncates the file and writes on from its start.
                f.seek(0)
                buf = ""
                continue
            if not chunk and _replaced(path, f):
                # Rotated. The writer keeps appending to the old file until it has handled the reopen, so move on
                # only once the new file has data (then the old one is complete: drain it first).
                if not _has_data(path):
                    await asyncio.sleep(FOLLOW_POLL)
                    continue
                chunk = f.read()
                if not chunk:
                    try:
                        new_file = open(path, "r", errors="replace")
                    except FileNotFoundError:
                        continue  # rotated again meanwhile: look once more
                    f.close()
                    f = new_file
                    continue
            if not chunk:
                if finished is None or not await finished():
                    await asyncio.sleep(FOLLOW_POLL)
                    continue
                chunk = f.read()  # lines written between the last read and the exit
                if not chunk:
                    return
            buf += chunk
            *complete, buf = buf.split("\n")
            for raw in complete:
                new = joiner.feed(raw)
                if new is not None and _selected(new, options):
                    if not fits(new):
                        return
                    yield new
    finally:
        f.close()
