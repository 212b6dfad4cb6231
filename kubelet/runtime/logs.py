"""Reader of CRI-format container logs (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`): tail, since, follow.

Partial lines (tag P, written when a line exceeds the monitor's buffer) are joined with what follows on the
same stream until the full (F) part, as the kubelet does.
"""
from __future__ import annotations

import asyncio
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterable

from kubelet.runtime.interface import LogLine, LogOptions

FOLLOW_POLL = 0.1


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

    joiner = _Joiner()
    try:
        f = open(path, "r", errors="replace")
    except FileNotFoundError:
        return
    with f:
        # the whole file is scanned once: `tail` needs the end, `since` compares every timestamp
        parsed = (joiner.feed(raw) for raw in f.readlines())
        selected: Iterable[LogLine] = (line for line in parsed if line is not None and _selected(line, options))
        if options.tail is not None:
            selected = deque(selected, maxlen=max(0, options.tail))
        for line in selected:
            if not fits(line):
                return
            yield line
        if not options.follow:
            return
        buf = ""
        while True:
            chunk = f.read()
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
