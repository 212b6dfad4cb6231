"""`pkube group`: several components in one process, against a real apiserver."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from launcher.group import split_argv
from tests.support.controlplane import ApiServer, Etcd
from tests.util import free_port, unique, wait_for_sync

ROOT = Path(__file__).resolve().parents[2]


def pkube(*argv: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "launcher", *argv], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]


@contextmanager
def group(*argv: str) -> Iterator[subprocess.Popen[str]]:
    """`pkube group ARGV`, killed at the end if a failed check left it running."""
    proc = pkube("group", *argv)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def stopped(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, and all it printed once it has exited."""
    proc.send_signal(signal.SIGTERM)
    return str(proc.communicate(timeout=20)[0])


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
    with group("--healthz-bind-address", f"127.0.0.1:{port}",
               "--", "scheduler", "--kubeconfig", apiserver.kubeconfig,
               "--", "controller-manager", "--kubeconfig", apiserver.kubeconfig, "--controllers", "replicaset") as proc:
        wait_for_sync(lambda: healthz(port)[0] == 200, timeout=30, message="both members ready")
        code, text = healthz(port)
        assert "[+]scheduler ok" in text and "[+]controller-manager ok" in text, text
        out = stopped(proc)
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


def test_a_group_hosting_the_apiserver_starts_the_others_once_it_serves(etcd: Etcd) -> None:
    """`pkctl cluster up --compact`'s process: the apiserver is a member; the scheduler, pointed at it, starts once
    it answers (a member started before would fail to reach it and end the group)."""
    port, api = free_port(), free_port()
    with group("--healthz-bind-address", f"127.0.0.1:{port}",
               "--", "apiserver", "--etcd-servers", etcd.url, "--etcd-prefix", f"/{unique('group')}", "--port", str(api),
               "--", "scheduler", "--server", f"http://127.0.0.1:{api}") as proc:
        wait_for_sync(lambda: healthz(port)[0] == 200, timeout=30, message="apiserver and scheduler ready")
        assert "[+]apiserver ok" in healthz(port)[1] and "[+]scheduler ok" in healthz(port)[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/v1/namespaces/default", timeout=5) as r:
            assert r.status == 200
        out = stopped(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "[apiserver] apiserver: serving on http://127.0.0.1" in out, out
    assert out.index("[apiserver] apiserver: serving on") < out.index("[scheduler]"), out


def test_a_hosted_apiserver_that_cannot_listen_is_a_one_line_error(etcd: Etcd) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = pkube("group", "--", "apiserver", "--etcd-servers", etcd.url, "--etcd-prefix", f"/{unique('group')}",
                     "--port", str(port))
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert f"error: cannot listen on 127.0.0.1:{port}" in out, out
