"""Process records that survive PID reuse: a PID plus its kernel start time.

The cluster only ever signals processes it recorded itself, and only while the PID
still belongs to the same process (same start time in /proc/<pid>/stat), never by name.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot); None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait() is missing
        return None
    return int(fields[19])



def python_module(module: str, *args: str) -> list[str]:
    """The command line that runs `python -m module args` in this Python, with -P: never a module from the current
    directory (root running pkctl in /tmp must not import a package another user planted there)."""
    return [sys.executable, "-P", "-m", module, *args]

@dataclass(frozen=True)
class ProcRecord:
    pid: int
    ticks: int

    @classmethod
    def of(cls, pid: int) -> "ProcRecord | None":
        ticks = start_ticks(pid)
        return cls(pid, ticks) if ticks is not None else None

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> "ProcRecord | None":
        if not state or not state.get("pid") or state.get("ticks") is None:
            return None
        return cls(int(state["pid"]), int(state["ticks"]))

    def alive(self) -> bool:
        return start_ticks(self.pid) == self.ticks

    def signal(self, sig: int) -> bool:
        """Send sig if the PID is still this process; False when it is already gone."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def uptime(self, boot_clock: float | None = None) -> float:
        """Seconds since the process started, on the boot clock (`boot_clock`: CLOCK_BOOTTIME now): like the start
        time it comes from, a step of the wall clock (NTP, the admin) does not move it."""
        now = time.clock_gettime(time.CLOCK_BOOTTIME) if boot_clock is None else boot_clock
        return max(0.0, now - self.ticks / _CLK_TCK)

    def rss_bytes(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except FileNotFoundError:
            return None
        return None

    def cpu_seconds(self) -> float | None:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except FileNotFoundError:
            return None
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def wait_gone(records: list[ProcRecord], timeout: float) -> list[ProcRecord]:
    """Poll until none of records is alive or timeout passes; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = [r for r in records if r.alive()]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [r for r in alive if r.alive()]
    return alive


def terminate(records: list[ProcRecord], grace: float) -> list[ProcRecord]:
    """SIGTERM, wait up to grace seconds, then SIGKILL what is left; returns survivors (should be none)."""
    for r in records:
        r.signal(signal.SIGTERM)
    left = wait_gone(records, grace)
    for r in left:
        r.signal(signal.SIGKILL)
    return wait_gone(left, 5.0)
