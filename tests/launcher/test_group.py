"""`pkube group`: several components in one process, against a real apiserver."""
from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from launcher.group import split_argv
from tests.support.controlplane import ApiServer
from tests.util import free_port, wait_for_sync

ROOT = Path(__file__).resolve().parents[2]


def pkube(*argv: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "launcher", *argv], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?verbose", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def test_split_argv() -> None:
    assert split_argv(["-v", "--", "scheduler", "--kubeconfig", "k", "--", "dns", "--listen", "x"]) == \
        (["-v"], [["scheduler", "--kubeconfig", "k"], ["dns", "--listen", "x"]])
    assert split_argv(["--", "--"]) == ([], [])


def test_members_run_together_report_health_and_tag_their_logs(apiserver: ApiServer) -> None:
    port = free_port()
    proc = pkube("group", "--healthz-bind-address", f"127.0.0.1:{port}",
                 "--", "scheduler", "--kubeconfig", apiserver.kubeconfig,
                 "--", "controller-manager", "--kubeconfig", apiserver.kubeconfig, "--controllers", "replicaset")
    try:
        wait_for_sync(lambda: healthz(port)[0] == 200, timeout=30, message="both members ready")
        code, text = healthz(port)
        assert "[+]scheduler ok" in text and "[+]controller-manager ok" in text, text
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert "INFO [scheduler] " in out and "[controller-manager] " in out, out


@pytest.mark.parametrize("argv, message", [
    (["--", "nope"], "unknown component 'nope'"),
    (["--", "scheduler", "--", "scheduler"], "component 'scheduler' is given twice"),
    ([], "name at least one component"),
])
def test_bad_groups_are_one_line_errors(argv: list[str], message: str) -> None:
    proc = pkube("group", *argv)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and message in out and "Traceback" not in out, out


def test_a_failing_member_ends_the_group_with_its_error(tmp_path: Path) -> None:
    port = free_port()
    proc = pkube("group", "--healthz-bind-address", f"127.0.0.1:{port}",
                 "--", "scheduler", "--kubeconfig", str(tmp_path / "missing"),
                 "--", "controller-manager", "--kubeconfig", str(tmp_path / "missing"))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode in (1, 2) and "error: " in out and "missing" in out, out
    assert "Traceback" not in out
