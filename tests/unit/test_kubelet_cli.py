"""`pkube kubelet` flag errors: one line on stderr, exit 2, nothing started."""
from __future__ import annotations

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
