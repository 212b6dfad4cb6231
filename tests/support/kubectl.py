"""kubectl v1.32 run as a subprocess against a test apiserver, and long-running kubectl output read line by line."""
from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Kubectl:
    kubeconfig: str

    def __call__(self, *args: str, stdin: str | None = None, ok: bool = True, timeout: float = 60,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], input=stdin, capture_output=True,
                           text=True, timeout=timeout, env={**os.environ, **(env or {})})
        if ok:
            assert r.returncode == 0, f"kubectl {' '.join(args)} exited {r.returncode}: {r.stderr}"
        return r

    def stream(self, *args: str) -> "Stream":
        """A long-running kubectl (get -w, rollout status) whose output lines are read as they come."""
        proc = subprocess.Popen(["kubectl", "--kubeconfig", self.kubeconfig, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        return Stream(proc)


class Stream:
    def __init__(self, proc: subprocess.Popen[str]):
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = 20) -> str:
        """The first new line matching `predicate`; fails with everything seen when none comes in time."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no matching line from kubectl within {timeout}s; saw: {self.seen}")

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@dataclass
class Workers:
    node: str
    procs: list[subprocess.Popen[bytes]]
