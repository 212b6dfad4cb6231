"""`pkube kubelet` flag errors: one line on stderr, exit 2, nothing started."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubelet.main import main


@pytest.mark.parametrize("argv, message", [
    (["--node-labels", "nokey"], "--node-labels: 'nokey' is not key=value"),
    (["--system-reserved-memory", "lots"], "--system-reserved-memory 'lots'"),
    (["--cluster-dns", "not-an-ip"], "--cluster-dns: 'not-an-ip' is not an IP address"),
    (["--port", "70000"], "--port must be between 0 and 65535"),
    (["--crashloop-backoff-base", "0"], "--crashloop-backoff-base must be positive"),
    (["--node-status-report-frequency", "0"], "--node-status-update/report-frequency must be positive"),
    (["--token", "t"], "--token needs --server"),
    (["--container-log-max-size", "big"], "--container-log-max-size 'big'"),
    (["--container-log-max-size", "10"], "--container-log-max-size must be at least 1Ki"),
    (["--container-log-max-files", "1"], "--container-log-max-files must be at least 2"),
])
def test_bad_flags_are_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    server = [] if "--token" in argv else ["--server", "http://127.0.0.1:9"]
    assert main([*server, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err and err.count("\n") == 1


def test_hollow_mode_loads_none_of_the_real_node() -> None:
    """A hollow process (hundreds of nodes on a fake runtime) must not pay for runc, pod networking, the image
    store or the kubelet API server: they are most of a kubelet's memory before its first node."""
    code = ("import sys, kubelet.main as m; m.hollow_config(m.build_parser().parse_args(['--hollow'])); "
            "import kubelet.hollow; print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).resolve().parents[2]).stdout.split())
    heavy = {"pyroute2", "images.store", "kubelet.run", "kubelet.runtime.runc", "kubelet.network", "kubelet.server"}
    assert "kubelet.hollow" in loaded and not heavy & loaded
