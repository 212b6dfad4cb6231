"""Run the real `pkctl` as a user would: a subprocess against the real apiserver fixture."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from pklib.resources import Resource, lookup
from tests.conftest import ApiServer

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


@pytest.fixture
def pkctl(apiserver: ApiServer, namespace: str) -> Pkctl:
    """pkctl with the test's kubeconfig and namespace: pkctl("get", "pods")."""
    def call(*args: str, stdin: str | None = None, ns: str | None = namespace) -> subprocess.CompletedProcess[str]:
        return run_pkctl("--kubeconfig", apiserver.kubeconfig, *(["-n", ns] if ns else []), *args, stdin=stdin)
    return call
