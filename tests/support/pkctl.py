"""Run the real `pkctl` as a user would: a subprocess, never showing a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from pklib.resources import Resource, lookup


ROOT = Path(__file__).resolve().parents[2]
Pkctl = Callable[..., subprocess.CompletedProcess[str]]


def kind(name: str) -> Resource:
    """The kind table row for a name that certainly exists."""
    res = lookup(name)
    assert res is not None, name
    return res


def run_pkctl(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pkctl.main", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, **(env or {})})
    # Whatever went wrong, a user never sees a Python traceback.
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc
