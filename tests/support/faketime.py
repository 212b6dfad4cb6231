"""A wall clock the tests can step for the processes they start, without touching the machine's clock.

libfaketime (Debian `libfaketime`) is preloaded into the processes; they read their offset from a file that
the test rewrites (`FakeClock.step`). As a real clock step does, only CLOCK_REALTIME moves (time.time(),
datetime.now(), file times written from then on); CLOCK_MONOTONIC does not (FAKETIME_DONT_FAKE_MONOTONIC), and
files' existing times read back unchanged (NO_FAKE_STAT). The environment is inherited: `pkctl cluster up` run
with it starts a supervisor and components (and the runc/conmon/nft they run) that all share the one offset.
Go programs (etcd, runc) read the clock through the vDSO, not libc, and do not see the fake time: etcd keeps the
machine's time (its leases count monotonic time anyway).

libfaketime also shares state between a process and its children through a POSIX semaphore and shared memory
(FAKETIME_SHARED): the first process to load it creates them and removes them when it exits normally, after which
the processes it started complain on stderr (into `runc state` output, for one) and one killed by a signal leaves
them in /dev/shm. So a FakeClock keeps one pair for all of its processes, made by a helper process that lives as
long as the clock (close() ends it, which removes the pair).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.util import wait_for_sync

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
# Its sitecustomize.py works around a libfaketime bug that breaks time.sleep in Python 3.11.
SITE = Path(__file__).with_name("faketime_site")
# How often a process re-reads the offset (seconds): a step reaches every process within this long.
CACHE_SECONDS = 1


def available() -> bool:
    return LIBFAKETIME.exists()


class FakeClock:
    """The offset file of one test's processes; starts at "+0" (the real time)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.step(0)
        self._holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                        env={**os.environ, **self._env()}, stdin=subprocess.PIPE)
        pid = self._holder.pid
        self.shared = (f"/faketime_sem_{pid}", f"/faketime_shm_{pid}")
        wait_for_sync(lambda: Path("/dev/shm", self.shared[1][1:]).exists(), timeout=10, interval=0.05,
                      message="libfaketime's shared memory")

    def __enter__(self) -> "FakeClock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._holder.stdin is not None and not self._holder.stdin.closed:
            self._holder.stdin.close()  # it exits normally: libfaketime removes the pair
        self._holder.wait(10)

    def _env(self) -> dict[str, str]:
        preload = " ".join(p for p in (str(LIBFAKETIME), os.environ.get("LD_PRELOAD", "")) if p)
        path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
        return {"LD_PRELOAD": preload, "PYTHONPATH": path, "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_CACHE_DURATION": str(CACHE_SECONDS), "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "NO_FAKE_STAT": "1"}

    def env(self) -> dict[str, str]:
        """What to add to the environment of the processes that must follow this clock. The components run on
        the standard asyncio loop (PKUBE_EVENT_LOOP, pklib/component.py run_event_loop): libfaketime wraps
        pthread_cond_init behind a lock that uvloop's forked children can find held for ever."""
        return {**self._env(), "FAKETIME_SHARED": " ".join(self.shared), "PKUBE_EVENT_LOOP": "asyncio"}

    def step(self, offset: int) -> None:
        """Set the processes' wall clock `offset` seconds from the real one (atomically: a reader sees the old
        offset or the new one)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{offset:+d}\n")
        os.replace(tmp, self.path)
        self.offset = offset
