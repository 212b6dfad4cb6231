"""Loaded (through PYTHONPATH) by the Python processes that run on tests/support/faketime.py's fake clock.

libfaketime 0.9.10 (Debian bookworm) mistranslates clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) when monotonic
time is not faked (wolfcw/libfaketime#426): Python 3.11's time.sleep, which sleeps that way, fails with EINVAL.
Sleep on select's relative timeout instead, which libfaketime passes through unchanged.
"""
import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep  # type: ignore[assignment]
