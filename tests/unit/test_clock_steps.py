"""Durations measured in one process must not move when the wall clock is stepped (NTP, an admin, a VM resumed):
they come from the monotonic or boot clock, and a wall-clock time from elsewhere is used only by its age."""
from __future__ import annotations

import subprocess

from pkctl.cluster.procs import _CLK_TCK, ProcRecord
from proxy.main import change_time


def test_process_uptime_comes_from_the_boot_clock() -> None:
    rec = ProcRecord(1234, ticks=100 * _CLK_TCK)  # started 100 s after boot
    assert rec.uptime(boot_clock=160.0) == 60.0
    assert rec.uptime(boot_clock=99.0) == 0.0  # never negative
    child = subprocess.Popen(["sleep", "30"])
    try:
        rec_child = ProcRecord.of(child.pid)
        assert rec_child is not None
        # a process started just now has been up for moments, whatever the wall clock says
        assert 0.0 <= rec_child.uptime() < 20
    finally:
        child.kill()
        child.wait()


def test_programming_latency_start_is_monotonic_and_a_stamp_counts_by_its_age() -> None:
    assert change_time(None, wall=1_000_000.0, monotonic=50.0) == 50.0
    # the pod change was stamped 2 s ago (wall clock): the change happened 2 s ago on the monotonic clock
    assert change_time("1970-01-12T13:46:38Z", wall=1_000_000.0, monotonic=50.0) == 48.0
    # a stamp from the future (another host's clock ahead, or the clock stepped back): now, not later
    assert change_time("1970-01-12T13:46:50Z", wall=1_000_000.0, monotonic=50.0) == 50.0
    assert change_time("not a time", wall=1_000_000.0, monotonic=50.0) == 50.0
